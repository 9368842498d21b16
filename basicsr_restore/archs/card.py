"""The network card: what callers need to know about a network, as data, in one place.

Every ``*_arch.py`` gives its network class a ``card`` (a :class:`NetworkCard`). The model, ``infer``,
``bench``, ``convert``, the tests and the docs read it; nobody restates it:

* ``size`` -- the size rule: a function of the constructor arguments giving a :class:`SizeRule` (height and
  width must be multiples of ``multiple`` and at least ``min_size``, and ``why``);
* ``presets`` -- the official configurations by task, with their parameter counts and the manifest file of
  their checkpoint layout (``manifests/<file>`` beside the network's module);
* ``checkpoint_key`` -- the key of the state dict in the authors' released files (None: no release);
* ``outputs`` -- what ``forward`` returns, in order; a network with several returns a list whose last entry
  is the restored image;
* ``tiny`` -- a narrow configuration for tests and demos (seconds on a CPU);
* ``checkpoint_blocks`` -- blocks that ``speed.checkpoint: true`` recomputes in the backward pass;
* ``batch_rule`` -- set when a BatchNorm sees one value per sample, so that training needs batches of 2;
* ``read_arguments`` -- ``layout -> [kwargs, ...]``: the constructor arguments that a checkpoint's key layout
  (``{key: shape}``) shows (widths, depths, input channels); :mod:`basicsr_restore.core.identify` builds each
  candidate and keeps the one whose layout is the checkpoint's, key for key and shape for shape;
* ``half_precision_db`` -- PSNR (dB) of the network's output with its weights and input in fp16 and in bf16 against
  fp32, on a 64x64 crop of a real photo (scikit-image's astronaut), first preset, seeded random weights, measured by
  ``scripts/half_precision.py``: what spandrel's ``supports_half``/``supports_bfloat16`` are set from.

Plain Python and torch: importing this module needs no basicsr.
"""
import inspect
import json
import os
import sys
from dataclasses import dataclass, field
from typing import Callable, Mapping, NamedTuple, Optional, Tuple

import torch


class SizeRule(NamedTuple):
    """Height and width must be multiples of ``multiple`` and at least ``min_size`` (``why``)."""
    multiple: int = 1
    min_size: int = 0
    why: str = ''

    def fit(self, length):
        """The smallest length the rule accepts that is at least ``length``: rounded up to the multiple, at least
        the minimum (what inputs are padded to, tiles and benchmark sizes rounded to)."""
        return max(-(-int(length) // self.multiple) * self.multiple, self.min_size)

    def check(self, net_name, x, minimum=True):
        """A clear error when the spatial size of ``x`` breaks the rule (``minimum=False``: the multiple only)."""
        h, w = x.shape[-2:]
        if h % self.multiple or w % self.multiple:
            hint = ('set datasets.train.gt_size to a multiple of {m}' if torch.is_grad_enabled() else
                    'pad the input first (basicsr_restore.core.inference.restore_any_size pads and crops back; '
                    'RestorationModel and `basicsr-restore infer` do it for you)')
            raise ValueError(f'{net_name} needs height and width that are multiples of {self.multiple}, got {h}x{w}: '
                             + hint.format(m=self.multiple))
        if minimum and min(h, w) < self.min_size:
            raise ValueError(f'{net_name} needs inputs of at least {self.min_size}x{self.min_size} ({self.why}), got '
                             f'{h}x{w}: set datasets.train.gt_size to {self.min_size} or more, or pad the input.')


@dataclass(frozen=True)
class Preset:
    """An official configuration: constructor arguments, parameter count, manifest file, where it is used."""
    kwargs: Mapping
    params: int
    manifest: str
    used_for: str = ''


@dataclass(frozen=True)
class NetworkCard:
    name: str
    paper: str
    size: Callable[..., SizeRule]
    presets: Mapping[str, Preset]
    checkpoint_key: Optional[str]
    outputs: Tuple[str, ...]
    tiny: Mapping
    checkpoint_blocks: Tuple[str, ...] = ()
    batch_rule: Optional[str] = None
    read_arguments: Optional[Callable[[Mapping], list]] = None
    notes: Tuple[str, ...] = field(default=())
    half_precision_db: Mapping = field(default_factory=dict)

    @property
    def multi_output(self):
        return len(self.outputs) > 1

    def preset(self, name):
        """The preset ``name``, or a clear error listing the presets."""
        if name not in self.presets:
            raise ValueError(f"{self.name} has no preset {name!r}; its presets are: {', '.join(self.presets)}.")
        return self.presets[name]


def card_of(net_or_class):
    """The card of a network (instance or class), or None for networks without one (e.g. basicsr's)."""
    card = getattr(net_or_class, 'card', None)
    return card if isinstance(card, NetworkCard) else None


def size_rule(net):
    """The size rule of a network instance (``SizeRule(1, 0)`` for networks that state none)."""
    rule = getattr(net, 'size_rule', None)
    return rule if isinstance(rule, SizeRule) else SizeRule()


def constructor_arguments(cls, kwargs):
    """``kwargs`` completed with the defaults of ``cls.__init__`` (what a configuration really is)."""
    bound = inspect.signature(cls.__init__).bind_partial(None, **kwargs)
    bound.apply_defaults()
    return {k: v for k, v in bound.arguments.items() if k != 'self'}


# ------------------------------------------------------------------------------------------- manifests
def manifest_path(cls, preset_name):
    """Path of the manifest of ``cls``'s preset: ``manifests/<file>`` beside the module defining ``cls``."""
    preset = cls.card.preset(preset_name)
    folder = os.path.dirname(os.path.abspath(sys.modules[cls.__module__].__file__))
    return os.path.join(folder, 'manifests', preset.manifest)


def load_manifest(cls, preset_name):
    """The committed checkpoint layout of a preset: ``network``, ``arch_kwargs``, ``param_count``,
    ``checkpoint_key``, ``state_dict`` (key -> shape), ``source``."""
    path = manifest_path(cls, preset_name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{cls.__name__} preset {preset_name!r}: manifest '{path}' does not exist; write it "
                                f'with `basicsr-restore manifest {cls.__name__} --preset {preset_name}`.')
    with open(path, encoding='utf-8') as f:
        return json.load(f)


def count_indexed(layout, prefix):
    """How many ``<prefix><i>.`` entries a layout has (``1 + max i``; 0 when none): e.g. the residual blocks
    ``Encoder.0.layers.<i>.`` of a stage."""
    found = [int(rest.split('.', 1)[0]) for key in layout if key.startswith(prefix)
             for rest in [key[len(prefix):]] if rest.split('.', 1)[0].isdigit()]
    return 1 + max(found) if found else 0


def layout(state):
    """``{key: shape}`` of a state dict, the form manifests keep."""
    return {k: list(v.shape) for k, v in state.items()}


def manifest_of(cls, preset_name, state=None, source=''):
    """A manifest for ``cls``'s preset, from ``state`` (e.g. an official checkpoint) or from the network built
    with the preset's arguments. Parameter count: the number of values of the network's parameters."""
    preset = cls.card.preset(preset_name)
    net = cls(**preset.kwargs)
    own = net.state_dict()
    state = own if state is None else state
    return {'network': cls.__name__, 'variant': preset_name, 'arch_kwargs': dict(preset.kwargs),
            'checkpoint_key': cls.card.checkpoint_key, 'param_count': sum(p.numel() for p in net.parameters()),
            'source': source, 'state_dict': layout(state)}
