"""``basicsr-restore bench``: the same measurements for every network, on the CPU or a GPU.

For each network (all registered ones with their constructor defaults — the official configurations —,
or ``--arch NAME [--arch-args ...]``, or an option file's ``network_g``):

* **params**: number of parameters;
* **MACs** at ``--size`` (batch 1; the size is rounded up to the network's multiple): FLOPs / 2 from
  ``torch.utils.flop_counter.FlopCounterMode``, run on meta tensors (nothing is computed, so it is instant
  at any size). It counts convolutions (transposed ones included), matrix products (mm, addmm, bmm, baddbmm)
  and attention kernels; element-wise ops, normalisation, pooling, cumulative sums, interpolation and FFTs are
  not counted (counters such as thop/ptflops that count them report 3-8 % more). Such ops cost memory traffic,
  not MACs: only the latency shows them (IRNeXt's ``low_pass: local`` box mean is computed from running sums,
  linear in the map size, so ``local`` and ``global`` take about the same time);
* **latency**: forward at batch 1 in eval mode without gradients, ``--warmup`` runs then ``--runs`` timed
  ones; median, min, max, inter-quartile range. GPU: CUDA events; CPU: ``time.perf_counter``;
* **peak memory**: GPU: ``torch.cuda.max_memory_allocated`` during the forward runs and during training
  (weights included). CPU: not measured (``null``), torch has no allocator statistics there;
* **training**: iterations per second of training's own step: the recipe's model (``model_type`` of the option
  file, RestorationModel or a fork's name, built by basicsr's ``build_model``) is built from the recipe (``-opt``, or
  with ``--arch`` or the registry the network's shipped recipe, :data:`RECIPES`; L1 and Adam when there is none)
  with the benched network as ``network_g``, the mode's switches as ``speed``, no datasets, no pretrained file and a
  temporary ``path`` folder, and each step is ``model.feed_data`` + ``model.optimize_parameters``: every loss of the
  recipe on every output, backward, gradient clipping, the GradScaler (fp16), the optimizer, the NaN guard and the
  EMA, as the recipe sets them; nothing of the step is copied here. The batches are ``--train-batch`` random patches
  of ``--patch`` x ``--patch`` pixels, as the DataLoader delivers them (:data:`TRAIN_BATCH_DTYPE`). The same steps
  with a guard that does nothing (``NoGuard`` in ``model.guard``) are timed in between, and the table shows the NaN
  guard's cost (median step time with / without, in %). A VGG19 file that a recipe names but that is not here is
  replaced by an untrained VGG19 of the same cost (the record says so).

* **accuracy**: for every mode but fp32, PSNR of the mode's output against fp32 eager on a real photo (scikit-image's
  astronaut, resized to the input size), same weights (``psnr_vs_fp32_db``).

Modes (``--mode``, combine with ``+``): the switches of :mod:`basicsr_restore.core.speed`: ``fp32``, ``bf16``/``fp16``
(autocast; fp16 trains with a GradScaler), ``channels_last``, ``compile`` / ``max-autotune`` / ``reduce-overhead``
(``torch.compile`` modes; compilation happens in the warm-up runs), ``checkpoint`` (activation checkpointing in
training), ``cudnn_benchmark``, ``tf32``; and ``best``: each candidate of the device (:func:`candidates`: the preset
that ``speed: best`` runs there, then :data:`CANDIDATES`) is timed briefly and the fastest one whose output keeps
the accuracy bar (:data:`ACCURACY_DB`) is measured in full.
``--json FILE`` writes every figure; ``--vs MODE`` runs a second mode and ``--vs FILE.json`` loads earlier results,
and the ratios are printed.
"""
import contextlib
import copy
import datetime
import glob
import itertools
import json
import logging
import math
import os
import platform
import statistics
import sys
import tempfile
import time

import torch

from basicsr_restore.archs.card import size_rule
from basicsr_restore.commands import args as args_
from basicsr_restore.commands.bench_data import fmt as _fmt
from basicsr_restore.commands.bench_data import format_data, measure_data
from basicsr_restore.core import checkpoints, inference, speed
from basicsr_restore.core.imageio import atomic_path
from basicsr_restore.core.inference import final_output
from basicsr_restore.core.option_files import read_option_file

MODE_FLAGS = ('fp32', 'bf16', 'fp16', 'channels_last', 'compile', 'max-autotune', 'reduce-overhead', 'checkpoint',
              'cudnn_benchmark', 'tf32')
COMPILE_FLAGS = {'compile': 'default', 'max-autotune': 'max-autotune', 'reduce-overhead': 'reduce-overhead'}
#: the shipped training recipe whose losses ``bench`` uses for a network given without an option file
RECIPES = {'IRNeXt': 'options/train/GoPro/IRNeXt.yml', 'ChaIR': 'options/train/GoPro/ChaIR.yml',
           'DRCNet': 'options/train/GoPro/DRCNet.yml', 'EIRN': 'options/train/GoPro/EIRN.yml',
           'MIRNet': 'options/train/SIDD/MIRNet.yml'}
#: the accuracy bar of ``--mode best``: PSNR (dB) of the output against fp32 eager, per device type
ACCURACY_DB = {'cuda': 50.0, 'cpu': 45.0}
#: what ``--mode best`` tries, per device type, after the device's preset (:func:`candidates`; bf16 on the CPU only
#: where it has native bf16 instructions, the rule of ``speed.preset``)
CANDIDATES = {
    'cuda': ['bf16+channels_last+compile+cudnn_benchmark+tf32', 'bf16+channels_last+cudnn_benchmark',
             'channels_last+compile+cudnn_benchmark+tf32', 'channels_last+cudnn_benchmark+tf32'],
    'cpu': ['channels_last', 'fp32'],
    'cpu-bf16': ['bf16+channels_last', 'bf16'],
}
FORMAT = 'basicsr-restore-bench/1'
MACS_METHOD = ('torch.utils.flop_counter.FlopCounterMode on meta tensors, batch 1, FLOPs/2; counts convolution '
               '(incl. transposed), mm/addmm/bmm/baddbmm and attention; not element-wise ops, normalisation, '
               'pooling, cumulative sums (IRNeXt\'s local box mean), interpolation or FFT')


# ----------------------------------------------------------------------------------------------- setup
def parse_mode(text):
    """``'bf16+channels_last'`` -> the canonical mode name; ``fp32`` alone means no flag; ``best`` alone."""
    if str(text).strip() == 'best':
        return 'best'
    flags = [f.strip() for f in str(text).split('+') if f.strip()]
    bad = [f for f in flags if f not in MODE_FLAGS]
    if bad or not flags or ('bf16' in flags and 'fp16' in flags) or sum(f in COMPILE_FLAGS for f in flags) > 1:
        raise ValueError(f'--mode {text!r}: use one of {", ".join(MODE_FLAGS)}, or several joined by + '
                         '(e.g. bf16+channels_last; one of bf16/fp16, one compile mode), or best.')
    flags = [f for f in MODE_FLAGS if f in flags and f != 'fp32']
    return '+'.join(flags) or 'fp32'


def mode_speed(mode):
    """The :class:`~basicsr_restore.core.speed.Speed` of a canonical mode name (static shapes: one size is timed)."""
    flags = set(mode.split('+'))
    amp = 'bf16' if 'bf16' in flags else 'fp16' if 'fp16' in flags else False
    compile_mode = next((COMPILE_FLAGS[f] for f in COMPILE_FLAGS if f in flags), False)
    return speed.Speed(amp=amp, channels_last='channels_last' in flags, compile=compile_mode,
                       cudnn_benchmark='cudnn_benchmark' in flags, tf32='tf32' in flags,
                       checkpoint='checkpoint' in flags, dynamic=False)


def speed_mode(chosen):
    """The canonical mode name of a :class:`~basicsr_restore.core.speed.Speed` (the switches a mode can name)."""
    flags = [chosen.amp] if chosen.amp else []
    flags += ['channels_last'] if chosen.channels_last else []
    flags += [f for f, m in COMPILE_FLAGS.items() if m == chosen.compile]
    flags += [k for k in ('checkpoint', 'cudnn_benchmark', 'tf32') if getattr(chosen, k)]
    return parse_mode('+'.join(flags) or 'fp32')


def candidates(device):
    """What ``--mode best`` tries on ``device``: first the preset that ``speed: best`` runs there
    (:func:`basicsr_restore.core.speed.preset`, the one rule), then the device's other :data:`CANDIDATES`."""
    device = torch.device(device)
    if device.type == 'cuda':
        others = CANDIDATES['cuda']
    else:
        others = (CANDIDATES['cpu-bf16'] if speed.native_cpu_bf16() else []) + CANDIDATES['cpu']
    first = speed_mode(speed.preset(device))
    return [first] + [mode for mode in others if mode != first]


def parse_size(text):
    """``'256'`` -> (256, 256); ``'720x1280'`` -> (720, 1280)."""
    try:
        parts = [int(p) for p in str(text).lower().split('x')]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) <= 0:
        raise ValueError(f'--size {text!r}: give N or HxW in pixels (e.g. 256 or 720x1280).')
    return tuple(parts)


def fit_size(net, size):
    """``size`` rounded up to the network's multiple and at least its minimum size (its card's size rule)."""
    return tuple(size_rule(net).fit(s) for s in size)


def cases(args):
    """``[(name, kwargs)]`` to measure."""
    if args.opt or args.arch:
        name, kwargs, _ = args_.network_spec(args.opt, args.arch, args.arch_args)
        with torch.device('meta'):  # bad names or arguments: one clear error before anything runs
            checkpoints.build_arch(name, kwargs)
        return [(name, kwargs)]
    if args.arch_args:
        raise ValueError('--arch-args needs --arch NAME (or -opt).')
    from basicsr_restore.core.registry import network_names
    return [(name, {}) for name in network_names()]


def pick_device(name):
    return torch.device(inference.pick_device(name))


def device_name(device):
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    return f'{platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)'


# ------------------------------------------------------------------------------------------- measures
def count_macs(name, kwargs, size):
    """``(macs, {op: macs}, method)`` of one forward at batch 1 and ``size`` (already fitted)."""
    from torch.utils.flop_counter import FlopCounterMode
    method = MACS_METHOD
    try:
        with torch.device('meta'):
            net = checkpoints.build_arch(name, kwargs).eval()
            x = torch.empty(1, 3, *size)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            net(x)
    except NotImplementedError:  # an op without a meta kernel: count on real CPU tensors instead
        net = checkpoints.build_arch(name, kwargs).eval()
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            net(torch.rand(1, 3, *size))
        method = method.replace('on meta tensors', 'on CPU tensors (an op has no meta kernel)')
    per_op = {str(op): int(n) // 2 for op, n in counter.get_flop_counts().get('Global', {}).items()}
    return counter.get_total_flops() // 2, per_op, method


def spread(times):
    """Summary of timings in milliseconds."""
    ordered = sorted(times)
    q = statistics.quantiles(ordered, n=4) if len(ordered) >= 2 else [ordered[0]] * 3
    return {'median': statistics.median(ordered), 'min': ordered[0], 'max': ordered[-1], 'iqr': q[2] - q[0],
            'runs': len(ordered), 'times': [round(t, 4) for t in times]}


class Timer:
    """Milliseconds of a callable: CUDA events on a GPU, perf_counter after a synchronize on the CPU."""

    def __init__(self, device):
        self.device = device
        self.method = 'cuda events' if device.type == 'cuda' else 'time.perf_counter'

    def __call__(self, fn):
        if self.device.type == 'cuda':
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize(self.device)
            return start.elapsed_time(end)
        start = time.perf_counter()
        fn()
        return (time.perf_counter() - start) * 1000.0


def prepare(net, mode, device):
    """The network on ``device`` in ``mode``: (network, module to call, its Speed)."""
    chosen = speed.resolve(mode_speed(mode), device, lambda m: None)
    speed.apply_backend_flags(chosen)
    net = net.to(device=device, memory_format=chosen.memory_format)
    if chosen.checkpoint:
        speed.enable_checkpointing(net, True)
    return net, speed.compiled(net, chosen, training=False), chosen


def real_photo(size):
    """scikit-image's astronaut resized to ``size`` (H, W): (1, 3, H, W) float32 in [0, 1]."""
    import cv2
    from skimage import data
    img = cv2.resize(data.astronaut(), (size[1], size[0]), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(img.astype('float32').transpose(2, 0, 1) / 255.0)[None]


def psnr_db(a, b):
    mse = (a.clamp(0, 1) - b.clamp(0, 1)).double().square().mean().item()
    return float('inf') if mse == 0 else 10 * math.log10(1 / mse)


def peak_memory(device, fn):
    """(result, peak MB) of ``fn``: CUDA only; ``None`` on the CPU."""
    if device.type != 'cuda':
        return fn(), None
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    result = fn()
    torch.cuda.synchronize(device)
    return result, torch.cuda.max_memory_allocated(device) / 2**20


def measure_forward(runner, chosen, size, device, warmup, runs):
    timer = Timer(device)
    x = speed.to_memory_format(torch.rand(1, 3, *size, device=device), chosen)
    runner.eval()

    def once():
        with torch.no_grad(), speed.autocast(chosen, device):
            runner(x)

    for _ in range(warmup):
        once()
    times, peak = peak_memory(device, lambda: [timer(once) for _ in range(runs)])
    return spread(times), peak, timer.method


#: the dtype of the random training batches: uint8 pixels, as the datasets' integer batches travel to
#: ``RestorationModel.feed_data``, which makes them float32 in [0, 1] on the device (``torch.float32``: float batches)
TRAIN_BATCH_DTYPE = torch.uint8
#: the recipe of a network without one: L1 on every output, Adam, no EMA
FALLBACK_TRAIN = {'optim_g': {'type': 'Adam', 'lr': 1e-4}, 'total_iter': 10 ** 9,
                  'scheduler': {'type': 'MultiStepLR', 'milestones': [10 ** 9]},
                  'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0}}


def training_recipe(opt_path, name):
    """``(options, path, notes)``: the option file whose ``train`` block trains the network (``-opt``, else the
    network's shipped recipe, :data:`RECIPES`), with IntraCR's VGG19 file replaced by an untrained VGG19 of the same
    cost when it is not here; ``path`` None and :data:`FALLBACK_TRAIN` when there is no recipe."""
    from basicsr_restore.models.restoration_model import loss_specs
    for path in (opt_path, RECIPES.get(name)):
        if path and os.path.isfile(path):
            opt = read_option_file(path)
            if loss_specs(opt.get('train') or {}):
                break
    else:
        missing = [f'no recipe found: {RECIPES[name]} is relative to the project folder'] if name in RECIPES else []
        return {'model_type': 'RestorationModel', 'train': copy.deepcopy(FALLBACK_TRAIN)}, None, missing
    opt = dict(opt, train=dict(opt['train']))
    notes = []
    for key, spec in opt['train'].items():
        if isinstance(spec, dict) and spec.get('type') == 'IntraCRLoss' and spec.get('vgg_weights') != 'random':
            from basicsr_restore.losses.intra_cr_loss import find_vgg_weights
            try:
                find_vgg_weights(spec.get('vgg_weights'))
            except FileNotFoundError:
                opt['train'][key] = dict(spec, vgg_weights='random')
                notes.append(f'{key}: untrained VGG19 (no VGG19 file found; same cost)')
    return opt, path, notes


def training_options(recipe, name, kwargs, chosen, device, folder):
    """The options RestorationModel (or the recipe's ``model_type``) is built from: the recipe's ``model_type``,
    ``scale`` and ``train`` block, the benched network as ``network_g``, the mode's switches as ``speed``, no
    datasets, no pretrained file, every ``path`` in ``folder``."""
    paths = {key: os.path.join(folder, key) for key in ('models', 'training_states', 'log', 'visualization')}
    return {'name': 'bench', 'model_type': recipe.get('model_type') or 'RestorationModel',
            'scale': recipe.get('scale') or 1, 'num_gpu': 1 if device.type == 'cuda' else 0, 'manual_seed': 0,
            'is_train': True, 'dist': False, 'rank': 0, 'world_size': 1, 'auto_resume': False, 'root_path': folder,
            'network_g': {'type': name, **kwargs}, 'speed': chosen.as_options(),
            'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None,
                     'experiments_root': folder, **paths},
            'train': copy.deepcopy(recipe['train'])}


def random_batch(batch, patch, dtype, pin):
    """A training batch as the DataLoader hands it to ``feed_data``: ``lq`` and ``gt`` of shape (batch, 3, *patch)
    on the CPU (pinned for a GPU), random pixels of ``dtype`` (integers over their range, floats in [0, 1])."""
    def one():
        shape = (batch, 3, *patch)
        x = (torch.rand(shape, dtype=dtype) if dtype.is_floating_point else
             torch.randint(0, int(torch.iinfo(dtype).max) + 1, shape, dtype=dtype))
        return x.pin_memory() if pin else x
    return {'lq': one(), 'gt': one()}


@contextlib.contextmanager
def quiet_basicsr_log():
    """basicsr's logger at ERROR (building a model logs the network's whole structure and its settings)."""
    from basicsr.utils import get_root_logger
    logger = get_root_logger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def measure_training(model, data, device, warmup, runs):
    """Training steps of ``model`` as training takes them: ``feed_data(data)`` then ``optimize_parameters(i)`` (its
    loss terms, NaN guard, gradient clipping, GradScaler, optimizer and EMA). Between the timed steps the same step is
    timed with a :class:`~basicsr_restore.models.step_guard.NoGuard` in ``model.guard``; ``nan_guard_cost_pct`` is
    what the guard costs (median step time with / without). ``warmup`` untimed pairs first."""
    from basicsr_restore.models.step_guard import NoGuard, StepGuard
    timer = Timer(device)
    guard = getattr(model, 'guard', None)
    compare = isinstance(guard, StepGuard)
    plain = NoGuard() if compare else None
    iteration = itertools.count(1)

    def step(guarded):
        if compare:
            model.guard = guard if guarded else plain

        def once():
            model.feed_data(data)
            model.optimize_parameters(next(iteration))

        return timer(once)

    def timed():
        return [(step(True), step(False) if compare else None) for _ in range(runs)]

    try:
        for _ in range(warmup):
            step(True)
            if compare:
                step(False)
        pairs, peak = peak_memory(device, timed)
    finally:
        if compare:
            model.guard = guard
    with_guard = [p[0] for p in pairs]
    record = {'it_per_s': 1000.0 * len(with_guard) / sum(with_guard), 'step_ms': spread(with_guard),
              'peak_memory_mb': peak}
    if compare:
        without = [p[1] for p in pairs]
        record.update(it_per_s_without_nan_guard=1000.0 * len(without) / sum(without),
                      step_ms_without_nan_guard=spread(without),
                      nan_guard_cost_pct=100.0 * (statistics.median(with_guard) / statistics.median(without) - 1.0))
    return record


def bench_training(name, kwargs, opt_path, chosen, batch, patch, device, warmup, runs):
    """The ``train`` record: the recipe's own model (basicsr's ``build_model``) built for the benched network,
    trained on random batches (:data:`TRAIN_BATCH_DTYPE`) by :func:`measure_training`."""
    from basicsr.models import build_model

    from basicsr_restore.host.registration import register_all
    from basicsr_restore.models.restoration_model import loss_specs
    register_all()
    recipe, path, notes = training_recipe(opt_path, name)
    train = recipe['train']
    if path:
        loss = ' + '.join(spec['type'] for spec in loss_specs(train).values()) + f' on every output ({path})' + ''.join(f'; {note}' for note in notes)
    else:
        loss = 'L1 on every output' + ''.join(f' ({note})' for note in notes)
    where = torch.cuda.device(device) if device.type == 'cuda' else contextlib.nullcontext()
    with tempfile.TemporaryDirectory(prefix='basicsr-restore-bench-') as folder, where:
        opt = training_options(recipe, name, kwargs, chosen, device, folder)
        torch.manual_seed(0)
        with quiet_basicsr_log():
            model = build_model(opt)
        data = random_batch(batch, patch, TRAIN_BATCH_DTYPE, pin=device.type == 'cuda')
        record = {'batch': batch, 'patch': list(patch)}
        record.update(measure_training(model, data, device, warmup, runs))
        grad_clip = getattr(model, 'grad_clip', None)
        del model
    record.update(loss=loss, optimizer=(train.get('optim_g') or {}).get('type'),
                  ema=float(train.get('ema_decay') or 0) > 0, grad_clip=grad_clip, model=opt['model_type'],
                  recipe=path, batch_dtype=str(TRAIN_BATCH_DTYPE).replace('torch.', ''), speed=chosen.describe())
    return record


def output_psnr(runner, chosen, photo, reference, device):
    runner.eval()
    with torch.no_grad(), speed.autocast(chosen, device):
        out = final_output(runner(speed.to_memory_format(photo, chosen))).float()
    return psnr_db(out, reference)


def search_best(net, size, device, args, photo, reference):
    """``(mode, trials)``: the fastest candidate of the device whose output keeps :data:`ACCURACY_DB`, each timed
    with ``--warmup`` runs and 3 timed ones (a candidate that fails is skipped, its error noted)."""
    import copy
    bar, trials = ACCURACY_DB['cuda' if device.type == 'cuda' else 'cpu'], []
    for mode in candidates(device):
        try:
            trial_net, runner, chosen = prepare(copy.deepcopy(net), mode, device)
            psnr = output_psnr(runner, chosen, photo, reference, device)
            latency, _, _ = measure_forward(runner, chosen, size, device, args.warmup, 3)
            trials.append({'mode': mode, 'median_ms': latency['median'], 'psnr_vs_fp32_db': psnr,
                           'meets_bar': psnr >= bar})
        except Exception as exc:  # e.g. a compiler failure: the next candidate
            trials.append({'mode': mode, 'error': f'{type(exc).__name__}: {str(exc).strip()[:200]}'})
        finally:
            if device.type == 'cuda':
                torch.cuda.empty_cache()
    good = [t for t in trials if t.get('meets_bar')]
    if not good:
        raise RuntimeError(f'--mode best: no candidate kept {bar} dB against fp32 ({trials})')
    return min(good, key=lambda t: t['median_ms'])['mode'], trials


def bench_one(name, kwargs, args, mode, device):
    """One record (a dict; ``error`` is set and the figures are None when something failed)."""
    record = {'network': name, 'config': kwargs, 'config_text': checkpoints.config_text(name, kwargs), 'mode': mode,
              'device': device.type, 'device_name': device_name(device), 'torch': torch.__version__,
              'threads': torch.get_num_threads(), 'requested_size': list(args.size), 'input_size': None,
              'params': None, 'macs': None, 'gmacs': None, 'macs_by_op': None, 'macs_method': MACS_METHOD,
              'latency_ms': None, 'timer': Timer(device).method, 'warmup': args.warmup,
              'peak_memory_mb': None, 'memory_method': ('torch.cuda.max_memory_allocated (weights included)'
                                                        if device.type == 'cuda' else 'n/a on CPU (not measured)'),
              'train': None, 'psnr_vs_fp32_db': None, 'best_search': None, 'error': None,
              'date': datetime.datetime.now().isoformat(timespec='seconds')}
    try:
        torch.manual_seed(0)  # the same weights in every mode, so that outputs can be compared
        net = checkpoints.build_arch(name, kwargs)
        size = fit_size(net, args.size)
        record['input_size'] = list(size)
        record['params'] = sum(p.numel() for p in net.parameters())
        record['macs'], record['macs_by_op'], record['macs_method'] = count_macs(name, kwargs, size)
        record['gmacs'] = record['macs'] / 1e9
        photo = real_photo(size).to(device)
        reference = None
        if mode != 'fp32':
            with torch.no_grad():
                reference = final_output(net.to(device).eval()(photo)).float()
        if mode == 'best':
            mode, record['best_search'] = search_best(net, size, device, args, photo, reference)
            record['mode'] = f'best={mode}'
        net, runner, chosen = prepare(net, mode, device)
        if reference is not None:
            record['psnr_vs_fp32_db'] = output_psnr(runner, chosen, photo, reference, device)
        record['latency_ms'], record['peak_memory_mb'], _ = measure_forward(
            runner, chosen, size, device, args.warmup, args.runs)
        if not args.no_train:
            patch = fit_size(net, args.patch or args.size)
            del net, runner  # training builds its own network: this one must not count in its memory
            if device.type == 'cuda':
                torch.cuda.empty_cache()
            record['train'] = bench_training(name, kwargs, args.opt, chosen, args.train_batch, patch, device,
                                             args.warmup, args.runs)
    except Exception as exc:  # one network failing must not hide the others' figures
        if isinstance(exc, torch.OutOfMemoryError):
            message = f'out of memory (lower --size/--patch/--train-batch): {str(exc).splitlines()[0]}'
        else:
            lines = str(exc).strip().splitlines()
            message = f'{type(exc).__name__}: {lines[0] if lines else ""}'
            if 'batch_size_per_gpu' in message:  # the training batch is --train-batch here
                message += ' (bench: --train-batch)'
        record['error'] = message
    finally:
        if device.type == 'cuda':
            torch.cuda.empty_cache()
    return record


# ------------------------------------------------------------------------------------------- reporting
def _ratio(a, b):
    return f'{a / b:.2f}x' if a and b else 'n/a'


def format_table(records):
    """A Markdown table of records."""
    lines = ['| network | config | mode | device | params (M) | GMACs @ size | forward ms: median (min-max) '
             '| peak MB fwd / train | train it/s (batch x patch) | NaN-guard cost | PSNR vs fp32 |',
             '|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|']
    for r in records:
        config = ', '.join(f'{k}={v}' for k, v in r['config'].items()) or 'defaults'
        if r.get('error') and r.get('latency_ms') is None:
            lines.append(f"| {r['network']} | {config} | {r['mode']} | {r['device']} | "
                         f"{_fmt(r['params'] and r['params'] / 1e6, '.3f')} | "
                         f"{_fmt(r['gmacs'], '.1f')} | error: {r['error'][:90]} | | | | |")
            continue
        size = 'x'.join(map(str, r['input_size']))
        lat = r['latency_ms']
        train = r.get('train')
        train_text = (f"{train['it_per_s']:.3g} ({train['batch']}x{'x'.join(map(str, train['patch']))})"
                      if train else ('error: ' + r['error'][:60] if r.get('error') else 'skipped'))
        memory = f"{_fmt(r['peak_memory_mb'], '.0f')} / {_fmt(train and train['peak_memory_mb'], '.0f')}"
        psnr = _fmt(r.get('psnr_vs_fp32_db'), '.1f', '-') + (' dB' if r.get('psnr_vs_fp32_db') else '')
        guard = _fmt(train and train.get('nan_guard_cost_pct'), '+.1f') + (' %' if train and
                                                                          'nan_guard_cost_pct' in train else '')
        lines.append(f"| {r['network']} | {config} | {r['mode']} | {r['device']} | {r['params'] / 1e6:.3f} | "
                     f"{r['gmacs']:.2f} @ {size} | {lat['median']:.1f} ({lat['min']:.1f}-{lat['max']:.1f}) | "
                     f"{memory} | {train_text} | {guard} | {psnr} |")
    return '\n'.join(lines)


def _key(record):
    return record['network'], json.dumps(record['config'], sort_keys=True)


def format_ratios(base, other, base_label, other_label):
    """Markdown table comparing two result sets network by network (matched by network and config)."""
    index = {_key(r): r for r in other}
    lines = [f'**{other_label} vs {base_label}**', '',
             f'| network | forward ms {base_label} | forward ms {other_label} | forward: x faster than {base_label} '
             f'| train it/s {base_label} | train it/s {other_label} | training: x faster than {base_label} '
             f'| peak MB: x of {base_label} |', '|---|---:|---:|---:|---:|---:|---:|---:|']
    in_base = {_key(r) for r in base}
    for r in base:
        o = index.get(_key(r))
        if o is None:
            lines.append(f"| {r['network']} | (not in {other_label}) | | | | | | |")
            continue
        la, lb = (x['latency_ms']['median'] if x.get('latency_ms') else None for x in (r, o))
        ta, tb = (x['train']['it_per_s'] if x.get('train') else None for x in (r, o))
        ma, mb = r.get('peak_memory_mb'), o.get('peak_memory_mb')
        lines.append(f"| {r['network']} | {_fmt(la, '.1f')} | {_fmt(lb, '.1f')} | {_ratio(la, lb)} | "
                     f"{_fmt(ta, '.3g')} | {_fmt(tb, '.3g')} | {_ratio(tb, ta)} | {_ratio(mb, ma)} |")
    for key, o in index.items():  # only in the other set
        if key not in in_base:
            lines.append(f"| {o['network']} | (not in {base_label}) | | | | | | |")
    return '\n'.join(lines)


def mismatches(base, other):
    """Warnings for comparisons of runs on different devices, thread counts or torch versions."""
    warnings = []
    for field in ('device_name', 'threads', 'torch'):
        a = sorted({str(r.get(field)) for r in base})
        b = sorted({str(r.get(field)) for r in other})
        if a != b:
            warnings.append(f"WARNING: the compared runs differ in {field}: {', '.join(a)} vs {', '.join(b)}; "
                            'the ratios mix machines, not only modes.')
    return warnings


def load_results(path):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"bench results '{path}' do not exist.")
    try:
        with open(path, encoding='utf-8') as f:
            data = json.load(f)
    except json.JSONDecodeError as exc:
        raise ValueError(f"'{path}' is not a bench JSON file ({exc}).") from None
    if not isinstance(data, dict) or data.get('format') != FORMAT:
        raise ValueError(f"'{path}' is not a bench results file (no \"format\": \"{FORMAT}\"); write one with "
                         '`basicsr-restore bench --json FILE`.')
    return data['records']


def save_results(path, records, overwrite, data=None):
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"--json '{path}' exists; pass --overwrite or choose another file.")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    content = {'format': FORMAT, 'records': records}
    if data is not None:
        content['data'] = data
    with atomic_path(path) as tmp, open(tmp, 'w', encoding='utf-8') as f:
        json.dump(content, f, indent=1)


# ------------------------------------------------------------------------------------------------ run
def measure(args, mode, device, todo):
    from tqdm import tqdm
    records = []
    bar = tqdm(todo, desc=f'bench {mode}', unit='net', file=sys.stderr, dynamic_ncols=True)
    for name, kwargs in bar:
        bar.set_postfix_str(name)
        records.append(bench_one(name, kwargs, args, mode, device))
    bar.close()
    return records


#: ``--suite`` settings per device type: inference size, training patch and batch, warm-up and timed runs
SUITE = {'cuda': {'size': '720x1280', 'patch': '256', 'train_batch': 8, 'warmup': 3, 'runs': 10},
         'cpu': {'size': '128', 'patch': '64', 'train_batch': 2, 'warmup': 1, 'runs': 3}}
#: configurations measured by ``--suite`` besides every network's defaults
SUITE_EXTRA = [('IRNeXt', {'num_res': 14, 'low_pass': 'local'})]


def suite_recipes(given):
    """``(runnable, skipped)``: ``(option file, training data root, network type)`` of the recipes for the data
    measurement: ``given``, or every shipped training and demo recipe; runnable where the training data exist."""
    files = given or sorted(glob.glob(os.path.join('options', 'train', '*', '*.yml')) +
                            glob.glob(os.path.join('options', 'demo', '*.yml')))
    runnable, skipped = [], []
    for path in files:
        opt = read_option_file(path)
        root = ((opt.get('datasets') or {}).get('train') or {}).get('dataroot_gt')
        network = (opt.get('network_g') or {}).get('type')
        (runnable if root and os.path.exists(root) else skipped).append((path, root, network))
    return runnable, skipped


def run_suite(args):
    """Every network x {fp32, best}, inference and training, and the data pipeline of the recipes: one
    Markdown report and one JSON file."""
    device = pick_device(args.device)
    settings = SUITE['cuda' if device.type == 'cuda' else 'cpu']
    args.size, args.patch = parse_size(settings['size']), parse_size(settings['patch'])
    args.train_batch, args.warmup, args.runs, args.no_train = (settings['train_batch'], settings['warmup'],
                                                              settings['runs'], False)
    from basicsr_restore.core.registry import network_names
    todo = [(name, {}) for name in network_names()] + SUITE_EXTRA
    base, best = measure(args, 'fp32', device, todo), measure(args, 'best', device, todo)
    runnable, skipped = suite_recipes(args.data_opt)
    data = []
    for path, _, network in runnable:
        try:
            record = measure_data(path, args.workers, args.batches, device)
        except Exception as exc:
            record = {'options': path, 'error': f'{type(exc).__name__}: {str(exc).strip()[:200]}'}
        data.append(dict(record, network=network))
    lines = [f"# basicsr-restore bench --suite ({datetime.datetime.now().isoformat(timespec='seconds')})", '',
             f'Device: {device_name(device)}; torch {torch.__version__}; inference {settings["size"]} batch 1, '
             f'training batch {settings["train_batch"]} at {settings["patch"]}x{settings["patch"]} (the training '
             "step of the shipped recipe's model: its losses, gradient clipping, optimizer, NaN guard and EMA).", '',
             f'MACs: {MACS_METHOD}.', '',
             '## fp32 eager', '', format_table(base), '',
             '## best mode (fastest candidate that keeps the accuracy bar)', '', format_table(best), '',
             format_ratios(base, best, 'fp32', 'best'), '']
    lines += ['## data pipeline', '', f'{args.workers} worker(s), {args.batches} batches after a warm-up of 2.', '']
    if data:
        lines += [format_data(data), '']
        rates = {r['network']: r['train']['it_per_s'] * r['train']['batch'] for r in best
                 if r.get('train') and not r['config']}
        for r in data:
            network = r['network']
            if not r.get('error') and network in rates:
                lines.append(f"- {r['options']}: the loader delivers {r['samples_per_s'] / rates[network]:.1f}x the "
                             f"samples/s that {network} trains on in its best mode ({rates[network]:.1f} samples/s).")
        lines.append('')
    for path, root, _ in skipped:
        lines.append(f'- skipped {path}: its training data {root} are not prepared here.')
    report = '\n'.join(lines) + '\n'
    json_path = args.json or 'bench-suite.json'
    if os.path.exists(json_path) and not args.overwrite:
        raise FileExistsError(f"'{json_path}' exists; pass --overwrite or choose another --json file.")
    save_results(json_path, base + best, True, data=data)
    md_path = os.path.splitext(json_path)[0] + '.md'
    with open(md_path, 'w', encoding='utf-8') as f:
        f.write(report)
    print(report)
    print(f'results: {json_path}, {md_path}')
    failed = [r for r in base + best + data if r.get('error')]
    return 1 if failed else 0


def run_data(args):
    if not args.opt:
        raise ValueError('--data needs -opt TRAIN_OPTIONS.yml (its datasets.train is measured).')
    record = measure_data(args.opt, args.workers, args.batches, pick_device(args.device))
    print(format_data([record]))
    if args.json:
        save_results(args.json, [], args.overwrite, data=[record])
        print(f'results: {args.json}')
    return 0


def run(args):
    if args.suite:
        return run_suite(args)
    if args.data:
        return run_data(args)
    args.size = parse_size(args.size)
    args.patch = parse_size(args.patch) if args.patch else None
    for flag in ('warmup', 'runs', 'train_batch'):
        if getattr(args, flag) < (0 if flag == 'warmup' else 1):
            raise ValueError(f"--{flag.replace('_', '-')} must be at least {0 if flag == 'warmup' else 1}.")
    if args.json and os.path.exists(args.json) and not args.overwrite:
        raise FileExistsError(f"--json '{args.json}' exists; pass --overwrite or choose another file.")
    vs_file = args.vs if args.vs and (args.vs.endswith('.json') or os.path.isfile(args.vs)) else None
    vs_mode = parse_mode(args.vs) if args.vs and not vs_file else None
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.load:
        base, base_label = load_results(args.load), os.path.basename(args.load)
        if vs_mode:
            raise ValueError('--vs MODE runs the networks again; with --load, compare with another file: --vs FILE.')
    else:
        device = pick_device(args.device)
        todo = cases(args)
        if not todo:
            raise ValueError('no network to measure: none is registered (see `basicsr-restore doctor`).')
        mode = parse_mode(args.mode)
        base, base_label = measure(args, mode, device, todo), mode
    other, other_label = None, None
    if vs_file:
        other, other_label = load_results(vs_file), os.path.basename(vs_file)
    elif vs_mode:
        other, other_label = measure(args, vs_mode, device, todo), vs_mode

    print(f'MACs: {MACS_METHOD}.')
    print(format_table(base))
    if other is not None:
        if vs_file:
            print(f'\n{other_label}:')
            print(format_table(other))
        else:
            rows = format_table(other).split('\n')[2:]  # the same columns: the rows only
            if rows:
                print('\n'.join(rows))
        print()
        print(format_ratios(base, other, base_label, other_label))
        for line in mismatches(base, other):
            print(line, file=sys.stderr)
    if args.json:
        save_results(args.json, base + (other if vs_mode else []), args.overwrite)
        print(f'results: {args.json}')
    failed = [r for r in base + (other or []) if r.get('error')]
    for r in failed:
        print(f"basicsr-restore bench: {r['network']} ({r['mode']}): {r['error']}", file=sys.stderr)
    return 1 if failed and not args.load else 0
