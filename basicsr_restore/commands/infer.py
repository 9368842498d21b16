"""``basicsr-restore infer``: restore a file, a folder or a glob of images with a trained network.

The network comes from a test option file (``-opt``: ``network_g``, ``path.pretrain_network_g``,
``path.param_key_g``), from ``--arch NAME --weights FILE [--arch-args key=value ...]``, or from ``--weights FILE``
alone: the network the file records (``network_g``, in the checkpoints of this package) or the one its key
layout identifies (:mod:`basicsr_restore.core.identify`). Any checkpoint layout of
:mod:`basicsr_restore.core.checkpoints`, strict loading.

The forward pass is :mod:`basicsr_restore.core.inference` (shared with validation, ``report`` and ``bench``):

* **Any size**: each forward pads (reflect, bottom/right) to the network's size rule and crops back.
* **Tiles** (``--tile N --tile-overlap M``): the image is cut into N x N tiles overlapping by at least M
  pixels; each tile's output is blended with weights that are zero within M/4 of a tile's inner edges and
  ramp linearly to one over the next M/2. For a network whose receptive-field radius is below M/4 (and
  without global operations such as global pooling or instance norm), the tiled result equals the
  whole-image result up to float rounding; for U-Nets the ramps hide the seams.
* **TTA** (``--tta``): the mean of the outputs for the 8 flips/rotations (x8 slower).
* **Bit depth and channels**: 8- and 16-bit PNG/TIFF (JPEG/BMP/WebP in, PNG out); 16-bit stays 16-bit.
  Grayscale images are replicated to RGB and written back as gray; an alpha channel is kept aside and
  re-attached unchanged.
* **Speed** (``--speed best``, or ``--amp bf16|fp16``, ``--channels-last``, ``--compile MODE``, ``--cudnn-benchmark``,
  ``--tf32``; an ``-opt`` file's ``speed:`` block is the default): the switches of :mod:`basicsr_restore.core.speed`.
  ``best`` is the fastest combination of this device type that keeps the accuracy bar (see ``speed.BEST``).
* ``--compare`` writes ``input | output [| ground truth]`` strips (8-bit) to ``<out>/compare/``;
  ``--gt DIR`` scores the outputs (PSNR/SSIM on RGB with basicsr's metrics, in the images' own bit depth)
  and writes ``metrics<suffix>.csv`` and ``metrics<suffix>.md`` to the output folder.
"""
import glob
import os
import sys
import time

import numpy as np
import torch

from basicsr_restore.archs.card import size_rule
from basicsr_restore.commands.args import network_spec
from basicsr_restore.core import checkpoints, state_dicts
from basicsr_restore.core import speed as speeds
from basicsr_restore.core.imageio import (
    IMAGE_EXTENSIONS,
    ImageError,
    Picture,
    is_image,
    labelled,
    output_extension,
    read_picture,
    write_image,
)
from basicsr_restore.core.inference import Restorer, pick_device, to_output, to_tensor
from basicsr_restore.metrics.tables import format_markdown, write_tables


# ---------------------------------------------------------------------------------------------- inputs
def list_inputs(spec):
    """The image files named by ``spec``: one file, every image directly in a folder, or a glob pattern."""
    if os.path.isdir(spec):
        files = sorted(os.path.join(spec, f) for f in os.listdir(spec)
                       if is_image(f) and os.path.isfile(os.path.join(spec, f)))
        if not files:
            raise FileNotFoundError(f"--input folder '{spec}' holds no images ({', '.join(IMAGE_EXTENSIONS)}).")
        return files
    if os.path.isfile(spec):
        return [spec]
    if glob.has_magic(spec):
        files = sorted(f for f in glob.glob(spec, recursive=True) if os.path.isfile(f))
        if not files:
            raise FileNotFoundError(f"--input pattern '{spec}' matches no file.")
        return files
    raise FileNotFoundError(f"--input '{spec}' is neither a file, a folder nor a glob pattern that matches files.")


# ------------------------------------------------------------------------------------------- scoring
def as_rgb255(color, peak):
    """float64 image on the 0-255 scale, so that basicsr's PSNR/SSIM constants fit any bit depth."""
    return color.astype(np.float64) * (255.0 / peak)


def score(color, peak, gt):
    """PSNR and SSIM (RGB, no border crop, basicsr's functions) of ``color`` against the picture ``gt``."""
    from basicsr.metrics import calculate_psnr, calculate_ssim
    a, b = as_rgb255(color, peak), as_rgb255(gt.color, gt.peak)
    return float(calculate_psnr(a, b, 0)), float(calculate_ssim(a, b, 0))


def index_gt(folder):
    """``{stem: path}`` of the images in the ground-truth folder; a stem found twice is ambiguous."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"--gt folder '{folder}' does not exist.")
    index, twice = {}, set()
    for name in sorted(os.listdir(folder)):
        stem = os.path.splitext(name)[0]
        if is_image(name):
            if stem in index:
                twice.add(stem)
            index[stem] = os.path.join(folder, name)
    return index, twice


# ----------------------------------------------------------------------------------------------- plan
def output_names(inputs, suffix):
    """The output file name of every input: ``<stem><suffix><ext>`` (PNG/TIFF keep their extension, other formats
    become PNG). Inputs that share a stem (``a.png`` and ``a.tif``, or ``a.jpg`` and ``a.bmp``) would share an
    output, a strip or a score row: each of them keeps its extension in the name (``a_png.png``, ``a_tif.tif``)."""
    from collections import Counter
    split = [os.path.splitext(os.path.basename(path)) for path in inputs]
    shared = Counter(stem for stem, _ in split)
    names = []
    for stem, ext in split:
        label = f'{stem}_{ext[1:].lower()}' if shared[stem] > 1 else stem
        names.append((label, f'{label}{suffix}{output_extension(stem + ext)}'))
    return names


def _refuse_overwriting_inputs(jobs, inputs):
    own = {os.path.realpath(p): p for p in inputs}
    for job in jobs:
        for path in (job['output'], job.get('strip')):
            if path and os.path.realpath(path) in own:
                source = own[os.path.realpath(path)]
                raise ValueError(f"the output '{path}' is the input '{source}': infer never writes "
                                 'over its inputs (not even with --overwrite). Choose another --output folder or a '
                                 '--suffix.')


def plan(args, inputs):
    """Output, strip and ground-truth paths of every input, checked before any network runs."""
    jobs, seen = [], {}
    gt_index, twice = index_gt(args.gt) if args.gt else ({}, set())
    missing_gt = []
    for path, (label, name) in zip(inputs, output_names(inputs, args.suffix)):
        if name in seen:
            raise ValueError(f"'{path}' and '{seen[name]}' would both be written as '{name}': restore them into "
                             'different output folders, or use --suffix.')
        seen[name] = path
        stem = os.path.splitext(os.path.basename(path))[0]
        job = {'input': path, 'stem': stem, 'label': label, 'output': os.path.join(args.output, name)}
        if args.compare:
            job['strip'] = os.path.join(args.output, 'compare', f'{os.path.splitext(name)[0]}.png')
        if args.gt:
            if stem in twice:
                raise ValueError(f"--gt folder '{args.gt}' holds several images named '{stem}.*'; keep one.")
            job['gt'] = gt_index.get(stem)
            if job['gt'] is None:
                missing_gt.append(stem)
        jobs.append(job)
    if missing_gt:
        raise FileNotFoundError(f"--gt folder '{args.gt}' has no image for {', '.join(missing_gt[:10])}"
                                f"{' ...' if len(missing_gt) > 10 else ''} (matched by file name without extension).")
    _refuse_overwriting_inputs(jobs, inputs)
    if not args.overwrite:
        taken = [p for job in jobs for p in (job['output'], job.get('strip')) if p and os.path.exists(p)]
        if args.gt:
            taken += [p for p in (os.path.join(args.output, f'metrics{args.suffix}.{e}') for e in ('csv', 'md'))
                      if os.path.exists(p)]
        if taken:
            raise FileExistsError(f"{len(taken)} output file(s) exist already, e.g. '{taken[0]}'. Choose another "
                                  'output folder or pass --overwrite.')
    return jobs


def pick_speed(args, opt, device):
    """The speed switches: ``--speed``, else the ``-opt`` file's ``speed:`` block; single flags override either."""
    if args.speed:
        base = args.speed
    else:
        base = speeds.parse(opt.get('speed') if opt else None, where=f"-opt '{args.opt}': speed")

    def note(message):
        print(f'note: {message}', file=sys.stderr)

    # best: the device's preset by the one rule of training, the API and serve (its reason noted once per process)
    base = speeds.preset(device, note) if base == 'best' else speeds.Speed() if base == 'fp32' else base
    block = base.as_options()
    for key in ('amp', 'compile'):
        if getattr(args, key) is not None:
            block[key] = getattr(args, key)
    for key in ('channels_last', 'cudnn_benchmark', 'tf32'):
        if getattr(args, key):
            block[key] = True
    block.pop('checkpoint')  # a training switch
    chosen = speeds.parse(block, where='infer speed')
    return speeds.resolve(chosen, device, note, where='infer speed')


def build(args):
    """The network, the line that says what was loaded, and the option file (or None)."""
    name, kwargs, opt = network_spec(args.opt, args.arch, args.arch_args, args.weights)
    weights, param_key, strict, trusted = args.weights, args.param_key, True, args.trusted
    what, allow_partial = '--weights', False
    if opt is not None:
        path_opt = opt.get('path') or {}
        if not weights:
            weights, what = path_opt.get('pretrain_network_g'), 'path.pretrain_network_g'
            if not weights:
                raise ValueError(f"-opt '{args.opt}' sets no path.pretrain_network_g: add it or pass --weights FILE.")
        param_key = param_key or path_opt.get('param_key_g')
        strict = path_opt.get('strict_load_g', True) is not False
        trusted = trusted or path_opt.get('weights_only_g', True) is False
        allow_partial = path_opt.get('allow_partial_load_g', False) is True
    elif not weights:
        raise ValueError(f'--arch {name} needs --weights FILE (a checkpoint of that network).')
    net, info = checkpoints.open_network(weights, name, kwargs, param_key, strict, trusted, what, allow_partial)
    line = f"{info['network']} <- {weights}: {state_dicts.describe(info)}"
    if info['found'] != 'named':
        line += f"; network {info['found']}"
    if not strict and (info['missing'] or info['unexpected'] or info['shape_mismatches']):
        summary = state_dicts.fit_summary(net, info['missing'], info['unexpected'], info['shape_mismatches'])
        print(f'WARNING: non-strict load (path.strict_load_g: false): {summary}; the rest keeps its initial values.',
              file=sys.stderr)
    return net, line, opt


def compare_strip(picture, out_color, gt=None, scores=None):
    view = Picture(picture.path, out_color)
    tiles = [labelled(picture.view8(), 'input' + (f" {scores['psnr_in']:.2f} dB" if scores else '')),
             labelled(view.view8(), 'output' + (f" {scores['psnr_out']:.2f} dB" if scores else ''))]
    if gt is not None:
        tiles.append(labelled(gt.view8(), 'ground truth'))
    return np.concatenate(tiles, axis=1)


# ------------------------------------------------------------------------------------------------ run
def run(args):
    from tqdm import tqdm
    if args.tile < 0 or args.tile_overlap < 0:
        raise ValueError('--tile and --tile-overlap must be >= 0.')
    if args.speed not in (None, 'best', 'fp32'):
        raise ValueError(f"--speed {args.speed!r}: use best or fp32 (or single switches such as --amp bf16).")
    inputs = list_inputs(args.input)
    jobs = plan(args, inputs)
    device = pick_device(args.device)
    net, line, opt = build(args)
    speed = pick_speed(args, opt, device)
    restorer = Restorer(net, device, speed, args.tile, args.tile_overlap, args.tta)
    if restorer.tile and args.tile_overlap >= restorer.tile:
        raise ValueError(f'--tile-overlap {args.tile_overlap} must be smaller than the tile ({restorer.tile}).')
    mode = f'tiles {restorer.tile} (overlap {args.tile_overlap})' if restorer.tile else 'whole images'
    if restorer.tile and restorer.tile != args.tile:
        mode += f', --tile {args.tile} rounded to the multiple {size_rule(net).multiple}'
    print(line)
    tta = ', x8 TTA' if args.tta else ''
    print(f'{len(jobs)} image(s) -> {args.output}: {device}, {speed.describe()}, {mode}{tta}')
    os.makedirs(args.output, exist_ok=True)
    if args.compare:
        os.makedirs(os.path.join(args.output, 'compare'), exist_ok=True)

    rows, failures, start = [], [], time.time()
    bar = tqdm(jobs, desc='infer', unit='img', file=sys.stderr, dynamic_ncols=True)
    for job in bar:
        bar.set_postfix_str(os.path.basename(job['input']))
        try:
            row = restore_one(job, restorer, args, tqdm)
        except ImageError as exc:
            failures.append(str(exc))
            tqdm.write(f'error: {exc}', file=sys.stderr)
            continue
        if row:
            rows.append(row)
    bar.close()

    done = len(jobs) - len(failures)
    print(f'{done} image(s) restored in {time.time() - start:.1f} s')
    if rows:
        paths = write_tables(rows, args.output, f'metrics{args.suffix}', title=line.split(' <- ')[0])
        print(format_markdown(rows), end='')
        print(f'scores: {paths[0]}, {paths[1]}')
    if failures:
        print(f'basicsr-restore infer: {len(failures)} of {len(jobs)} image(s) failed:\n  ' + '\n  '.join(failures),
              file=sys.stderr)
        return 2
    return 0


def restore_one(job, restorer, args, tqdm):
    """Restore, write, score and draw one image; returns its score row (or None without --gt)."""
    picture = read_picture(job['input'])
    gt = read_picture(job['gt']) if job.get('gt') else None
    h, w = picture.color.shape[:2]
    if gt is not None and gt.color.shape[:2] != (h, w):
        raise ImageError(f"ground truth '{job['gt']}' is {gt.color.shape[1]}x{gt.color.shape[0]} but the input "
                         f"'{job['input']}' is {w}x{h}.")
    n_tiles = restorer.count_tiles(h, w)
    inner = tqdm(total=n_tiles, desc='tiles', leave=False, file=sys.stderr) if n_tiles > 1 else None
    try:
        out = restorer(to_tensor(picture), inner)
    except torch.OutOfMemoryError:
        raise ImageError(f"out of memory on {restorer.device} for '{job['input']}' ({w}x{h}): use --tile 512 "
                         '(or smaller).') from None
    except (RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ImageError(f"the network failed on '{job['input']}' ({w}x{h}): {first}") from None
    finally:
        if inner is not None:
            inner.close()
    if not torch.isfinite(out).all():
        raise ImageError(f"the network produced NaN/Inf for '{job['input']}' ({w}x{h}); nothing was written. With "
                         '--amp fp16 use bf16 or fp32; otherwise the weights are broken.')
    written, color = to_output(picture, out)
    write_image(job['output'], written)
    row = None
    if gt is not None:
        psnr_out, ssim_out = score(color, picture.peak, gt)
        psnr_in, ssim_in = score(picture.color, picture.peak, gt)
        row = {'image': job['label'], 'psnr_in': psnr_in, 'psnr_out': psnr_out, 'ssim_in': ssim_in,
               'ssim_out': ssim_out}
    if job.get('strip'):
        write_image(job['strip'], compare_strip(picture, color, gt, row))
    return row
