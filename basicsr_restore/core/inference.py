"""The one inference path: padding to a network's size rule, the final output, tiles, self-ensemble and the
device choice. Validation (``RestorationModel``), ``basicsr.test``, ``infer``, ``report`` and ``bench`` all call
it.

* **Any size**: each forward pads (reflect, bottom/right; replicate where the image is smaller than the pad)
  to the network's size rule (its card) and crops the result back.
* **Tiles** (``tile``): the image is cut into overlapping tiles, each restored alone and blended with weights
  that are zero within a quarter of the overlap from an inner tile edge and ramp up linearly over the next half,
  so that no tile's border pixels reach the result; the accumulator stays on the CPU.
* **Self-ensemble** (``tta``): the mean over the 8 rotations/flips, each output transformed back.
* **Grids** (the forks' ``val.grids``/``crop_size``): square crops placed evenly from border to border, restored
  in batches of ``max_minibatch`` and averaged where they overlap, as the forks validate to save memory.
"""
import math

import numpy as np
import torch
import torch.nn.functional as F

from basicsr_restore.archs.card import size_rule
from basicsr_restore.core import speed as speeds
from basicsr_restore.core.imageio import FLOAT_TYPES, from_float, to_float

#: BT.601 luma weights in BGR order (a gray input is written back as the luma of the restored color)
LUMA_BGR = np.array([0.114, 0.587, 0.299])


def pick_device(name):
    """``auto`` (CUDA when present), ``cpu`` or ``cuda[:N]``, with a clear error for what is not here."""
    if name in (None, 'auto'):
        return 'cuda' if torch.cuda.is_available() else 'cpu'
    if name.startswith('cuda') and not torch.cuda.is_available():
        raise ValueError(f'--device {name}: CUDA is not available here (torch {torch.__version__}); use --device cpu.')
    if name != 'cpu' and not name.startswith('cuda'):
        raise ValueError(f'--device must be cpu or cuda[:N], got {name!r}.')
    return name


# ---------------------------------------------------------------------------------------- any size
def pad_to_rule(x, rule, mode='reflect'):
    """Pad ``x`` (N,C,H,W) at the bottom/right to the size the rule accepts (:meth:`SizeRule.fit`); return it and
    the original size. Reflection needs the pad to be smaller than the image; tiny images fall back to
    replication.
    """
    h, w = x.shape[-2:]
    ph, pw = rule.fit(h) - h, rule.fit(w) - w
    if ph or pw:
        if mode == 'reflect' and (ph >= h or pw >= w):
            mode = 'replicate'
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, (h, w)


def final_output(out):
    """The restored image among a network's outputs: the last of a list (its card's ``outputs``), or the tensor."""
    return out[-1] if isinstance(out, (list, tuple)) else out


def restore_any_size(net, x, rule=None):
    """Run ``net`` on ``x`` of any size: pad to the size rule (``rule``, default the network's own), take the
    final output, crop back to the input size. The caller picks eval/no_grad. ``net`` may be a compiled or
    wrapped network; then pass the bare network's rule."""
    rule = rule or size_rule(net)
    padded, size = pad_to_rule(x, rule)
    return final_output(net(padded))[..., :size[0], :size[1]]


# --------------------------------------------------------------------------------------------- forward
def self_ensemble(forward, x):
    """Mean of ``forward`` over the 8 dihedral transforms of ``x`` (each output transformed back).

    The sum is taken pairwise, so 8 equal outputs average to exactly that output."""
    outs = []
    for k in range(4):
        for flip in (False, True):
            t = torch.rot90(x, k, dims=(2, 3))
            t = t.flip(3) if flip else t
            y = forward(t)
            y = y.flip(3) if flip else y
            outs.append(torch.rot90(y, -k, dims=(2, 3)))
    while len(outs) > 1:
        outs = [outs[i] + outs[i + 1] for i in range(0, len(outs), 2)]
    return outs[0] / 8


def grid_starts(length, crop):
    """Offsets of the forks' grid crops along one axis: ``ceil((length - 1) / crop)`` crops (one when the image is
    smaller than the crop), the first at 0 and the last at the border, spaced evenly (rounded up)."""
    if length <= crop:
        return [0]
    count = (length - 1) // crop + 1
    step = math.ceil((length - crop) / (count - 1) - 1e-8)
    starts, i = [], 0
    while True:
        if i + crop >= length:
            starts.append(length - crop)
            return starts
        starts.append(i)
        i += step


def grid_average(forward, x, crop, max_minibatch=None):
    """Restore ``x`` (1, C, H, W) as the mean of ``forward`` over the grid of ``crop`` x ``crop`` crops
    (:func:`grid_starts`; a side smaller than the crop is taken whole), ``max_minibatch`` crops per call."""
    _, _, h, w = x.shape
    ch, cw = min(crop, h), min(crop, w)
    boxes = [(i, j) for i in grid_starts(h, ch) for j in grid_starts(w, cw)]
    chunk = int(max_minibatch or len(boxes))
    total, count = None, torch.zeros(1, 1, h, w, device=x.device)
    for first in range(0, len(boxes), chunk):
        part = boxes[first:first + chunk]
        out = forward(torch.cat([x[:, :, i:i + ch, j:j + cw] for i, j in part]))
        if total is None:
            total = torch.zeros(1, out.shape[1], h, w, device=x.device, dtype=out.dtype)
        for k, (i, j) in enumerate(part):
            total[:, :, i:i + ch, j:j + cw] += out[k:k + 1]
            count[:, :, i:i + ch, j:j + cw] += 1
    return total / count


def tile_starts(length, tile, overlap):
    """Start offsets of tiles of ``tile`` pixels covering ``length`` with at least ``overlap`` shared; the
    last tile ends at the border."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, tile - overlap))
    return starts + [length - tile]


def blend_weights(n, overlap, inner_before, inner_after):
    """1-D weights of one tile of ``n`` pixels: zero within ``overlap/4`` of an inner edge, a linear ramp
    over the next ``overlap/2``, one elsewhere (and at the image's own borders)."""
    w = torch.ones(n)
    if overlap <= 0:
        return w
    d = torch.arange(n, dtype=torch.float32) + 0.5
    ramp_in = ((d - overlap / 4) / (overlap / 2)).clamp(0, 1)
    if inner_before:
        w = w * ramp_in
    if inner_after:
        w = w * ramp_in.flip(0)
    return w


def tiled(forward, x, tile, overlap, progress=None):
    """Run ``forward`` tile by tile over ``x`` (1, C, H, W) and blend (see the module docstring).

    The result is accumulated on the CPU in float32; only one tile is on the device at a time."""
    _, _, h, w = x.shape
    ys, xs = tile_starts(h, tile, overlap), tile_starts(w, tile, overlap)
    acc, weight = None, torch.zeros(1, 1, h, w)
    for top in ys:
        for left in xs:
            th, tw = min(tile, h), min(tile, w)
            out = forward(x[:, :, top:top + th, left:left + tw]).float().cpu()
            wy = blend_weights(th, overlap, top > 0, top + th < h)
            wx = blend_weights(tw, overlap, left > 0, left + tw < w)
            wt = (wy[:, None] * wx[None, :])[None, None]
            if acc is None:
                acc = torch.zeros(1, out.shape[1], h, w)
            acc[:, :, top:top + th, left:left + tw] += out * wt
            weight[:, :, top:top + th, left:left + tw] += wt
            if progress is not None:
                progress.update(1)
    return acc / weight


def round_tile(tile, net):
    """The tile size rounded up to the network's multiple and at least its minimum size."""
    return size_rule(net).fit(tile)


class Restorer:
    """``restorer(x)``: the restored (1, 3, H, W) float32 CPU tensor for a CPU input of any size."""

    def __init__(self, net, device, speed=speeds.Speed(), tile=0, overlap=32, tta=False):
        self.speed = speed
        self.rule = size_rule(net)
        self.net = net.to(device, memory_format=speed.memory_format).eval()
        self.runner = speeds.compiled(self.net, speed, training=False)
        self.device = torch.device(device)
        self.tile = round_tile(tile, net) if tile else 0
        self.overlap = overlap
        self.tta = tta

    def forward(self, x):
        with speeds.autocast(self.speed, self.device):
            x = speeds.to_memory_format(x.to(self.device), self.speed)
            return restore_any_size(self.runner, x, self.rule).float()

    def count_tiles(self, h, w):
        if not self.tile:
            return 1
        return len(tile_starts(h, self.tile, self.overlap)) * len(tile_starts(w, self.tile, self.overlap))

    @torch.inference_mode()
    def __call__(self, x, progress=None):
        forward = (lambda t: self_ensemble(self.forward, t)) if self.tta else self.forward
        if self.tile and (x.shape[2] > self.tile or x.shape[3] > self.tile):
            return tiled(forward, x, self.tile, self.overlap, progress)
        return forward(x).cpu()


# ------------------------------------------------------------------------------ pictures in and out
def to_tensor(picture):
    """(1, 3, H, W) float32 RGB in [0, 1] of an :class:`imageio.Picture`."""
    bgr = picture.color
    if bgr.dtype in FLOAT_TYPES:
        rgb = np.clip(bgr[:, :, ::-1], 0, 1).astype(np.float32)
    else:
        rgb = to_float(bgr[:, :, ::-1], picture.path)
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None]


def to_output(picture, out):
    """The restored image in the input's form: ``(array to write, its 3-channel BGR color)``.

    Same pixel type as the input (float inputs give float32 in [0, 1]); gray inputs become gray again (BT.601
    luma of the output), alpha is re-attached unchanged.
    """
    bgr = out[0].float().clamp(0, 1).permute(1, 2, 0).numpy()[:, :, ::-1].astype(np.float64)
    dtype = picture.color.dtype
    convert = (lambda a: a.astype(np.float32)) if dtype in FLOAT_TYPES else (lambda a: from_float(a, dtype))
    if picture.gray:
        gray = convert(bgr @ LUMA_BGR)
        color = np.repeat(gray[:, :, None], 3, axis=2)
        written = gray if picture.alpha is None else np.dstack([gray, picture.alpha])
    else:
        color = convert(bgr)
        written = color if picture.alpha is None else np.dstack([color, picture.alpha])
    return written, color
