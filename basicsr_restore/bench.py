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
* **training**: iterations per second of forward + L1 loss on the last output + backward + Adam step, at
  ``--train-batch`` random patches of ``--patch`` x ``--patch`` pixels, with RestorationModel's NaN guard (as
  training runs); the same steps without it are timed in between, and the table shows the guard's cost
  (median step time with / without, in %).

Modes (``--mode``, combine with ``+``): ``fp32``, ``bf16`` (autocast), ``channels_last``, ``compile``
(``torch.compile``; its compilation happens in the warm-up runs). ``--json FILE`` writes every figure;
``--vs MODE`` runs a second mode and ``--vs FILE.json`` loads earlier results, and the ratios are printed.
"""
import datetime
import json
import math
import os
import platform
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from basicsr_restore import checkpoints

MODE_FLAGS = ('fp32', 'bf16', 'channels_last', 'compile')
FORMAT = 'basicsr-restore-bench/1'
MACS_METHOD = ('torch.utils.flop_counter.FlopCounterMode on meta tensors, batch 1, FLOPs/2; counts convolution '
               '(incl. transposed), mm/addmm/bmm/baddbmm and attention; not element-wise ops, normalisation, '
               'pooling, cumulative sums (IRNeXt\'s local box mean), interpolation or FFT')


# ----------------------------------------------------------------------------------------------- setup
def parse_mode(text):
    """``'bf16+channels_last'`` -> the canonical mode name; ``fp32`` alone means no flag."""
    flags = [f.strip() for f in str(text).split('+') if f.strip()]
    bad = [f for f in flags if f not in MODE_FLAGS]
    if bad or not flags:
        raise ValueError(f'--mode {text!r}: use one of {", ".join(MODE_FLAGS)}, or several joined by + '
                         '(e.g. bf16+channels_last).')
    flags = [f for f in MODE_FLAGS if f in flags and f != 'fp32']
    return '+'.join(flags) or 'fp32'


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
    """``size`` rounded up to the network's ``pad_multiple`` and at least its ``min_size``."""
    multiple = getattr(net, 'pad_multiple', 1) or 1
    low = getattr(net, 'min_size', 0) or 0
    return tuple(max(int(math.ceil(s / multiple)) * multiple, low) for s in size)


def cases(args):
    """``[(name, kwargs)]`` to measure."""
    if args.opt or args.arch:
        name, kwargs, _ = checkpoints.network_spec(args.opt, args.arch, args.arch_args)
        with torch.device('meta'):  # bad names or arguments: one clear error before anything runs
            checkpoints.build_arch(name, kwargs)
        return [(name, kwargs)]
    if args.arch_args:
        raise ValueError('--arch-args needs --arch NAME (or -opt).')
    import basicsr_restore  # noqa: F401
    from basicsr_restore.register import OURS
    return [(name, {}) for name in OURS['arch']]


def pick_device(name):
    from basicsr_restore.infer import pick_device as pick
    return torch.device(pick(name))


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
    """The network on ``device`` in ``mode``: (module to call, autocast context maker, memory format)."""
    memory_format = torch.channels_last if 'channels_last' in mode else torch.contiguous_format
    net = net.to(device=device, memory_format=memory_format)
    runner = torch.compile(net) if 'compile' in mode else net

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled='bf16' in mode)
    return net, runner, autocast, memory_format


def last_output(out):
    return out[-1] if isinstance(out, (list, tuple)) else out


def peak_memory(device, fn):
    """(result, peak MB) of ``fn``: CUDA only; ``None`` on the CPU."""
    if device.type != 'cuda':
        return fn(), None
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    result = fn()
    torch.cuda.synchronize(device)
    return result, torch.cuda.max_memory_allocated(device) / 2**20


def measure_forward(runner, autocast, memory_format, size, device, warmup, runs):
    timer = Timer(device)
    x = torch.rand(1, 3, *size, device=device).contiguous(memory_format=memory_format)
    runner.eval()

    def once():
        with torch.no_grad(), autocast():
            runner(x)

    for _ in range(warmup):
        once()
    times, peak = peak_memory(device, lambda: [timer(once) for _ in range(runs)])
    return spread(times), peak, timer.method


def measure_training(net, runner, autocast, memory_format, batch, patch, device, warmup, runs):
    """Training steps as RestorationModel takes them (with its NaN guard: buffer snapshot, finite check of the
    loss and gradient norm, see ``models/step_guard.py``), and the same steps without the guard, interleaved
    so that both see the same machine; ``nan_guard_cost_pct`` is what the guard costs."""
    from basicsr_restore.models.step_guard import StepGuard
    timer = Timer(device)
    runner.train()
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=1e-4)
    guard = StepGuard(net)
    x = torch.rand(batch, 3, *patch, device=device).contiguous(memory_format=memory_format)
    target = torch.rand(batch, 3, *patch, device=device).contiguous(memory_format=memory_format)

    def step(guarded):
        if guarded:
            guard.snapshot()
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            loss = F.l1_loss(last_output(runner(x)).float(), target)
        loss.backward()
        if not guarded or guard.verdict({'l1': loss}, guard.grad_norm(params)).ok:
            optimizer.step()
        else:
            guard.restore()

    for _ in range(warmup):
        step(True)
        step(False)

    def both():
        return [(timer(lambda: step(True)), timer(lambda: step(False))) for _ in range(runs)]

    pairs, peak = peak_memory(device, both)
    guarded, plain = [p[0] for p in pairs], [p[1] for p in pairs]
    rate, plain_rate = 1000.0 * len(guarded) / sum(guarded), 1000.0 * len(plain) / sum(plain)
    return {'batch': batch, 'patch': list(patch), 'it_per_s': rate, 'step_ms': spread(guarded),
            'it_per_s_without_nan_guard': plain_rate, 'step_ms_without_nan_guard': spread(plain),
            'nan_guard_cost_pct': 100.0 * (statistics.median(guarded) / statistics.median(plain) - 1.0),
            'peak_memory_mb': peak, 'loss': 'L1 on the last output', 'optimizer': 'Adam'}


def bench_one(name, kwargs, args, mode, device):
    """One record (a dict; ``error`` is set and the figures are None when something failed)."""
    record = {'network': name, 'config': kwargs, 'config_text': checkpoints.config_text(name, kwargs), 'mode': mode,
              'device': device.type, 'device_name': device_name(device), 'torch': torch.__version__,
              'threads': torch.get_num_threads(), 'requested_size': list(args.size), 'input_size': None,
              'params': None, 'macs': None, 'gmacs': None, 'macs_by_op': None, 'macs_method': MACS_METHOD,
              'latency_ms': None, 'timer': Timer(device).method, 'warmup': args.warmup,
              'peak_memory_mb': None, 'memory_method': ('torch.cuda.max_memory_allocated (weights included)'
                                                        if device.type == 'cuda' else 'n/a on CPU (not measured)'),
              'train': None, 'error': None,
              'date': datetime.datetime.now().isoformat(timespec='seconds')}
    try:
        net = checkpoints.build_arch(name, kwargs)
        size = fit_size(net, args.size)
        record['input_size'] = list(size)
        record['params'] = sum(p.numel() for p in net.parameters())
        record['macs'], record['macs_by_op'], record['macs_method'] = count_macs(name, kwargs, size)
        record['gmacs'] = record['macs'] / 1e9
        net, runner, autocast, memory_format = prepare(net, mode, device)
        record['latency_ms'], record['peak_memory_mb'], _ = measure_forward(
            runner, autocast, memory_format, size, device, args.warmup, args.runs)
        if not args.no_train:
            patch = fit_size(net, args.patch or args.size)
            record['train'] = measure_training(net, runner, autocast, memory_format, args.train_batch, patch,
                                               device, args.warmup, args.runs)
    except Exception as exc:  # one network failing must not hide the others' figures
        if isinstance(exc, torch.OutOfMemoryError):
            message = f'out of memory (lower --size/--patch/--train-batch): {str(exc).splitlines()[0]}'
        else:
            lines = str(exc).strip().splitlines()
            message = f'{type(exc).__name__}: {lines[0] if lines else ""}'
        record['error'] = message
    finally:
        if device.type == 'cuda':
            torch.cuda.empty_cache()
    return record


# ------------------------------------------------------------------------------------------- reporting
def _fmt(value, spec, none='n/a'):
    return none if value is None else format(value, spec)


def _ratio(a, b):
    return f'{a / b:.2f}x' if a and b else 'n/a'


def format_table(records):
    """A Markdown table of records."""
    lines = ['| network | config | mode | device | params (M) | GMACs @ size | forward ms: median (min-max) '
             '| peak MB fwd / train | train it/s (batch x patch) | NaN-guard cost |',
             '|---|---|---|---|---:|---:|---:|---:|---:|---:|']
    for r in records:
        config = ', '.join(f'{k}={v}' for k, v in r['config'].items()) or 'defaults'
        if r.get('error') and r.get('latency_ms') is None:
            lines.append(f"| {r['network']} | {config} | {r['mode']} | {r['device']} | "
                         f"{_fmt(r['params'] and r['params'] / 1e6, '.3f')} | "
                         f"{_fmt(r['gmacs'], '.1f')} | error: {r['error'][:90]} | | | |")
            continue
        size = 'x'.join(map(str, r['input_size']))
        lat = r['latency_ms']
        train = r.get('train')
        train_text = (f"{train['it_per_s']:.3g} ({train['batch']}x{'x'.join(map(str, train['patch']))})"
                      if train else ('error: ' + r['error'][:60] if r.get('error') else 'skipped'))
        memory = f"{_fmt(r['peak_memory_mb'], '.0f')} / {_fmt(train and train['peak_memory_mb'], '.0f')}"
        guard = _fmt(train and train.get('nan_guard_cost_pct'), '+.1f') + (' %' if train and
                                                                          'nan_guard_cost_pct' in train else '')
        lines.append(f"| {r['network']} | {config} | {r['mode']} | {r['device']} | {r['params'] / 1e6:.3f} | "
                     f"{r['gmacs']:.2f} @ {size} | {lat['median']:.1f} ({lat['min']:.1f}-{lat['max']:.1f}) | "
                     f"{memory} | {train_text} | {guard} |")
    return '\n'.join(lines)


def _key(record):
    return record['network'], json.dumps(record['config'], sort_keys=True)


def format_ratios(base, other, base_label, other_label):
    """Markdown table comparing two result sets network by network (matched by network and config)."""
    index = {_key(r): r for r in other}
    lines = [f'**{other_label} vs {base_label}**', '',
             f'| network | forward ms {base_label} | forward ms {other_label} | speed-up | train it/s {base_label} '
             f'| train it/s {other_label} | ratio | peak MB ratio |', '|---|---:|---:|---:|---:|---:|---:|---:|']
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
    return '\n'.join(lines)


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


def save_results(path, records, overwrite):
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"--json '{path}' exists; pass --overwrite or choose another file.")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f'{path}.partial{os.getpid()}'
    with open(tmp, 'w', encoding='utf-8') as f:
        json.dump({'format': FORMAT, 'records': records}, f, indent=1)
    os.replace(tmp, path)


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


def run(args):
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
            print(format_table(other).split('\n', 2)[2])
        print()
        print(format_ratios(base, other, base_label, other_label))
    if args.json:
        save_results(args.json, base + (other if vs_mode else []), args.overwrite)
        print(f'results: {args.json}')
    failed = [r for r in base + (other or []) if r.get('error')]
    for r in failed:
        print(f"basicsr-restore bench: {r['network']} ({r['mode']}): {r['error']}", file=sys.stderr)
    return 1 if failed and not args.load else 0


def add_arguments(p):
    """The ``bench`` options (used by ``basicsr_restore.cli``)."""
    p.add_argument('--arch', help='one registered network (default: every network of this package)')
    p.add_argument('-opt', help="an option file: measure its network_g")
    p.add_argument('--size', default='256', help='forward input size N or HxW (default 256; rounded up to the '
                                                 "network's multiple)")
    p.add_argument('--patch', help='training patch N or HxW (default: --size)')
    p.add_argument('--train-batch', type=int, default=2, help='training batch (default 2: BatchNorm needs 2)')
    p.add_argument('--no-train', action='store_true', help='skip the training measurement')
    p.add_argument('--warmup', type=int, default=3, help='untimed runs first (default 3; compile happens here)')
    p.add_argument('--runs', type=int, default=10, help='timed runs (default 10)')
    p.add_argument('--mode', default='fp32', help='fp32, bf16, channels_last, compile, or a combination with +')
    p.add_argument('--vs', metavar='MODE_OR_FILE', help='a second mode to run, or a results JSON to compare with')
    p.add_argument('--load', metavar='FILE', help='read results from FILE instead of running (with --vs FILE2)')
    p.add_argument('--device', default='auto', help='cpu, cuda or cuda:N (default: cuda when available)')
    p.add_argument('--threads', type=int, help='CPU threads (torch.set_num_threads)')
    p.add_argument('--json', metavar='FILE', help='write every figure to FILE')
    p.add_argument('--overwrite', action='store_true', help='replace an existing --json FILE')
    p.add_argument('--arch-args', nargs='+', metavar='K=V', default=[],
                   help='constructor arguments of --arch: key=value ... or one JSON object (put this option last)')
