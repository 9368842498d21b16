"""Which entry of a loaded checkpoint holds the weights, with wrapper prefixes stripped, refused when NaN/Inf, and how
they fit a network: the rules :mod:`basicsr_restore.core.checkpoints` (files) and
:mod:`basicsr_restore.core.safetensors_io` share. The order in which entries are tried is :func:`detect_key`'s (see
:mod:`basicsr_restore.core.checkpoints`)."""
from collections import OrderedDict

import torch

from basicsr_restore.core.errors import RestoreError

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


def first_line(exc):
    """The first line of an exception's message, whole (never cut mid-sentence)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


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
