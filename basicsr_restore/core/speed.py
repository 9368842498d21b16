"""Speed switches: one ``speed:`` block of the option file, honoured wherever a network runs.

Training, validation, ``basicsr.test``, ``basicsr-restore infer`` (``--speed best`` or the same keys as flags)
and ``bench`` (``--mode``) read the same keys:

=================  ================================================  =============================================
key                values                                            effect
=================  ================================================  =============================================
``amp``            ``false`` (default), ``bf16``, ``fp16``            autocast; fp16 trains with a GradScaler
``channels_last``  ``false`` (default), ``true``                      NHWC weights and inputs
``compile``        ``false`` (default), ``default``,                  ``torch.compile`` mode (training step and
                   ``max-autotune``, ``reduce-overhead``              restoring are compiled separately)
``cudnn_benchmark`` ``false`` (default), ``true``                     ``torch.backends.cudnn.benchmark`` (GPU)
``tf32``           ``false`` (default), ``true``                      TF32 matmuls and convolutions (GPU)
``checkpoint``     ``false`` (default), ``true``, or a list of        activation checkpointing of the network's
                   module names (``[body.0, body.1]``)                blocks (less memory, one more forward)
``dynamic``        ``true`` (default), ``false``                      compiled restoring with symbolic image sizes
                                                                      (one graph for every size; ``false``:
                                                                      specialised per size, for one fixed size)
=================  ================================================  =============================================

``best`` (``speed: best``, ``--speed best``, the API's ``restore(speed='best')``) is the device's preset, chosen by
one rule, :func:`preset`, which every caller reaches through :func:`resolve` and which logs its choice and reason
once per process: GPU ``bf16+channels_last+compile+cudnn_benchmark+tf32``; CPU ``bf16+channels_last`` where the
CPU has native bf16 instructions (AMX or AVX512-BF16), ``channels_last`` elsewhere.

What stays exact whatever the switches: checkpoints are plain float32 state dicts with the official keys
(the compiled and checkpointed modules share the original's parameters, so nothing is renamed); BatchNorm
statistics and the EMA stay float32 (autocast changes the dtype of activations, never of weights or buffers);
FFTs (``FFTLoss``) run in float32 inside autocast; activation checkpointing does not update BatchNorm
statistics twice (the recomputation puts them back).

A switch the machine cannot honour (bf16 on a GPU without it, ``reduce-overhead`` on the CPU, ``compile`` without
a C++ compiler, ``cudnn_benchmark``/``tf32`` on the CPU) is logged once and dropped, never a crash; an unknown key
or value is an :class:`~basicsr_restore.core.errors.OptionError` naming the option and the valid values.
"""
import contextlib
import os
import shutil
from dataclasses import dataclass, fields, replace

import torch

from basicsr_restore.archs.card import card_of
from basicsr_restore.core.errors import OptionError
from basicsr_restore.core.option_rules import Bool, Choice, Either, Items, Text

AMP = {'bf16': torch.bfloat16, 'fp16': torch.float16}
COMPILE_MODES = ('default', 'max-autotune', 'reduce-overhead')


@dataclass(frozen=True)
class Speed:
    amp: object = False
    channels_last: bool = False
    compile: object = False
    cudnn_benchmark: bool = False
    tf32: bool = False
    checkpoint: object = False
    dynamic: bool = True

    @property
    def dtype(self):
        return AMP.get(self.amp)

    @property
    def memory_format(self):
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def describe(self):
        """``'bf16+channels_last+compile'`` style name (``fp32`` when nothing is on)."""
        parts = [self.amp] if self.amp else []
        parts += ['channels_last'] if self.channels_last else []
        parts += (['compile' if self.compile == 'default' else f'compile:{self.compile}'] if self.compile else [])
        parts += ['cudnn_benchmark'] if self.cudnn_benchmark else []
        parts += ['tf32'] if self.tf32 else []
        parts += ['checkpoint'] if self.checkpoint else []
        return '+'.join(parts) or 'fp32'

    def as_options(self):
        return {f.name: getattr(self, f.name) for f in fields(self)}


KEYS = tuple(f.name for f in fields(Speed))
#: what each switch of a ``speed:`` block takes (``false``, ``off`` and ``~`` all mean off)
RULES = {'amp': Choice(*AMP, False, 'fp32', 'false', 'off', None),
         'channels_last': Bool(), 'compile': Choice(False, True, *COMPILE_MODES, 'false', 'off', None),
         'cudnn_benchmark': Bool(), 'tf32': Bool(),
         'checkpoint': Either(Bool(), Items(Text(), at_least=1), means='true, false or a list of module names'),
         'dynamic': Bool()}
assert set(RULES) == set(KEYS)

#: the switches ``speed: best`` / ``--speed best`` / ``restore(speed='best')`` can pick, for runs that do not measure
#: (``bench --mode best`` measures its candidates instead); :func:`preset` is the rule that picks one. GPU: the
#: standard switches, bf16 keeping >= 50 dB against fp32 on a real photo. CPU: bf16 + channels_last where the CPU has
#: native bf16 instructions (AMX or AVX512-BF16), channels_last elsewhere: without them oneDNN runs bf16 on a slow
#: fallback path, and channels_last is what ``bench --suite`` found fastest on an AVX2 CPU (see docs/speed.md).
BEST = {
    'cuda': Speed(amp='bf16', channels_last=True, compile='default', cudnn_benchmark=True, tf32=True),
    'cpu-bf16': Speed(amp='bf16', channels_last=True, compile=False),
    'cpu': Speed(amp=False, channels_last=True, compile=False),
}
#: the ``best`` notes already logged in this process (each distinct one is logged once)
_SAID = set()


def preset(device, log=None):
    """The ``best`` switches of ``device``: the one rule for training, validation, ``basicsr.test``, ``infer``, the
    API, ``serve`` and ``bench``'s candidates. ``log`` (a callable taking one line, e.g. a logger's ``info`` or
    ``print``) gets the choice and its reason, once per process; ``None`` logs nothing."""
    device = torch.device(device)
    if device.type == 'cuda':
        key, reason = 'cuda', 'the GPU preset: bf16 keeps >= 50 dB against fp32 on a real photo'
    elif native_cpu_bf16():
        isa = cpu_bf16_instructions() or 'AMX or AVX512-BF16'
        key, reason = 'cpu-bf16', f'this CPU has native bf16 instructions ({isa})'
    else:
        key, reason = 'cpu', ('this CPU has no native bf16 instructions (AMX or AVX512-BF16), so bf16 would run on '
                              "oneDNN's slow fallback path")
    chosen = BEST[key]
    note = f'speed best on the {device.type}: {chosen.describe()} ({reason}).'
    if log is not None and note not in _SAID:
        _SAID.add(note)
        log(note)
    return chosen


def parse(block, where='speed'):
    """A :class:`Speed` from an option block (a dict, ``None``, or the string ``best``, resolved per device by
    :func:`resolve`). Unknown keys and values are errors that name the option and the valid values."""
    if block is None or block is False:
        return Speed()
    if block == 'best':
        return 'best'
    if isinstance(block, Speed):
        return block
    if not isinstance(block, dict):
        raise OptionError(f"{where}: expected a mapping of {', '.join(KEYS)} (or the word best), got {block!r}.")
    unknown = sorted(set(block) - set(KEYS))
    if unknown:
        raise OptionError(f"{where}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(KEYS)}.")
    for key, value in block.items():
        problem = RULES[key].problem(value)
        if problem:
            raise OptionError(f'{where}.{key}: {problem}.')
    values = {key: block.get(key, field.default) for key, field in zip(KEYS, fields(Speed))}
    values['amp'] = values['amp'] if values['amp'] in AMP else False
    mode = values['compile']
    values['compile'] = 'default' if mode is True else mode if mode in COMPILE_MODES else False
    return Speed(**values)


def has_cxx_compiler():
    """Whether inductor can build its CPU kernels (``$CXX``, g++, c++ or clang++ on the PATH)."""
    names = [os.environ['CXX']] if os.environ.get('CXX') else []
    return any(shutil.which(name) for name in names + ['g++', 'c++', 'clang++'])


def _cpuinfo_flags():
    """The CPU flags of ``/proc/cpuinfo`` (Linux), or None where there is no such file."""
    try:
        with open('/proc/cpuinfo', encoding='utf-8', errors='replace') as f:
            for line in f:
                if line.startswith('flags'):
                    return set(line.split(':', 1)[1].split())
    except OSError:
        return None
    return set()


def cpu_bf16_instructions():
    """The native bf16 instructions of this CPU: ``'AMX'``, ``'AVX512-BF16'`` (x86), ``'bf16'`` (Arm), or ``''``.

    On x86 this is the ISA itself (torch's cpuinfo checks, else the flags ``amx_bf16``/``avx512_bf16`` of
    ``/proc/cpuinfo``), not oneDNN's ``_is_mkldnn_bf16_supported``: that one is true on every AVX-512 CPU (Skylake,
    Cascade Lake, Ice Lake), where oneDNN only emulates bf16. Elsewhere (Arm) oneDNN's check, which looks for the
    Arm bf16 extension."""
    import platform
    machine = platform.machine().lower()
    if machine in ('x86_64', 'amd64', 'i386', 'i686', 'x86'):
        cpu = torch.cpu
        amx, avx512 = getattr(cpu, '_is_amx_tile_supported', None), getattr(cpu, '_is_avx512_bf16_supported', None)
        if amx is None or avx512 is None:
            flags = _cpuinfo_flags() or set()
            return 'AMX' if 'amx_bf16' in flags else 'AVX512-BF16' if 'avx512_bf16' in flags else ''
        return 'AMX' if amx() else 'AVX512-BF16' if avx512() else ''
    check = getattr(torch.ops.mkldnn, '_is_mkldnn_bf16_supported', None)
    return 'bf16' if check is not None and check() else ''


def native_cpu_bf16():
    """Whether this CPU has native bf16 instructions (AMX or AVX512-BF16 on x86; see
    :func:`cpu_bf16_instructions`), where bf16 autocast is fast."""
    return bool(cpu_bf16_instructions())


def resolve(speed, device, log=print, where='speed'):
    """``speed`` (a :class:`Speed` or ``'best'``) as this device can honour it; every switch dropped is logged, and
    ``'best'`` is :func:`preset`'s choice for the device (its reason logged once per process)."""
    device = torch.device(device)
    if speed == 'best':
        speed = preset(device, log)
    changes = {}
    if device.type == 'cuda':
        if speed.amp == 'bf16' and not torch.cuda.is_bf16_supported():
            log(f'{where}.amp: bf16 is not supported by {torch.cuda.get_device_name(device)}; using fp32 (try fp16).')
            changes['amp'] = False
    else:
        for key in ('cudnn_benchmark', 'tf32'):
            if getattr(speed, key):
                log(f'{where}.{key}: has no effect on the {device.type}; ignored.')
                changes[key] = False
        if speed.amp == 'bf16' and not native_cpu_bf16():
            log(f'{where}.amp: this CPU has no native bf16 instructions (AVX512-BF16/AMX); bf16 runs on a slow '
                'fallback path, often many times slower than fp32.')
        if speed.compile == 'reduce-overhead':
            log(f'{where}.compile: reduce-overhead needs CUDA graphs; using compile mode default on the {device.type}.')
            changes['compile'] = 'default'
        if speed.compile and not has_cxx_compiler():
            log(f'{where}.compile: no C++ compiler found (torch.compile on the CPU needs g++ or clang++); running '
                'eager.')
            changes['compile'] = False
    return replace(speed, **changes)


def apply_backend_flags(speed):
    """Process-wide switches (cuDNN autotuning, TF32); only turned on, never off, by this call."""
    if speed.cudnn_benchmark:
        torch.backends.cudnn.benchmark = True
    if speed.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def autocast(speed, device):
    """The autocast context of ``speed`` on ``device`` (a no-op context in fp32)."""
    device = torch.device(device)
    if not speed.amp:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=speed.dtype)


def grad_scaler(speed, device):
    """A GradScaler for fp16 training, else None (bf16 has float32's range and needs none)."""
    if speed.amp != 'fp16':
        return None
    return torch.amp.GradScaler(torch.device(device).type)


def compiled(net, speed, training, backend='inductor'):
    """``torch.compile(net)`` in ``speed.compile``'s mode, or ``net`` itself. The compiled module shares ``net``'s
    parameters and buffers; save ``net``, never the compiled one. Restoring (``training=False``) follows
    ``speed.dynamic`` so that many image sizes do not recompile per image (on the CPU, maps smaller than about
    20k values pick another convolution backend, so tiny images may add a graph). ``backend``: for tests (a counting
    backend); the product always uses inductor."""
    if not speed.compile:
        return net
    dynamic = None if training else speed.dynamic
    if dynamic:
        # sizes that happen to be equal (a square image) would otherwise be traced as one symbol
        import torch.fx.experimental._config as fx_config
        fx_config.use_duck_shape = False
    mode = None if speed.compile == 'default' else speed.compile
    return torch.compile(net, mode=mode, dynamic=dynamic, backend=backend)


def to_memory_format(x, speed):
    return x.contiguous(memory_format=speed.memory_format) if speed.channels_last and x.dim() == 4 else x


# ------------------------------------------------------------------------------ activation checkpointing
class _Checkpointed:
    """Mixed into a block's class by :func:`enable_checkpointing`: in training with gradients, the block's
    activations are not kept but recomputed in the backward pass (``torch.utils.checkpoint``, non-reentrant).
    The recomputation leaves BatchNorm statistics (and their counters) as the first pass left them."""

    def forward(self, *args, **kwargs):
        plain = super().forward
        if not (self.training and torch.is_grad_enabled()):
            return plain(*args, **kwargs)
        stats = [b for m in self.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                 for b in m.buffers()]
        passes = []

        def run(*a, **k):
            if not passes or not stats:
                passes.append(1)
                return plain(*a, **k)
            kept = [b.detach().clone() for b in stats]
            try:
                return plain(*a, **k)
            finally:
                with torch.no_grad():
                    torch._foreach_copy_(stats, kept)

        return torch.utils.checkpoint.checkpoint(run, *args, use_reentrant=False, **kwargs)


def checkpoint_blocks(net):
    """Block class names that ``checkpoint: true`` recomputes: the network card's ``checkpoint_blocks``."""
    card = card_of(net)
    return card.checkpoint_blocks if card else ()


def checkpoint_targets(net, names):
    """``[(name, module)]`` to checkpoint: ``True`` = every block the network's card names in
    ``checkpoint_blocks`` (class names); a list = those module names (``net.named_modules()``)."""
    modules = dict(net.named_modules())
    if names is True:
        kinds = checkpoint_blocks(net)
        if not kinds:
            raise OptionError(f'speed.checkpoint: {type(net).__name__} names no blocks to checkpoint; give a list of '
                              'module names instead (e.g. [body.0]).')
        found = [(n, m) for n, m in modules.items() if type(m).__name__ in kinds]
        # the outermost blocks only (a checkpointed block recomputes its inner ones anyway)
        return [(n, m) for n, m in found if not any(n.startswith(o + '.') for o, _ in found if o != n)]
    missing = [n for n in names if n not in modules or not n]
    if missing:
        examples = [n for n, m in modules.items() if type(m).__name__ in checkpoint_blocks(net)][:6]
        raise OptionError(f"speed.checkpoint: {type(net).__name__} has no module named {', '.join(missing)}"
                          f"{'; e.g. ' + ', '.join(examples) if examples else ''} (names as in the state dict keys).")
    return [(n, modules[n]) for n in names]


def enable_checkpointing(net, names):
    """Checkpoint the blocks of ``net`` (see :func:`checkpoint_targets`); returns their names. Only the classes of
    those modules change: parameters, buffers and state-dict keys stay as they are."""
    if not names:
        return []
    targets = checkpoint_targets(net, names)
    for _, module in targets:
        cls = type(module)
        if not issubclass(cls, _Checkpointed):
            if cls not in _CHECKPOINTED:
                _CHECKPOINTED[cls] = type(cls.__name__, (_Checkpointed, cls), {'__module__': cls.__module__,
                                                                                '__qualname__': cls.__qualname__})
            module.__class__ = _CHECKPOINTED[cls]
    return [n for n, _ in targets]


_CHECKPOINTED = {}
