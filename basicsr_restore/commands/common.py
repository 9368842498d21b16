"""What several verbs share (a verb never imports another verb): the one size parser of ``--size``-like options,
the one test photo and the one PSNR that ``bench`` and ``export`` measure and verify with.

Light at import (``export`` is imported for its ``--help``): torch is imported by the functions that use it.
"""
import argparse
import math
import os
import re

from basicsr_restore.core.imageio import read_picture


# ------------------------------------------------------------------------------------------------ sizes
class SizeError(argparse.ArgumentTypeError, ValueError):
    """A text that is not a size. An ``ArgumentTypeError``, so that argparse (``type=parse_size``) prints the
    message as it is, and a ``ValueError``, so that a verb's ``run`` ends with it as one plain error line."""


def parse_size(text, option=None):
    """``'256'`` -> ``(256, 256)``; ``'720x1280'`` (height x width; also ``X``, ``*`` or ``,``, spaces allowed)
    -> ``(720, 1280)``. Anything else, or a side under 1, raises :class:`SizeError` (its message starts with
    ``option`` when given: argparse names the option itself)."""
    match = re.fullmatch(r'\s*(\d+)\s*(?:[xX*,]\s*(\d+))?\s*', str(text))
    if not match or int(match.group(1)) < 1 or (match.group(2) and int(match.group(2)) < 1):
        where = f'{option} ' if option else ''
        raise SizeError(f'{where}{text!r} is not a size: give HxW in pixels, e.g. 720x1280 (you may give N or HxW: '
                        'N alone means NxN).')
    h = int(match.group(1))
    return h, int(match.group(2) or h)


# ------------------------------------------------------------------------------------------- the photo
def photo(size, image=None, channels=3):
    """(1, channels, H, W) float32 in [0, 1], on the CPU: ``image`` (a file), else scikit-image's astronaut (a
    photo installed with scikit-image: no download), resized to cover ``size`` (H, W) (bilinear, antialiased when
    shrinking) and cropped at the centre; 1 channel: the mean of R, G and B; 6, 9, ...: the RGB view repeated."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    if image is None:
        from skimage import data
        rgb = data.astronaut()[:, :, :3].astype(np.float32) / 255
        x = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None]
    else:
        from basicsr_restore.core.inference import to_tensor  # keeps export --help light: imports torch
        if not os.path.isfile(image):
            raise FileNotFoundError(f"--verify image '{image}' does not exist; give an image file (PNG, TIFF, JPEG).")
        x = to_tensor(read_picture(image))
    h, w = size
    scale = max(h / x.shape[-2], w / x.shape[-1])
    if scale != 1:
        covered = (max(h, math.ceil(x.shape[-2] * scale)), max(w, math.ceil(x.shape[-1] * scale)))
        x = F.interpolate(x, size=covered, mode='bilinear', align_corners=False, antialias=scale < 1).clamp(0, 1)
    top, left = (x.shape[-2] - h) // 2, (x.shape[-1] - w) // 2
    x = x[..., top:top + h, left:left + w]
    if channels == 1:
        x = x.mean(dim=1, keepdim=True)
    elif channels % 3 == 0:
        x = x.repeat(1, channels // 3, 1, 1)
    else:
        raise ValueError(f'cannot make a {channels}-channel verification input from an RGB photo '
                         '(networks of 1, 3 or a multiple of 3 channels are supported).')
    return x.contiguous()


# ------------------------------------------------------------------------------------------------- PSNR
def psnr(a, b, clamp=False):
    """PSNR in dB (peak 1, computed in float64) between two float image tensors: inf when equal, NaN when one holds
    NaN. ``clamp``: both first clipped to [0, 1], as images are saved (``bench``: a mode's output against fp32's);
    without, values outside [0, 1] count too (``export``: the file must compute what PyTorch computes)."""
    a, b = a.double(), b.double()
    if clamp:
        a, b = a.clamp(0, 1), b.clamp(0, 1)
    mse = float(((a - b) ** 2).mean())
    if mse != mse:  # NaN in an output
        return float('nan')
    return float('inf') if mse == 0 else 10 * math.log10(1 / mse)
