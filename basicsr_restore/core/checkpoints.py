"""The one way weights files are read: by the model (``path.pretrain_network_g``, resume, the EMA copy),
``basicsr.test``, ``infer``, ``convert``, ``report``, ``bench``, ``serve``, ``export`` and the Python API.

Which entry of a file holds the weights (the same rule everywhere, :func:`detect_key`):

1. the key the user names (``path.param_key_g``, ``--param-key``) when the file has it;
2. the file itself when it is a bare state dict;
3. BasicSR's ``params_ema`` then ``params`` for restoring (tests, ``infer``, ``convert``, ``report``) and for
   the EMA copy; ``params`` then ``params_ema`` for the network being trained (a resumed run continues the
   raw weights, its EMA copy the averaged ones);
4. the network's official key (its card's ``checkpoint_key``: ``model`` for ChaIR/IRNeXt, ``state_dict`` for
   MIRNet);
5. the other common keys (``model_state_dict``, ``net_g``, ``generator``).

Wrapper prefixes are stripped from every key: ``module.`` (DataParallel, DDP) and ``_orig_mod.``
(``torch.compile``). Files are opened with ``torch.load(weights_only=True)`` (tensors and plain containers,
no code runs) unless the caller says the file is trusted; ``.safetensors`` files (recognised by their content) hold
no code by construction and are read the same way for every caller (:mod:`basicsr_restore.core.safetensors_io`).
Weights with NaN/Inf are refused.
"""
import inspect
import json
import os
import pickle

import torch
from torch import nn

from basicsr_restore.archs.card import card_of
from basicsr_restore.core import safetensors_io
from basicsr_restore.core.identify import UnknownLayout, identify
from basicsr_restore.core.registry import network_classes
from basicsr_restore.core.state_dicts import CheckpointError, check_finite, find_state_dict, first_line, load_into


# --------------------------------------------------------------------------------------------- reading
def read_checkpoint(path, trusted=False, what='weights', trust_hint='pass --trusted'):
    """``torch.load`` ``path`` on the CPU, weights-only unless ``trusted``; clear errors for every failure.

    A trusted file holding a whole pickled ``nn.Module`` is accepted: its ``state_dict()`` is returned. A
    safetensors file (recognised by its content) is read by :func:`basicsr_restore.core.safetensors_io.read` into the
    same dict a ``.pth`` file gives (``params``/``params_ema``/``network_g``, or a bare state dict); it runs no
    code, so ``trusted`` does not matter.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"{what} '{path}' does not exist (weights are never downloaded: give a local file).")
    if os.path.isdir(path):
        raise CheckpointError(f"{what} '{path}' is a folder; give the weights file itself (.pth, .pkl, .pt, "
                              '.safetensors).')
    if safetensors_io.is_safetensors(path):  # no pickle: nothing to trust, read the same way for every caller
        return safetensors_io.read(path, what)
    try:
        checkpoint = torch.load(path, map_location='cpu', weights_only=not trusted)
    except pickle.UnpicklingError as exc:
        if trusted:
            raise CheckpointError(f"{what} '{path}' is not a readable PyTorch file ({first_line(exc)}).") from None
        raise CheckpointError(
            f"{what} '{path}' is not a weights-only file: it pickles Python objects besides tensors "
            f'({first_line(exc)}). Loading it would run code stored in the file. If you trust where it comes '
            f'from, {trust_hint}.') from None
    except Exception as exc:  # zip/pickle/format errors of a file that is not a torch checkpoint at all
        raise CheckpointError(f"{what} '{path}' is not a PyTorch checkpoint ({type(exc).__name__}: "
                              f'{first_line(exc)}).') from None
    if isinstance(checkpoint, nn.Module):
        checkpoint = checkpoint.state_dict()
    return checkpoint


# --------------------------------------------------------------------------------------------- writing
#: the formats network checkpoints are written in (``logger.save_format``, ``convert --to``) and their extensions
SAVE_FORMATS = {'pth': '.pth', 'safetensors': safetensors_io.EXTENSION}


def format_of(path):
    """The format a weights file is written in, by its name: ``safetensors`` for ``*.safetensors``, else ``pth``."""
    return 'safetensors' if str(path).lower().endswith(safetensors_io.EXTENSION) else 'pth'


def dump_weights(payload, path, fmt='pth', where='weights'):
    """Write ``payload`` (``{'params': ..., 'params_ema': ..., 'network_g': ...}``) to ``path`` as ``fmt``: torch's
    zip file, or safetensors (which refuses NaN/Inf weights and anything but those entries). Not atomic."""
    if fmt == 'safetensors':
        safetensors_io.dump(payload, path, where)
    elif fmt == 'pth':
        torch.save(payload, path)
    else:
        raise ValueError(f'unknown weights format {fmt!r}: one of {", ".join(SAVE_FORMATS)}.')


def latest_weights(folder, label='net_g_latest'):
    """``folder/<label>.pth`` or ``.safetensors``, whichever exists (the newer when both do); the ``.pth`` path when
    neither does (for the error message)."""
    paths = [os.path.join(folder, label + ext) for ext in SAVE_FORMATS.values()]
    present = [p for p in paths if os.path.isfile(p)]
    return max(present, key=os.path.getmtime) if present else paths[0]


def read_state_dict(path, param_key=None, official_key=None, prefer_ema=True, trusted=False, what='--weights',
                    trust_hint='pass --trusted'):
    """Read ``path`` and return ``(state, info)``: the weights found by the rule above, finite, prefixes
    stripped (see :func:`find_state_dict` for ``info``)."""
    checkpoint = read_checkpoint(path, trusted=trusted, what=what, trust_hint=trust_hint)
    where = f"{what} '{path}'"
    state, info = find_state_dict(checkpoint, param_key, official_key, prefer_ema, where=where)
    check_finite(state, where)
    return state, info


# ------------------------------------------------------------------------------------ building networks
def arch_class(name):
    """The network class ``name``: one of this package's (found without basicsr), else basicsr's registry (its own
    networks and other plugins'); a clear error listing ours."""
    ours = {cls.__name__: cls for cls in network_classes()}
    if name in ours:
        return ours[name]
    try:  # importing basicsr registers everything (``import basicsr_restore`` asked for it)
        from basicsr.utils.registry import ARCH_REGISTRY  # keeps plain-torch callers free of basicsr until here
        if name in ARCH_REGISTRY:
            return ARCH_REGISTRY.get(name)
    except ImportError:
        pass
    raise ValueError(f"architecture {name!r} is not registered. This package provides: {', '.join(ours)} "
                     "(basicsr's own networks work too). `basicsr-restore doctor` lists every name.")


def build_arch(name, kwargs, where='--arch-args', cls=None):
    """``name(**kwargs)`` with a clear error for unknown or bad arguments."""
    cls = cls or arch_class(name)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError, AssertionError) as exc:
        try:
            signature = str(inspect.signature(cls.__init__)).replace('(self, ', '(').replace('(self)', '()')
        except (TypeError, ValueError):
            signature = '(...)'
        raise ValueError(f'{where}: {name}{signature} cannot be built with {kwargs}: {first_line(exc)}') from None


def config_text(name, kwargs):
    """``IRNeXt(num_res=14, low_pass='local')``: how a configuration is shown to the user."""
    return f"{name}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"


#: the entry of our checkpoints that records the network (``{'type': name, **arguments}``, like ``network_g``)
NETWORK_KEY = 'network_g'


def network_record(checkpoint):
    """``(name, kwargs)`` recorded in a checkpoint's ``network_g`` entry, or None."""
    record = checkpoint.get(NETWORK_KEY) if isinstance(checkpoint, dict) else None
    if isinstance(record, dict) and isinstance(record.get('type'), str):
        return record['type'], {k: v for k, v in record.items() if k != 'type'}
    return None


def record_of(opt_network):
    """The ``network_g`` entry to save beside the weights: plain values only (None when they are not)."""
    try:
        return json.loads(json.dumps(dict(opt_network)))
    except (TypeError, ValueError):
        return None


def open_network(weights, arch=None, arch_args=None, param_key=None, strict=True, trusted=False, what='--weights',
                 allow_partial=False, prefer_ema=True):
    """Build the network of ``weights`` and load them into it; returns ``(net, info)``.

    The network is ``arch(**arch_args)`` when named; else the one the file records (``network_g``, written by
    this package's model and ``convert``); else the one its key layout identifies (:mod:`basicsr_restore.core.identify`:
    an official preset or arguments read from the shapes). ``info`` is :func:`find_state_dict`'s, plus
    ``network`` (how the network is written) and ``found`` (how it was chosen).
    """
    checkpoint = read_checkpoint(weights, trusted=trusted, what=what)
    where = f"{what} '{weights}'"
    if arch:
        name, kwargs, found = arch, dict(arch_args or {}), 'named'
    elif network_record(checkpoint):
        (name, kwargs), found = network_record(checkpoint), f'recorded in the file ({NETWORK_KEY})'
    else:
        name = kwargs = None
    cls = arch_class(name) if name else None
    official = getattr(getattr(cls, 'card', None), 'checkpoint_key', None)
    state, info = find_state_dict(checkpoint, param_key, official, prefer_ema, where=where)
    check_finite(state, where)
    if cls is None:
        try:
            identified = identify(state)
        except UnknownLayout as exc:
            raise UnknownLayout(f'{where}: {exc}') from None
        cls, name, kwargs = identified.cls, identified.name, identified.kwargs
        found = f"preset {identified.preset!r}" if identified.preset else 'arguments read from the key layout'
        found = f'identified from the key layout ({found})'
    net = build_arch(name, kwargs, cls=cls)
    info['missing'], info['unexpected'], info['shape_mismatches'] = load_into(net, state, where, strict, allow_partial)
    info['network'], info['found'], info['name'], info['kwargs'] = config_text(name, kwargs), found, name, kwargs
    return net, info


def load_network(name, kwargs, weights, param_key=None, strict=True, trusted=False, what='--weights',
                 allow_partial=False):
    """Build ``name(**kwargs)`` and load ``weights`` into it; returns ``(net, info)`` (see find_state_dict)."""
    return open_network(weights, name, kwargs, param_key, strict, trusted, what, allow_partial)


def official_key(net):
    """The key of the authors' released checkpoints of ``net`` (from its card), or None."""
    card = card_of(net)
    return card.checkpoint_key if card else None
