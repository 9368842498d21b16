"""``bench``'s forward measurements: MACs (on meta tensors), the timer, latency and peak memory of the forward,
the network prepared in a mode, and the device's name."""
import platform
import statistics
import time

import torch

from basicsr_restore.archs.card import size_rule
from basicsr_restore.commands.bench.modes import mode_speed
from basicsr_restore.core import checkpoints, inference, speed

MACS_METHOD = ('torch.utils.flop_counter.FlopCounterMode on meta tensors, batch 1, FLOPs/2; counts convolution '
               '(incl. transposed), mm/addmm/bmm/baddbmm and attention; not element-wise ops, normalisation, '
               'pooling, cumulative sums (IRNeXt\'s local box mean), interpolation or FFT')


def fit_size(net, size):
    """``size`` rounded up to the network's multiple and at least its minimum size (its card's size rule)."""
    return tuple(size_rule(net).fit(s) for s in size)


def pick_device(name):
    return torch.device(inference.pick_device(name))


def device_name(device):
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    return f'{platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)'


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
