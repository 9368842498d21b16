"""``bench --mode``: the mode names (the switches of :mod:`basicsr_restore.core.speed` joined by ``+``), their
:class:`~basicsr_restore.core.speed.Speed`, and what ``--mode best`` tries on a device."""
import torch

from basicsr_restore.core import speed

MODE_FLAGS = ('fp32', 'bf16', 'fp16', 'channels_last', 'compile', 'max-autotune', 'reduce-overhead', 'checkpoint',
              'cudnn_benchmark', 'tf32')
COMPILE_FLAGS = {'compile': 'default', 'max-autotune': 'max-autotune', 'reduce-overhead': 'reduce-overhead'}
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
