"""``basicsr-restore prepare sidd|sidd-val SRC DST``: SIDD real-noise sRGB data (Abdelhamed et al., CVPR 2018).

``sidd``: SIDD-Medium sRGB (the ~12 GB "sRGB images only" download, 160 scene folders x 2 captures = 320
pairs), found anywhere below ``SRC`` (``SIDD_Medium_Srgb/Data/<scene>/`` as released, or the scene folders
directly, as in the MPRNet/Restormer/NAFNet copies): every ``*NOISY*`` PNG is paired with the ``*GT*`` PNG of
the same name in its folder. Each pair is cut into 512x512 crops with step 384 (HINet/NAFNet/DRCNet's
``sidd.py``; the last row and column are moved to the border), keyed by the file name without ``_NOISY``
(``0001_SRGB_010_s001``). A flattened ``{input,target|gt|groundtruth}`` copy of whole frames is cut the same
way. Output: ``DST/train/{gt,lq}.lmdb``.

``sidd-val``: ``ValidationNoisyBlocksSrgb.mat`` and ``ValidationGtBlocksSrgb.mat`` (in ``SRC`` or below it),
uint8 arrays of shape (40, 32, 256, 256, 3) in RGB -> 1,280 pairs of 256x256 blocks keyed
``ValidationBlocksSrgb_0000`` ... ``_1279`` (image * 32 + block), ``DST/val/{gt,lq}.lmdb``. MATLAB v5/v7 files
are read with ``scipy.io.loadmat``; v7.3 (HDF5) files need ``h5py``.
"""
import os

import numpy as np

from basicsr_restore.commands.prepare.common import (
    LayoutError,
    Split,
    Verb,
    WriteOptions,
    crop_options,
    first_dir,
    listing,
    no_layout,
    pair_dirs,
    pair_files,
    run_splits,
)
from basicsr_restore.core.imageio import is_image

SIDD_LAYOUTS = ['SIDD-Medium sRGB as released: SIDD_Medium_Srgb/Data/<scene>/0001_NOISY_SRGB_010.PNG with '
                '0001_GT_SRGB_010.PNG beside it (any depth below SRC)',
                'flattened whole frames: {input,target} (or input/gt, input/groundtruth) in SRC or SRC/train']
VAL_FILES = ('ValidationNoisyBlocksSrgb', 'ValidationGtBlocksSrgb')


def scene_pairs(src):
    """``[(key, gt_path, noisy_path)]`` for every ``*NOISY*`` image below ``src`` with its ``*GT*`` twin."""
    pairs, orphans = [], []
    for folder, _, files in os.walk(src):
        for name in sorted(files):
            stem = os.path.splitext(name)[0]
            if 'NOISY' not in stem or not is_image(name):
                continue
            gt = os.path.join(folder, name.replace('NOISY', 'GT', 1))
            if not os.path.isfile(gt):
                orphans.append(os.path.relpath(os.path.join(folder, name), src))
                continue
            key = stem.replace('_NOISY', '', 1).replace('NOISY', '', 1)
            pairs.append((key, gt, os.path.join(folder, name)))
    if orphans:
        raise LayoutError(f"SIDD: {len(orphans)} noisy images below '{src}' have no GT image beside them (same name "
                          f"with NOISY -> GT), e.g. {orphans[:3]}.")
    keys = [k for k, _, _ in pairs]
    if len(set(keys)) != len(keys):
        dup = sorted({k for k in keys if keys.count(k) > 1})
        raise LayoutError(f"SIDD: file names repeat across scene folders below '{src}' (e.g. {dup[:3]}); keys must be "
                          'unique. Is the same scene unpacked twice?')
    return sorted(pairs)


def sidd_pairs(src):
    pairs = scene_pairs(src) if os.path.isdir(src) else []
    if pairs:
        return pairs
    for base in filter(None, (first_dir(src, [c]) for c in ('', 'train', 'SIDD', 'train/SIDD'))):
        dirs = pair_dirs(base, ('input', 'noisy'), ('target', 'gt', 'groundtruth', 'clean'))
        if dirs:
            return pair_files(*dirs)
    raise no_layout('SIDD-Medium', src, SIDD_LAYOUTS)


def run_sidd(args):
    pairs = sidd_pairs(args.src)
    split = Split('train', pairs=lambda: pairs, crop=args.crop, step=args.step,
                  official='320 pairs (160 scenes x 2) of several megapixels, e.g. 112 crops per 5328x3000 frame; '
                           'the total depends on the frame sizes')
    return run_splits('SIDD-Medium', args.dst, [split], WriteOptions.from_args(args))


# --------------------------------------------------------------------------------------- validation
def find_mat(src, name):
    """``<name>.mat`` in ``src`` or below it (case-insensitive), or None."""
    if os.path.isfile(src) and os.path.basename(src).lower() == f'{name.lower()}.mat':
        return src
    for folder, _, files in os.walk(src):
        for f in files:
            if f.lower() == f'{name.lower()}.mat':
                return os.path.join(folder, f)
    return None


def load_blocks(path, name):
    """The block array of a SIDD ``.mat`` file as (images, blocks, H, W, 3) uint8 RGB."""
    import scipy.io
    try:
        content = scipy.io.loadmat(path)
    except NotImplementedError:  # MATLAB v7.3: an HDF5 file
        content = load_hdf5_mat(path)
    except (ValueError, OSError, TypeError) as exc:
        raise ValueError(f"'{path}' could not be read as a MATLAB file ({exc}); download it again.") from None
    arrays = {k: v for k, v in content.items() if not k.startswith('__')}
    array = arrays.get(name)
    if array is None:
        if len(arrays) != 1:
            raise ValueError(f"'{path}' holds no variable '{name}' (it holds {sorted(arrays)}); is it the SIDD "
                             'validation file?')
        array = next(iter(arrays.values()))
    array = np.asarray(array)
    if array.ndim == 4:
        array = array[:, None]
    if array.ndim != 5 or array.shape[-1] != 3 or array.dtype != np.uint8:
        raise ValueError(f"'{path}': expected uint8 blocks of shape (images, blocks, H, W, 3) such as "
                         f'(40, 32, 256, 256, 3), got {array.dtype} {array.shape}.')
    return array


def load_hdf5_mat(path):
    try:
        import h5py
    except ImportError:
        raise ValueError(f"'{path}' is a MATLAB v7.3 (HDF5) file, which scipy cannot read: install h5py "
                         "(pip install h5py) and run the command again, or re-save it in MATLAB with "
                         "save(file, name, '-v7').") from None
    with h5py.File(path, 'r') as f:
        # MATLAB writes column-major arrays: reverse the axes to get the v5 layout back
        return {k: np.asarray(f[k][()]).transpose(tuple(range(f[k].ndim))[::-1]) for k in f.keys()
                if hasattr(f[k], 'shape')}


class BlockPairs:
    """The validation blocks as ``(key, gt, noisy)`` pairs, converted to BGR one at a time (no copy of the
    whole array)."""

    def __init__(self, noisy, gt):
        self.noisy, self.gt = noisy, gt
        self.per_image = noisy.shape[1]

    def __len__(self):
        return self.noisy.shape[0] * self.per_image

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(index)
        image, block = divmod(index, self.per_image)
        bgr = [np.ascontiguousarray(a[image, block, :, :, ::-1]) for a in (self.gt, self.noisy)]
        return (f'ValidationBlocksSrgb_{index:04d}', *bgr)

    def __iter__(self):
        return (self[i] for i in range(len(self)))


def sidd_val_pairs(src):
    paths = {name: find_mat(src, name) for name in VAL_FILES}
    missing = [f'{n}.mat' for n, p in paths.items() if p is None]
    if missing:
        raise LayoutError(f"SIDD validation: expected {' and '.join(f'{n}.mat' for n in VAL_FILES)} in '{src}' or "
                          f'below it; missing {missing}. Found: {listing(src)}.')
    noisy, gt = (load_blocks(paths[name], name) for name in VAL_FILES)
    if noisy.shape != gt.shape:
        raise ValueError(f'SIDD validation: the noisy blocks {noisy.shape} and the GT blocks {gt.shape} differ in '
                         'shape.')
    return BlockPairs(noisy, gt)


def run_sidd_val(args):
    pairs = sidd_val_pairs(args.src)
    split = Split('val', pairs=lambda: pairs, official='1,280 blocks of 256x256 (40 images x 32 blocks)')
    return run_splits('SIDD validation', args.dst, [split], WriteOptions.from_args(args))


VERBS = {
    'sidd': Verb(run_sidd, 'SIDD-Medium sRGB scene folders -> 512x512 crops (step 384)',
                 crop_options(512, 384, 'frames')),
    'sidd-val': Verb(run_sidd_val, 'SIDD validation .mat blocks -> 1,280 pairs of 256x256'),
}
