"""``basicsr-restore convert SRC DST``: an official (or any) checkpoint -> a BasicSR weights file.

Writes ``{'params': state_dict}`` (and ``'params_ema'``, the same tensors, with ``--ema``), which
``path.pretrain_network_g`` loads with the default ``param_key_g: params``, and prints what was mapped: the
key the weights were under, the prefixes stripped, the tensor and value counts, and, with ``--arch``, the
strict match against that network. The source is read weights-only: a file that pickles other Python
objects is refused unless ``--trusted`` says it comes from a trusted source. An existing DST is never
replaced without ``--overwrite``.
"""
import os
from collections import OrderedDict

import torch

from basicsr_restore import checkpoints
from basicsr_restore.imageio import atomic_path


def convert(src, dst, param_key=None, arch=None, arch_args=None, ema=False, trusted=False, overwrite=False):
    """Convert ``src`` into ``dst``; returns the report lines (also used by the tests)."""
    if os.path.abspath(src) == os.path.abspath(dst):
        raise ValueError('the output must be a new file, not the source itself.')
    if os.path.exists(dst) and not overwrite:
        raise FileExistsError(f"output '{dst}' exists; pass --overwrite to replace it.")
    if arch_args and not arch:
        raise ValueError('--arch-args needs --arch NAME.')
    checkpoint = checkpoints.read_checkpoint(src, trusted=trusted, what='source')
    official = None
    if arch:
        net = checkpoints.build_arch(arch, checkpoints.parse_arch_args(arch_args))
        official = checkpoints.official_key(net)
    state, info = checkpoints.find_state_dict(checkpoint, param_key, official, prefer_ema=True, where=f"'{src}'")
    values = sum(v.numel() for v in state.values())
    dtypes = sorted({str(v.dtype).replace('torch.', '') for v in state.values()})
    lines = [f"source: {src} ({'trusted, full unpickling' if trusted else 'weights-only load'})"]
    if info['top_keys']:
        lines.append(f"top-level keys: {', '.join(info['top_keys'])}")
    lines.append(f'weights: {checkpoints.describe(info)}; {values:,} values ({", ".join(dtypes)})')
    if not info['stripped']:
        lines.append('prefixes stripped: none')
    if arch:
        checkpoints.load_into(net, state, f"'{src}'", strict=True)  # raises, listing what does not fit
        params = sum(p.numel() for p in net.parameters())
        lines.append(f'matches {checkpoints.config_text(arch, checkpoints.parse_arch_args(arch_args))}: all '
                     f'{len(net.state_dict())} keys and shapes (strict), {params:,} parameters')
    clean = OrderedDict((k, v.detach().cpu().contiguous().clone()) for k, v in state.items())
    payload = {'params': clean}
    if ema:
        payload['params_ema'] = clean
    folder = os.path.dirname(os.path.abspath(dst))
    os.makedirs(folder, exist_ok=True)
    with atomic_path(dst) as tmp:  # a failed or interrupted write leaves nothing behind
        torch.save(payload, tmp)
    lines.append(f"wrote: {dst} with {list(payload)} (load with path.pretrain_network_g: {dst}, param_key_g: params)")
    return lines


def run(args):
    for line in convert(args.src, args.dst, args.param_key, args.arch, args.arch_args, args.ema, args.trusted,
                        args.overwrite):
        print(line)
    return 0


def add_arguments(p):
    """The ``convert`` options (used by ``basicsr_restore.cli``)."""
    p.add_argument('src', help='checkpoint to convert (.pth, .pkl, .pt)')
    p.add_argument('dst', help='BasicSR weights file to write')
    p.add_argument('--param-key', help='key that holds the weights (default: detected)')
    p.add_argument('--arch', help='check the weights against this registered network (strict)')
    p.add_argument('--arch-args', nargs='+', metavar='K=V', default=[],
                   help='constructor arguments of --arch: key=value ... or one JSON object (put this option last)')
    p.add_argument('--ema', action='store_true', help='also write the weights as params_ema')
    p.add_argument('--trusted', action='store_true',
                   help='the source is trusted: allow pickled Python objects (torch.load weights_only=False)')
    p.add_argument('--overwrite', action='store_true', help='replace an existing DST')
