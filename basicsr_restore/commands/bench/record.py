"""``bench``'s record of one network in one mode: parameters, MACs, forward latency and memory, the accuracy of the
mode against fp32 eager on a real photo, ``--mode best``'s search, training; and the loop over the networks."""
import copy
import datetime
import sys

import torch

from basicsr_restore.commands import common
from basicsr_restore.commands.bench.forward import (
    MACS_METHOD,
    Timer,
    count_macs,
    device_name,
    fit_size,
    measure_forward,
    prepare,
)
from basicsr_restore.commands.bench.modes import ACCURACY_DB, candidates
from basicsr_restore.commands.bench.training import bench_training
from basicsr_restore.core import checkpoints, speed
from basicsr_restore.core.inference import final_output


def output_psnr(runner, chosen, photo, reference, device):
    runner.eval()
    with torch.no_grad(), speed.autocast(chosen, device):
        out = final_output(runner(speed.to_memory_format(photo, chosen))).float()
    return common.psnr(out, reference, clamp=True)


def search_best(net, size, device, args, photo, reference):
    """``(mode, trials)``: the fastest candidate of the device whose output keeps :data:`ACCURACY_DB`, each timed
    with ``--warmup`` runs and 3 timed ones (a candidate that fails is skipped, its error noted)."""
    bar, trials = ACCURACY_DB['cuda' if device.type == 'cuda' else 'cpu'], []
    for mode in candidates(device):
        try:
            trial_net, runner, chosen = prepare(copy.deepcopy(net), mode, device)
            db = output_psnr(runner, chosen, photo, reference, device)
            latency, _, _ = measure_forward(runner, chosen, size, device, args.warmup, 3)
            trials.append({'mode': mode, 'median_ms': latency['median'], 'psnr_vs_fp32_db': db,
                           'meets_bar': db >= bar})
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
        photo = common.photo(size).to(device)
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


def measure(args, mode, device, todo):
    from tqdm import tqdm
    records = []
    bar = tqdm(todo, desc=f'bench {mode}', unit='net', file=sys.stderr, dynamic_ncols=True)
    for name, kwargs in bar:
        bar.set_postfix_str(name)
        records.append(bench_one(name, kwargs, args, mode, device))
    bar.close()
    return records
