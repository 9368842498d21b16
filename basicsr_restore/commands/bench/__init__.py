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
  astronaut, resized to cover the input size and cropped at the centre: :func:`basicsr_restore.commands.common.photo`),
  same weights (``psnr_vs_fp32_db``, both outputs clipped to [0, 1]).

Modes (``--mode``, combine with ``+``): the switches of :mod:`basicsr_restore.core.speed`: ``fp32``, ``bf16``/``fp16``
(autocast; fp16 trains with a GradScaler), ``channels_last``, ``compile`` / ``max-autotune`` / ``reduce-overhead``
(``torch.compile`` modes; compilation happens in the warm-up runs), ``checkpoint`` (activation checkpointing in
training), ``cudnn_benchmark``, ``tf32``; and ``best``: each candidate of the device (:func:`candidates`: the preset
that ``speed: best`` runs there, then :data:`CANDIDATES`) is timed briefly and the fastest one whose output keeps
the accuracy bar (:data:`ACCURACY_DB`) is measured in full.
``--json FILE`` writes every figure; ``--vs MODE`` runs a second mode and ``--vs FILE.json`` loads earlier results,
and the ratios are printed.

This module reads the command line; the measurements are in :mod:`.modes` (mode names), :mod:`.forward` (MACs,
latency, memory), :mod:`.training` (the training step), :mod:`.record` (one network in one mode, ``--mode best``),
:mod:`.report` (tables, results files), :mod:`.suite` (``--suite``) and :mod:`.data` (``--data``).
"""
import os
import sys

import torch

from basicsr_restore.commands import args as args_
from basicsr_restore.commands.bench.data import format_data, measure_data
from basicsr_restore.commands.bench.forward import MACS_METHOD, count_macs, pick_device
from basicsr_restore.commands.bench.modes import MODE_FLAGS, candidates, parse_mode, speed_mode
from basicsr_restore.commands.bench.record import measure
from basicsr_restore.commands.bench.report import format_ratios, format_table, load_results, mismatches, save_results
from basicsr_restore.commands.bench.suite import run_suite
from basicsr_restore.commands.bench.training import (
    RECIPES,
    TRAIN_BATCH_DTYPE,
    bench_training,
    measure_training,
    random_batch,
    training_options,
    training_recipe,
)
from basicsr_restore.commands.common import parse_size
from basicsr_restore.core import checkpoints
from basicsr_restore.core.registry import network_names

#: what other modules and the tests use of the package besides ``run``: the mode flags (``cli.BENCH_MODES``), the
#: shipped recipes, the MAC counter, the candidates of ``--mode best``, the training measurement and the tables
__all__ = ['MODE_FLAGS', 'RECIPES', 'TRAIN_BATCH_DTYPE', 'bench_training', 'candidates', 'cases', 'count_macs',
           'format_ratios', 'format_table', 'measure_training', 'random_batch', 'run', 'save_results', 'speed_mode',
           'training_options', 'training_recipe']


def cases(args):
    """``[(name, kwargs)]`` to measure."""
    if args.opt or args.arch:
        name, kwargs, _ = args_.network_spec(args.opt, args.arch, args.arch_args)
        with torch.device('meta'):  # bad names or arguments: one clear error before anything runs
            checkpoints.build_arch(name, kwargs)
        return [(name, kwargs)]
    if args.arch_args:
        raise ValueError('--arch-args needs --arch NAME (or -opt).')
    return [(name, {}) for name in network_names()]


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
    args.size = parse_size(args.size, '--size')
    args.patch = parse_size(args.patch, '--patch') if args.patch else None
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
