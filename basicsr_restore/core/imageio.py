"""Image files and bytes, one rule each: which names are images, decoding to uint8/uint16, 16 -> 8 bits,
float conversion, labelled strips, and atomic writes. Every reader and writer of the package uses it.

* Images are the files ending in :data:`IMAGE_EXTENSIONS` (any case); outputs keep a lossless input format
  (:data:`LOSSLESS_EXTENSIONS`) and become PNG otherwise.
* Decoding keeps the file's bit depth and channels (BGR order, as OpenCV and basicsr).
* 16 -> 8 bits is ``value >> 8`` (the top byte), the rule OpenCV applies when it reads a 16-bit file as 8-bit,
  so that a 16-bit set trained at ``bit_depth: 8`` sees the pixels that basicsr's own reading would give.
* Float images are ``value / peak`` (255 or 65535) in float32, on the CPU (:func:`to_float`) and, for batches that
  travel as integers, on the model's device (:func:`batch_to_float`, the same bits).
* :func:`atomic_path` writes through a temporary file in the same folder that is renamed over the target once
  complete: an interrupted or failed write never leaves a torn file, nor replaces a good one.
"""
import contextlib
import os
from dataclasses import dataclass

import numpy as np

IMAGE_EXTENSIONS = ('.png', '.tif', '.tiff', '.jpg', '.jpeg', '.bmp', '.webp')
LOSSLESS_EXTENSIONS = ('.png', '.tif', '.tiff')
PEAKS = {np.dtype(np.uint8): 255, np.dtype(np.uint16): 65535}


class ImageError(ValueError):
    """An image that cannot be read or written; the message names the file and says what is supported."""


def is_image(name):
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def output_extension(name):
    """The extension an output for input ``name`` gets: the input's when lossless, else ``.png``."""
    ext = os.path.splitext(name)[1].lower()
    return ext if ext in LOSSLESS_EXTENSIONS else '.png'


def images_in(folder, recursive=False):
    """``{stem or relative stem: path}`` of the images in ``folder`` (``/`` separated when recursive), sorted.
    Two images with one stem (``a.png`` and ``a.jpg``) are an error: they would get the same key."""
    found = {}
    walk = os.walk(folder) if recursive else [(folder, None, os.listdir(folder))]
    for here, _, names in walk:
        for name in sorted(names):
            path = os.path.join(here, name)
            if not is_image(name) or not os.path.isfile(path):
                continue
            stem = os.path.relpath(os.path.splitext(path)[0], folder).replace(os.sep, '/')
            if stem in found:
                raise ImageError(f"'{folder}' holds two images named '{stem}' ({os.path.basename(found[stem])} and "
                                 f'{name}); keep one of them.')
            found[stem] = path
    return dict(sorted(found.items()))


def decode(data, where):
    """Decode a path or encoded bytes unchanged: uint8 or uint16, HxW or HxWxC (BGR). Clear errors for what
    cannot be decoded or has another pixel type."""
    import cv2
    if isinstance(data, (bytes, bytearray, memoryview)):
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        what = 'the stored bytes are not a decodable image (corrupt LMDB or file?)'
    else:
        img = cv2.imread(str(data), cv2.IMREAD_UNCHANGED)
        what = 'not a file OpenCV can decode (PNG, TIFF, JPEG, BMP, WebP), or a damaged one'
    if img is None:
        raise ImageError(f'{where}: {what}.')
    if img.dtype not in PEAKS:
        raise ImageError(f'{where}: {img.dtype} pixels; only 8- and 16-bit images are supported '
                         '(convert float images to 16-bit first).')
    return img


def to_8bit(img):
    """uint16 -> uint8 by the top byte (``>> 8``); uint8 unchanged."""
    return (img >> 8).astype(np.uint8) if img.dtype == np.uint16 else img


def to_float(img, where='image'):
    """uint8/uint16 image -> float32 in [0, 1] (HxW becomes HxWx1)."""
    peak = PEAKS.get(img.dtype)
    if peak is None:
        raise ImageError(f'{where}: unsupported pixel type {img.dtype} (8- or 16-bit images only)')
    img = img.astype(np.float32) / peak
    return img[:, :, None] if img.ndim == 2 else img


_LUTS = {}


def batch_to_float(tensor, device, non_blocking=True):
    """A batch of integer pixels (uint8/uint16, any shape) as float32 in [0, 1] on ``device``: the integers travel
    (a quarter of float32's bytes for 8-bit data; pinned batches copy without blocking) and become float there,
    through a table of :func:`to_float`'s values, so the floats are bit-identical to converting on the CPU. A float
    tensor is only moved."""
    import torch
    if tensor.is_floating_point():
        return tensor.to(device, non_blocking=non_blocking)
    peak = {torch.uint8: 255, torch.uint16: 65535}.get(tensor.dtype)
    if peak is None:
        raise ImageError(f'a batch of {tensor.dtype} pixels; only uint8, uint16 or float batches can be read')
    key = (tensor.dtype, str(torch.device(device)))
    if key not in _LUTS:
        levels = np.arange(peak + 1, dtype=np.uint8 if peak == 255 else np.uint16)
        _LUTS[key] = torch.from_numpy(to_float(levels[:, None]).reshape(-1)).to(device)
    moved = tensor.to(device, non_blocking=non_blocking)
    return _LUTS[key][moved.int()]


def from_float(img, dtype):
    """float image in [0, 1] -> ``dtype`` (uint8/uint16), rounded to the nearest level, clipped."""
    peak = PEAKS[np.dtype(dtype)]
    return np.round(np.clip(img, 0, 1) * peak).astype(dtype)


def temporary_name(path, keep_extension=False):
    """The temporary file of an atomic write of ``path``: ``<path>.tmp<pid>`` (``<root>.tmp<pid><ext>`` when the
    writer picks the format by extension). Interrupted runs can leave them; ``resume`` sweeps them."""
    if keep_extension:
        root, ext = os.path.splitext(str(path))
        return f'{root}.tmp{os.getpid()}{ext}'
    return f'{path}.tmp{os.getpid()}'


@contextlib.contextmanager
def atomic_path(path, keep_extension=False):
    """``with atomic_path(p) as tmp: write(tmp)``: ``tmp`` (same folder) replaces ``p`` only when the block ends
    without error; on any error or interruption ``tmp`` is removed and ``p`` is untouched."""
    tmp = temporary_name(path, keep_extension)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_image(path, img):
    """Write ``img`` (any format OpenCV encodes by the extension), atomically; a clear error when it cannot."""
    import cv2
    with atomic_path(path, keep_extension=True) as tmp:
        try:
            ok, why = cv2.imwrite(tmp, img), 'OpenCV could not encode it'
        except cv2.error as exc:
            ok, why = False, str(exc).strip().splitlines()[-1]
        if not ok:
            raise ImageError(f"cannot write '{path}': {why}.")


def labelled(img, text):
    """8-bit ``img`` with ``text`` in white on a black box at its top-left corner (for comparison strips)."""
    import cv2
    img = img.copy()
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.6, 1)
    cv2.rectangle(img, (0, 0), (w + 12, h + base + 10), (0, 0, 0), thickness=-1)
    cv2.putText(img, text, (6, h + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
    return img


# ------------------------------------------------------------------------------ pictures (what a network sees)
FLOAT_TYPES = (np.dtype(np.float32), np.dtype(np.float64))


@dataclass
class Picture:
    """An image ready for a network: ``color`` is H x W x 3 BGR (uint8, uint16, or float in [0, 1]); ``gray``
    says it had one channel (replicated here); ``alpha`` is the H x W alpha channel or None."""
    path: str
    color: np.ndarray
    gray: bool = False
    alpha: np.ndarray = None

    @property
    def peak(self):
        return PEAKS.get(self.color.dtype, 1.0)

    def view8(self):
        """8-bit BGR for looking at (16-bit reduced by the package's one rule, float rounded, alpha dropped)."""
        if self.color.dtype in FLOAT_TYPES:
            return from_float(self.color, np.uint8)
        return to_8bit(self.color)


def picture_from_array(img, where, gray_alpha=True):
    """H x W (gray), H x W x 1, x 2 (gray + alpha, only with ``gray_alpha``), x 3 or x 4 (+ alpha) BGR array ->
    :class:`Picture`; one clear :class:`ImageError` naming ``where`` for anything else."""
    if not isinstance(img, np.ndarray):
        raise ImageError(f'{where}: expected a numpy array, got {type(img).__name__}.')
    if img.dtype not in PEAKS and img.dtype not in FLOAT_TYPES:
        raise ImageError(f'{where}: {img.dtype} pixels; give uint8, uint16, or float32/float64 in [0, 1].')
    if img.ndim not in (2, 3) or img.shape[0] == 0 or img.shape[1] == 0:
        raise ImageError(f'{where}: shape {tuple(img.shape)} is not an image; give H x W or H x W x C '
                         '(C = 1, 3 or 4) with H, W >= 1.')
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 2:
        return Picture(where, np.repeat(img[:, :, None], 3, axis=2), gray=True)
    channels = img.shape[2]
    if channels == 2 and gray_alpha:
        return Picture(where, np.repeat(img[:, :, :1], 3, axis=2), gray=True, alpha=img[:, :, 1].copy())
    if channels == 3:
        return Picture(where, np.ascontiguousarray(img))
    if channels == 4:
        return Picture(where, np.ascontiguousarray(img[:, :, :3]), alpha=img[:, :, 3].copy())
    allowed = '1 (gray), 2 (gray + alpha), 3 (color) and 4 (color + alpha)' if gray_alpha else \
        '1 (gray), 3 (color) and 4 (color + alpha)'
    raise ImageError(f'{where}: {channels} channels; supported are {allowed}.')


def read_picture(path):
    """Decode ``path`` unchanged (bit depth, channels) into a :class:`Picture`."""
    return picture_from_array(decode(path, f"cannot read image '{path}'"), f"image '{path}'")
