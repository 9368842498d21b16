"""``basicsr-restore prepare demo``: a small restoration set made offline from scikit-image's bundled photos.

Training pairs: 96 x 96 sub-images (step 64) of four photos, degraded once with a fixed seed, in
``<out>/train/{gt,lq}.lmdb``. Validation: one held-out photo (the cat, 451 x 300, a size no U-Net takes
without padding) as PNG files in ``<out>/val/{gt,lq}/``.

Tasks: ``denoise`` (additive Gaussian noise, sigma 25 on the 0-255 scale, the classic benchmark level) or
``deblur`` (Gaussian blur sigma 1.6 plus light noise, sigma 2).
"""
import os

import numpy as np

from basicsr_restore.commands.prepare.common import Verb, add_write_options
from basicsr_restore.commands.prepare.store import WriteOptions, format_summary, write_pairs
from basicsr_restore.core.imageio import write_image

TRAIN_IMAGES = ('astronaut', 'coffee', 'rocket', 'motorcycle')
VAL_IMAGE = 'chelsea'


def load_photo(name):
    """A photo bundled with scikit-image as uint8 BGR (only files shipped in its wheel: no download)."""
    from skimage import data
    img = data.stereo_motorcycle()[0] if name == 'motorcycle' else getattr(data, name)()
    return np.ascontiguousarray(np.asarray(img)[:, :, 2::-1])


def degrade(img, task, rng, sigma=25.0):
    x = img.astype(np.float64)
    if task == 'deblur':
        import cv2
        x = cv2.GaussianBlur(x, (0, 0), 1.6, borderType=cv2.BORDER_REFLECT)
        sigma = 2.0
    elif task != 'denoise':
        raise ValueError(f"--task must be 'denoise' or 'deblur', got {task!r}")
    x = x + rng.normal(0.0, sigma, size=x.shape)
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def run(args):
    rng = np.random.default_rng(args.seed)
    pairs = []
    for name in TRAIN_IMAGES:
        gt = load_photo(name)
        pairs.append((name, gt, degrade(gt, args.task, rng, args.sigma)))
    summary = write_pairs(pairs, os.path.join(args.out, 'train'), crop=96, step=64, thresh_size=16,
                          write=WriteOptions.from_args(args), desc='demo train')
    print(format_summary(summary))
    val_gt = load_photo(VAL_IMAGE)
    val_lq = degrade(val_gt, args.task, rng, args.sigma)
    for kind, img in (('gt', val_gt), ('lq', val_lq)):
        folder = os.path.join(args.out, 'val', kind)
        os.makedirs(folder, exist_ok=True)
        write_image(os.path.join(folder, f'{VAL_IMAGE}.png'), img)
    psnr = 10 * np.log10(255.0**2 / np.mean((val_gt.astype(np.float64) - val_lq) ** 2))
    print(f'demo validation image {VAL_IMAGE} ({val_gt.shape[1]}x{val_gt.shape[0]}, {args.task}): '
          f'degraded input PSNR {psnr:.2f} dB; written to {args.out}/val')
    return summary


def _options(p):
    p.add_argument('--out', default='datasets/demo', help='output folder (default datasets/demo)')
    p.add_argument('--task', default='denoise', choices=('denoise', 'deblur'))
    p.add_argument('--sigma', type=float, default=25.0, help='noise sigma on the 0-255 scale (denoise; default 25)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--overwrite', action='store_true')
    add_write_options(p)


VERBS = {'demo': Verb(run, "small offline set from scikit-image's bundled photos", _options, src_dst=False)}
