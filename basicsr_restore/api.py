"""The Python API: two lines from a checkpoint to a restored image.

    import basicsr_restore
    net = basicsr_restore.load('net_g_latest.pth')       # any supported layout; the network is found for you
    out = net.restore(image)                              # numpy H x W x C (RGB) or a tensor, any size

``load`` reads the file the way ``infer`` does (:func:`basicsr_restore.core.checkpoints.open_network`: the network
named by ``arch``, else the one the file records, else the one its key layout identifies); ``build`` makes a
network of this package by name and preset (untrained, e.g. to train or to load weights into). ``restore``
runs the inference path of ``infer`` (:mod:`basicsr_restore.core.inference`): padding to the size rule, optional
tiles and self-ensemble, the final output.

Plain torch: no basicsr needed.
"""
import logging

import numpy as np
import torch

from basicsr_restore.core import checkpoints, state_dicts
from basicsr_restore.core import speed as speeds
from basicsr_restore.core.imageio import ImageError, picture_from_array
from basicsr_restore.core.inference import Restorer, pick_device, to_output, to_tensor

__all__ = ['Network', 'build', 'load']


class Network:
    """A network ready to restore: ``net`` (the ``torch.nn.Module``, in eval mode), ``name``, ``kwargs`` (its
    constructor arguments), ``source`` (what was loaded and how the network was found)."""

    def __init__(self, net, name, kwargs, source='', device='auto'):
        self.net = net.eval()
        self.name = name
        self.kwargs = dict(kwargs)
        self.source = source
        self.device = pick_device(device)
        self._restorers = {}

    @property
    def config(self):
        """``IRNeXt(num_res=14, ...)``: the network and its arguments, as text."""
        return checkpoints.config_text(self.name, self.kwargs)

    def __repr__(self):
        return f'<basicsr_restore.Network {self.config} on {self.device}>'

    def to(self, device):
        """Move to ``device`` ('cpu', 'cuda', 'cuda:1', 'auto'); returns self."""
        self.device = pick_device(device)
        self._restorers.clear()
        return self

    def _restorer(self, tile, overlap, tta, speed):
        key = (tile, overlap, tta, speed)
        if key not in self._restorers:
            self._restorers.clear()  # one at a time: each holds the network on its device
            self._restorers[key] = Restorer(self.net, self.device, speed, tile, overlap, tta)
        return self._restorers[key]

    def restore(self, image, tile=0, overlap=32, tta=False, speed=None, bgr=False):
        """The restored ``image``, in the form it was given.

        ``image``: a numpy array H x W (gray), H x W x 1, H x W x 3 (RGB) or H x W x 4 (RGBA, alpha kept) of
        uint8, uint16 or float32/float64 in [0, 1]; or a float tensor (3, H, W) or (N, 3, H, W) in [0, 1].
        Any size: the input is padded to the network's size rule and the output cropped back. ``tile`` (pixels,
        0 = whole image) and ``overlap`` bound the memory; ``tta`` averages the 8 flips/rotations; ``speed``
        is a :class:`basicsr_restore.core.speed.Speed` or 'best' (default: fp32). ``bgr=True``: the array is in
        OpenCV's channel order (as ``cv2.imread`` gives it; then 2 channels are read as gray + alpha, as files).
        """
        if tile < 0 or overlap < 0:
            raise ValueError(f'restore: tile ({tile}) and overlap ({overlap}) must be >= 0.')
        speed = self.pick_speed(speed)
        restorer = self._restorer(tile, overlap, tta, speed)
        if restorer.tile and overlap >= restorer.tile:
            raise ValueError(f'restore: overlap {overlap} must be smaller than the tile ({restorer.tile}).')
        if torch.is_tensor(image):
            return self._restore_tensor(image, restorer)
        return self._restore_array(image, restorer, bgr)

    def pick_speed(self, speed, log=None):
        """The :class:`~basicsr_restore.core.speed.Speed` that ``restore(speed=...)`` runs with: ``None``/'fp32' = none,
        'best' = the device's preset (:func:`basicsr_restore.core.speed.resolve`, the rule of training, ``infer`` and
        ``serve``; its choice and reason go to ``log``, by default this package's :mod:`logging` logger, once per
        process), or a ``Speed`` as given."""
        if speed is None or speed == 'fp32':
            return speeds.Speed()
        if speed == 'best':
            log = log if log is not None else logging.getLogger('basicsr_restore').info
            return speeds.resolve('best', self.device, log, where='restore speed')
        if isinstance(speed, speeds.Speed):
            return speed
        raise ValueError(f"restore: speed must be None, 'fp32', 'best' or a basicsr_restore.core.speed.Speed, got "
                         f'{speed!r}.')

    @staticmethod
    def _restore_array(image, restorer, bgr=False):
        swap = not bgr and isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] in (3, 4)
        order = lambda a: a[:, :, [2, 1, 0] + ([3] if a.shape[2] == 4 else [])] if swap else a  # noqa: E731
        picture = picture_from_array(order(image), 'restore(image)', gray_alpha=bgr)
        out = restorer(to_tensor(picture))
        if not torch.isfinite(out).all():
            raise ImageError('restore(image): the network produced NaN/Inf for this image; its weights are broken.')
        written, _ = to_output(picture, out)
        if isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 1:
            written = written[:, :, None]
        return np.ascontiguousarray(order(written))

    @staticmethod
    def _restore_tensor(image, restorer):
        single = image.dim() == 3
        batch = image[None] if single else image
        if batch.dim() != 4 or batch.shape[1] != 3 or not batch.is_floating_point() or min(batch.shape[2:]) == 0:
            raise ImageError(f'restore(image): tensor of shape {tuple(image.shape)} and dtype {image.dtype}; give a '
                             'float tensor (3, H, W) or (N, 3, H, W) in [0, 1].')
        out = torch.cat([restorer(x[None].detach().float().cpu()) for x in batch])
        out = out.to(device=image.device, dtype=image.dtype)
        return out[0] if single else out


def load(weights, arch=None, preset=None, param_key=None, trusted=False, device='auto', **arch_args):
    """The network of the checkpoint ``weights``, loaded strictly, ready to :meth:`Network.restore`.

    ``arch`` (and ``preset`` and/or constructor arguments as keywords) names the network; without it the file's
    ``network_g`` record or its key layout decides (any official layout, BasicSR's ``params``/``params_ema``,
    ``module.``/``_orig_mod.`` prefixes). ``param_key`` picks the entry (default: EMA weights first).
    ``trusted=True`` allows files that pickle Python objects.
    """
    if (preset or arch_args) and not arch:
        raise ValueError('load: preset and constructor arguments need arch= (the network they belong to).')
    kwargs = None
    if arch:
        kwargs = dict(_preset_kwargs(arch, preset), **arch_args)
    net, info = checkpoints.open_network(weights, arch, kwargs, param_key, trusted=trusted, what='weights')
    source = f"{info['network']} <- {weights}: {state_dicts.describe(info)}; {info['found']}"
    return Network(net, info['name'], info['kwargs'], source, device)


def build(name, preset=None, device='auto', **kwargs):
    """A network of this package, untrained: ``build('IRNeXt', preset='deblur')``, ``build('MIRNet', n_feat=32)``
    (the preset's arguments, then ``kwargs``)."""
    arguments = dict(_preset_kwargs(name, preset), **kwargs)
    net = checkpoints.build_arch(name, arguments, where=f'build({name!r})')
    return Network(net, name, arguments, f'{checkpoints.config_text(name, arguments)} (untrained)', device)


def _preset_kwargs(name, preset):
    if preset is None:
        return {}
    cls = checkpoints.arch_class(name)
    card = getattr(cls, 'card', None)
    if card is None:
        raise ValueError(f'{name} has no presets (only the networks of basicsr-restore do).')
    return dict(card.preset(preset).kwargs)
