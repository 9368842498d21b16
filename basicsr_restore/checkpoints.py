"""The one way weights files are read: by the model (``path.pretrain_network_g``, resume, the EMA copy),
``basicsr.test``, ``infer``, ``convert``, ``report``, ``bench`` and Intra-CR's VGG19.

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
no code by construction and are read the same way for every caller (:mod:`basicsr_restore.safetensors_io`).
Weights with NaN/Inf are refused.
"""
import inspect
import json
import os
import pickle
from collections import OrderedDict

import torch
import yaml
from torch import nn

from basicsr_restore import safetensors_io
from basicsr_restore.errors import RestoreError


CHECKPOINT_KEYS = ('params', 'params_ema', 'state_dict', 'model', 'model_state_dict', 'net_g', 'generator')


#: prefixes wrappers add to every key: DataParallel/DDP, torch.compile
WRAPPER_PREFIXES = ('module.', '_orig_mod.')


class CheckpointError(RestoreError, ValueError):
    """A weights file that cannot be used as asked; the message says which file and what to do."""


def non_finite_keys(state):
    """Keys of the floating-point tensors of ``state`` that hold NaN or Inf."""
    return [k for k, v in state.items() if torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all()]


def check_finite(state, where):
    """Refuse weights holding NaN/Inf (a diverged run's checkpoint gives black or garbage outputs)."""
    bad = non_finite_keys(state)
    if bad:
        raise CheckpointError(f'{where} holds NaN/Inf in {len(bad)} of {len(state)} tensors '
                              f'(e.g. {", ".join(bad[:3])}): the training run that wrote it diverged, and its outputs '
                              'would be black or garbage. Use an earlier checkpoint of that run.')


# --------------------------------------------------------------------------------------------- reading
def read_checkpoint(path, trusted=False, what='weights', trust_hint='pass --trusted'):
    """``torch.load`` ``path`` on the CPU, weights-only unless ``trusted``; clear errors for every failure.

    A trusted file holding a whole pickled ``nn.Module`` is accepted: its ``state_dict()`` is returned. A
    safetensors file (recognised by its content) is read by :func:`basicsr_restore.safetensors_io.read` into the
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
            raise CheckpointError(f"{what} '{path}' is not a readable PyTorch file ({_first_line(exc)}).") from None
        raise CheckpointError(
            f"{what} '{path}' is not a weights-only file: it pickles Python objects besides tensors "
            f'({_first_line(exc)}). Loading it would run code stored in the file. If you trust where it comes '
            f'from, {trust_hint}.') from None
    except Exception as exc:  # zip/pickle/format errors of a file that is not a torch checkpoint at all
        raise CheckpointError(f"{what} '{path}' is not a PyTorch checkpoint ({type(exc).__name__}: "
                              f'{_first_line(exc)}).') from None
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


def _first_line(exc):
    """The first line of an exception's message, whole (never cut mid-sentence)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# --------------------------------------------------------------------------------------- the state dict
def is_state_dict(obj):
    return isinstance(obj, dict) and bool(obj) and all(torch.is_tensor(v) for v in obj.values())


def detect_key(checkpoint, param_key=None, official_key=None, prefer_ema=True):
    """Which entry of ``checkpoint`` holds the weights: ``(key or None for a bare state dict, why)``.

    Order: the explicit ``param_key`` (when present; otherwise detection goes on, and ``why`` says so); a bare
    state dict; ``params_ema`` then ``params`` (BasicSR, EMA
    first when ``prefer_ema``); the architecture's ``official_key``; the other known keys.
    """
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f'the file holds a {type(checkpoint).__name__}, not a state dict or a dict of them.')
    if param_key and isinstance(checkpoint.get(param_key), dict):
        return param_key, 'asked for'
    absent = f'{param_key!r} absent, ' if param_key else ''
    if is_state_dict(checkpoint):
        return None, absent + 'bare state dict'
    order = ['params_ema', 'params'] if prefer_ema else ['params', 'params_ema']
    if official_key:
        order.append(official_key)
    order += [k for k in CHECKPOINT_KEYS if k not in order]
    for key in order:
        if isinstance(checkpoint.get(key), dict) and checkpoint[key]:
            why = "the architecture's official key" if key == official_key else 'detected'
            return key, absent + why
    raise CheckpointError(f'no state dict found: the file has the keys {_key_list(checkpoint)} and none of the '
                          f'known ones ({", ".join(CHECKPOINT_KEYS)}) holds tensors. {_hint(checkpoint)}')


def _key_list(d):
    keys = [str(k) for k in d]
    return keys[:12] + ([f'... {len(keys) - 12} more'] if len(keys) > 12 else [])


def _hint(checkpoint):
    nested = [k for k, v in checkpoint.items() if isinstance(v, dict) and v]
    return f'Pass the key that holds the weights (entries that are dicts: {nested[:8]}).' if nested else ''


def find_state_dict(checkpoint, param_key=None, official_key=None, prefer_ema=True, where='weights'):
    """The state dict of ``checkpoint`` with wrapper prefixes stripped, and a report of how it was found.

    Returns ``(state, info)``; ``info`` has ``key`` (None for a bare state dict), ``why``, ``top_keys``,
    ``stripped`` (prefix -> number of keys) and ``tensors``.
    """
    try:
        key, why = detect_key(checkpoint, param_key, official_key, prefer_ema)
    except CheckpointError as exc:
        raise CheckpointError(f'{where}: {exc}') from None
    raw = checkpoint if key is None else checkpoint[key]
    non_tensors = [k for k, v in raw.items() if not torch.is_tensor(v)]
    if non_tensors:
        raise CheckpointError(f'{where}: the entry {key!r} is not a state dict (non-tensor values under '
                              f'{non_tensors[:5]}). Pass the key that holds the weights.')
    stripped, state = dict.fromkeys(WRAPPER_PREFIXES, 0), OrderedDict()
    for name, value in raw.items():
        name, removed = strip_prefixes(name)
        for prefix in removed:
            stripped[prefix] += 1
        state[name] = value
    info = {'key': key, 'why': why, 'top_keys': _key_list(checkpoint) if key is not None else [],
            'stripped': {p: n for p, n in stripped.items() if n}, 'tensors': len(state)}
    return state, info


def strip_prefixes(key):
    """``(key without its wrapper prefixes, the prefixes removed)``: ``module.`` and ``_orig_mod.``, in any order
    and number (DDP around a compiled network gives ``module._orig_mod.``)."""
    removed = []
    while True:
        prefix = next((p for p in WRAPPER_PREFIXES if key.startswith(p)), None)
        if prefix is None:
            return key, set(removed)
        removed.append(prefix)
        key = key[len(prefix):]


def read_state_dict(path, param_key=None, official_key=None, prefer_ema=True, trusted=False, what='--weights',
                    trust_hint='pass --trusted'):
    """Read ``path`` and return ``(state, info)``: the weights found by the rule above, finite, prefixes
    stripped (see :func:`find_state_dict` for ``info``)."""
    checkpoint = read_checkpoint(path, trusted=trusted, what=what, trust_hint=trust_hint)
    where = f"{what} '{path}'"
    state, info = find_state_dict(checkpoint, param_key, official_key, prefer_ema, where=where)
    check_finite(state, where)
    return state, info


def describe(info):
    """One line for the user: where the weights were found and what was stripped."""
    where = 'a bare state dict' if info['key'] is None else f"key {info['key']!r} ({info['why']})"
    text = f"{where}, {info['tensors']} tensors"
    for prefix, n in info['stripped'].items():
        text += f", '{prefix}' stripped from {n} keys"
    return text


def fit_report(net, state):
    """``(missing, unexpected, shape_mismatches)`` of loading ``state`` into ``net``."""
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f'{k}: file {tuple(v.shape)} vs network {tuple(own[k].shape)}'
              for k, v in state.items() if k in own and tuple(own[k].shape) != tuple(v.shape)]
    return missing, unexpected, shapes


#: below this fraction of the network's tensors, a non-strict load is an error unless partial loads are allowed
MIN_FIT_FRACTION = 0.5


def fit_summary(net, missing, unexpected, shapes):
    """``'121 of 135 tensors of MIRNet fit: 14 missing [...], 0 unexpected [], 0 shape mismatches []'``."""
    total = len(net.state_dict())
    fitted = total - len(missing) - len(shapes)
    return (f'{fitted} of {total} tensors of {type(net).__name__} fit: {len(missing)} missing {missing[:3]}, '
            f'{len(unexpected)} unexpected {unexpected[:3]}, {len(shapes)} shape mismatches {shapes[:2]}')


def load_into(net, state, where='weights', strict=True, allow_partial=False, allow_option='path.allow_partial_load_g'):
    """Load ``state`` into ``net``; returns the fit report ``(missing, unexpected, shape_mismatches)``.

    Strict: any missing/unexpected key or shape mismatch is one error listing them. Non-strict: the tensors that
    fit are loaded, unless fewer than :data:`MIN_FIT_FRACTION` of the network's tensors fit (then the file is
    probably not a checkpoint of this network: an error, unless ``allow_partial``)."""
    missing, unexpected, shapes = fit_report(net, state)
    if strict and (missing or unexpected or shapes):
        parts = []
        for label, items in (('missing keys', missing), ('unexpected keys', unexpected), ('shape mismatches', shapes)):
            if items:
                more = f' ... and {len(items) - 8} more' if len(items) > 8 else ''
                parts.append(f'{len(items)} {label}: {", ".join(items[:8])}{more}')
        raise CheckpointError(
            f'{where} does not fit {type(net).__name__}: ' + '; '.join(parts) + '. Check the architecture and its '
            'arguments (e.g. num_res, base_channel, the preset), or that the file is for this network.')
    total = len(net.state_dict())
    if (total - len(missing) - len(shapes)) < MIN_FIT_FRACTION * total and not allow_partial:
        raise CheckpointError(f'{where} (non-strict load): only {fit_summary(net, missing, unexpected, shapes)}; this '
                              f'is probably not a checkpoint of this network. Set {allow_option}: true to load it '
                              'anyway.')
    bad_shape = {s.split(':')[0] for s in shapes}
    net.load_state_dict({k: v for k, v in state.items() if k not in unexpected and k not in bad_shape}, strict=False)
    return missing, unexpected, shapes


# ------------------------------------------------------------------------------------ building networks
def parse_arch_args(tokens, where='--arch-args'):
    """``['num_res=14', 'low_pass=local']`` or ``['{"num_res": 14}']`` -> dict (values parsed as YAML)."""
    kwargs = {}
    for token in tokens or []:
        token = token.strip()
        if token.startswith('{'):
            try:
                value = json.loads(token)
            except json.JSONDecodeError as exc:
                raise ValueError(f'{where}: {token!r} is not valid JSON ({exc}).') from None
            if not isinstance(value, dict):
                raise ValueError(f'{where}: {token!r} must be a JSON object.')
            kwargs.update(value)
        elif '=' in token:
            key, text = token.split('=', 1)
            try:
                kwargs[key.strip()] = yaml.safe_load(text) if text.strip() else ''
            except yaml.YAMLError:
                kwargs[key.strip()] = text
        else:
            raise ValueError(f"{where}: {token!r} is neither key=value nor a JSON object (e.g. num_res=14 or "
                             '\'{"num_res": 14}\').')
    return kwargs


def arch_class(name):
    """The network class ``name``: one of this package's (found without basicsr), else basicsr's registry (its own
    networks and other plugins'); a clear error listing ours."""
    from basicsr_restore.identify import networks
    ours = {cls.__name__: cls for cls in networks()}
    if name in ours:
        return ours[name]
    try:
        from basicsr.utils.registry import ARCH_REGISTRY

        from basicsr_restore.register import register_all
        register_all()
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
        raise ValueError(f'{where}: {name}{signature} cannot be built with {kwargs}: {_first_line(exc)}') from None


def config_text(name, kwargs):
    """``IRNeXt(num_res=14, low_pass='local')``: how a configuration is shown to the user."""
    return f"{name}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"


def load_options(path):
    """A BasicSR option file as a dict (only the parts read here: ``network_g``, ``path``)."""
    from basicsr_restore.option_files import read_option_file
    opt = read_option_file(path)
    if not isinstance(opt.get('network_g'), dict) or 'type' not in opt['network_g']:
        raise ValueError(f"-opt '{path}' has no network_g with a type (e.g. network_g: {{type: IRNeXt}}).")
    return opt


def network_spec(opt_path=None, arch=None, arch_args=None, weights=None):
    """``(name, kwargs, opt)`` from an option file's ``network_g`` or from ``--arch``/``--arch-args``; with only
    ``weights``, ``(None, {}, None)``: the checkpoint names its network (see :func:`open_network`)."""
    if opt_path and arch:
        raise ValueError('give either -opt or --arch, not both (the option file names the network in network_g).')
    if opt_path:
        opt = load_options(opt_path)
        kwargs = {k: v for k, v in opt['network_g'].items() if k != 'type'}
        kwargs.update(parse_arch_args(arch_args))
        return opt['network_g']['type'], kwargs, opt
    if arch:
        return arch, parse_arch_args(arch_args), None
    if arch_args:
        raise ValueError('--arch-args needs --arch NAME (the network they belong to).')
    if weights:
        return None, {}, None  # the network is the one the checkpoint records or its key layout shows
    raise ValueError('name the weights: --weights FILE (the network is found from the file), -opt OPTIONS.yml (its '
                     'network_g and path.pretrain_network_g), or --arch NAME --weights FILE '
                     '[--arch-args key=value ...].')


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
    this package's model and ``convert``); else the one its key layout identifies (:mod:`basicsr_restore.identify`:
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
        from basicsr_restore.identify import UnknownLayout, identify
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
    from basicsr_restore.archs.card import card_of
    card = card_of(net)
    return card.checkpoint_key if card else None
