"""``basicsr-restore convert SRC DST``: an official (or any) checkpoint -> a BasicSR weights file.

Writes ``{'params': state_dict, 'network_g': {'type': ..., arguments}}`` (and ``'params_ema'``, the same tensors,
with ``--ema``), which ``path.pretrain_network_g`` loads with the default ``param_key_g: params`` and which
``infer``, ``export``, ``serve`` and ``basicsr_restore.load`` open without naming the network. Prints what was
mapped: the key the weights were under, the prefixes stripped, the tensor and value counts, the network (named
by ``--arch``, else identified from the key layout) and the strict match against it. The source is read
weights-only: a file that pickles other Python objects is refused unless ``--trusted`` says it comes from a
trusted source. An existing DST is never replaced without ``--overwrite``. ``--to safetensors`` (or a DST named
``*.safetensors``) writes a safetensors file (``params.<key>`` tensors, the record in its metadata) instead of
torch's zip file; any file that can be read converts, safetensors ones included.
"""
import os
from collections import OrderedDict

from basicsr_restore.commands.args import parse_arch_args
from basicsr_restore.core import checkpoints, state_dicts
from basicsr_restore.core.identify import UnknownLayout, identify
from basicsr_restore.core.imageio import atomic_path


def output_format(dst, to=None):
    """The format to write: ``to`` (``--to``), else by DST's extension (``.safetensors`` or torch's ``pth``); an
    error when ``to`` and the extension disagree."""
    by_name = checkpoints.format_of(dst)
    ext = os.path.splitext(str(dst))[1].lower()
    if to is None:
        return by_name
    if to not in checkpoints.SAVE_FORMATS:
        raise ValueError(f"--to {to!r}: one of {', '.join(checkpoints.SAVE_FORMATS)}.")
    if (to == 'safetensors') != (by_name == 'safetensors') and ext in ('.safetensors', '.pth', '.pt', '.pkl'):
        raise ValueError(f"--to {to} but the output '{dst}' is named {ext}: name it "
                         f"'{os.path.splitext(str(dst))[0]}{checkpoints.SAVE_FORMATS[to]}'.")
    return to


def convert(src, dst, param_key=None, arch=None, arch_args=None, ema=False, trusted=False, overwrite=False, to=None):
    """Convert ``src`` into ``dst`` (written as ``to``: ``pth`` or ``safetensors``, by default by DST's extension);
    returns the report lines (also used by the tests)."""
    fmt = output_format(dst, to)
    if os.path.abspath(src) == os.path.abspath(dst):
        raise ValueError('the output must be a new file, not the source itself.')
    if os.path.exists(dst) and not overwrite:
        raise FileExistsError(f"output '{dst}' exists; pass --overwrite to replace it.")
    if arch_args and not arch:
        raise ValueError('--arch-args needs --arch NAME.')
    net = None
    checkpoint = checkpoints.read_checkpoint(src, trusted=trusted, what='source')
    record, kwargs = None, parse_arch_args(arch_args)
    if not arch and checkpoints.network_record(checkpoint):
        arch, kwargs = checkpoints.network_record(checkpoint)
    if arch:
        net = checkpoints.build_arch(arch, kwargs)
        record = dict(type=arch, **kwargs)
    state, info = state_dicts.find_state_dict(checkpoint, param_key, checkpoints.official_key(net) if arch else None,
                                              prefer_ema=True, where=f"'{src}'")
    values = sum(v.numel() for v in state.values())
    dtypes = sorted({str(v.dtype).replace('torch.', '') for v in state.values()})
    if checkpoints.safetensors_io.is_safetensors(src):
        how = 'safetensors, no code'
    else:
        how = 'trusted, full unpickling' if trusted else 'weights-only load'
    lines = [f'source: {src} ({how})']
    if info['top_keys']:
        lines.append(f"top-level keys: {', '.join(info['top_keys'])}")
    lines.append(f'weights: {state_dicts.describe(info)}; {values:,} values ({", ".join(dtypes)})')
    if not info['stripped']:
        lines.append('prefixes stripped: none')
    if not arch:
        try:
            found = identify(state)
        except UnknownLayout as exc:  # still a valid conversion (e.g. a network of basicsr itself), said plainly
            lines.append(f'network: not identified, so none is recorded. {exc}')
        else:
            net, arch, kwargs = found.cls(**found.kwargs), found.name, found.kwargs
            record = dict(type=arch, **kwargs)
            lines.append(f'identified from the key layout: {found.describe()}')
    if net is not None:
        state_dicts.load_into(net, state, f"'{src}'", strict=True)  # raises, listing what does not fit
        params = sum(p.numel() for p in net.parameters())
        lines.append(f'matches {checkpoints.config_text(arch, kwargs)}: all {len(net.state_dict())} keys and shapes '
                     f'(strict), {params:,} parameters')
    clean = OrderedDict((k, v.detach().cpu().contiguous().clone()) for k, v in state.items())
    payload = {'params': clean}
    if ema:
        payload['params_ema'] = clean
    if record is not None:
        payload[checkpoints.NETWORK_KEY] = checkpoints.record_of(record)
    folder = os.path.dirname(os.path.abspath(dst))
    os.makedirs(folder, exist_ok=True)
    with atomic_path(dst) as tmp:  # a failed or interrupted write leaves nothing behind
        checkpoints.dump_weights(payload, tmp, fmt, where=f"output '{dst}'")
    lines.append(f"wrote: {dst} ({fmt}) with {list(payload)} (load with path.pretrain_network_g: {dst}, "
                 'param_key_g: params)')
    return lines


def run(args):
    for line in convert(args.src, args.dst, args.param_key, args.arch, args.arch_args, args.ema, args.trusted,
                        args.overwrite, args.to):
        print(line)
    return 0
