"""Which network, and which configuration, a state dict belongs to: from its keys and shapes alone.

Every network card states how its constructor arguments show in a checkpoint (``card.read_arguments``:
widths from the first convolution, depths from the number of indexed blocks, input channels). For a state
dict (already unwrapped by :mod:`basicsr_restore.core.checkpoints`: any checkpoint key, ``module.``/``_orig_mod.``
stripped):

1. **a preset**: its layout equals the committed manifest of an official configuration, key for key and shape
   for shape; the preset's arguments are taken whole (including those that leave no trace in the weights,
   such as IRNeXt's ``low_pass``);
2. **inferred arguments**: otherwise each card's candidates are built (on the meta device: no memory) and the
   one whose layout is the checkpoint's is taken; arguments that leave no trace keep their defaults;
3. **unknown**: :class:`UnknownLayout` lists the closest known layouts and what differs.

Plain torch: no basicsr needed.
"""
from dataclasses import dataclass, field

import torch

from basicsr_restore.archs.card import constructor_arguments, layout, load_manifest
from basicsr_restore.core.errors import RestoreError
from basicsr_restore.core.registry import network_classes


class UnknownLayout(RestoreError, ValueError):
    """A state dict that matches no network of the package."""


@dataclass
class Identified:
    """``name(**kwargs)``: the network class and the arguments that rebuild it; ``preset`` when the layout is an
    official configuration's; ``hidden`` the arguments the weights cannot show (kept at their values here)."""
    cls: type
    kwargs: dict
    preset: str = None
    hidden: list = field(default_factory=list)

    @property
    def name(self):
        return self.cls.__name__

    def describe(self):
        args = ', '.join(f'{k}={v!r}' for k, v in self.kwargs.items())
        what = f'preset {self.preset!r}' if self.preset else 'arguments read from the key layout'
        return f'{self.name}({args}) [{what}]'


def layout_of(net_class, kwargs):
    """``{key: shape}`` of ``net_class(**kwargs)``, built on the meta device (no weights are allocated)."""
    try:
        with torch.device('meta'):
            net = net_class(**kwargs)
    except Exception:  # a constructor that computes with tensors: build it for real
        net = net_class(**kwargs)
    return layout(net.state_dict())


def _shapes(state):
    return {k: list(v) if isinstance(v, (list, tuple)) else list(v.shape) for k, v in state.items()}


def identify(state, classes=None):
    """The :class:`Identified` network of ``state`` (a state dict or a ``{key: shape}`` layout), or
    :class:`UnknownLayout` naming the closest known layouts."""
    shapes = _shapes(state)
    classes = network_classes() if classes is None else classes
    known = []  # (name, layout) of every configuration tried, for the error
    for cls in classes:
        for preset_name in cls.card.presets:
            manifest = load_manifest(cls, preset_name)['state_dict']
            known.append((f'{cls.__name__} preset {preset_name!r}', manifest))
            if manifest == shapes:
                return Identified(cls, constructor_arguments(cls, cls.card.presets[preset_name].kwargs), preset_name)
    for cls in classes:
        reader = cls.card.read_arguments
        if reader is None:
            continue
        try:
            candidates = reader(shapes)
        except (KeyError, IndexError, ValueError, TypeError):
            continue  # not this network's keys
        for kwargs in candidates:
            try:
                candidate = layout_of(cls, kwargs)
            except Exception:
                continue
            if candidate == shapes:
                full = constructor_arguments(cls, kwargs)
                hidden = [k for k in full if k not in kwargs]
                return Identified(cls, full, None, hidden)
            known.append((f'{cls.__name__}({", ".join(f"{k}={v}" for k, v in kwargs.items())})', candidate))
    raise UnknownLayout(unknown_message(shapes, known))


def difference(shapes, other):
    """``(missing, unexpected, mismatched)`` of a layout against a known one."""
    missing = [k for k in other if k not in shapes]
    unexpected = [k for k in shapes if k not in other]
    mismatched = [f'{k}: {shapes[k]} vs {other[k]}' for k in shapes if k in other and shapes[k] != other[k]]
    return missing, unexpected, mismatched


def unknown_message(shapes, known, closest=3):
    """The error for a layout of no known network: the ``closest`` known layouts (by shared keys) and what
    differs from each."""
    def overlap(item):  # shared key names over all names (shapes are reported, not ranked)
        other = item[1]
        return len(set(shapes) & set(other)) / max(len(set(shapes) | set(other)), 1)

    ranked = sorted(known, key=overlap, reverse=True)[:closest]
    lines = [f'the weights ({len(shapes)} tensors) match no network of basicsr-restore. Closest known layouts:']
    for name, other in ranked:
        missing, unexpected, mismatched = difference(shapes, other)
        parts = []
        for label, items in (('missing', missing), ('unexpected', unexpected), ('of another shape', mismatched)):
            if items:
                parts.append(f"{len(items)} {label} (e.g. {', '.join(items[:2])})")
        lines.append(f"  - {name}: {overlap((name, other)):.0%} of the key names shared; " + '; '.join(parts))
    lines.append('If the file is of one of these networks, name it: --arch NAME --arch-args key=value ... (a '
                 'truncated or partly saved file shows as missing keys).')
    return '\n'.join(lines)
