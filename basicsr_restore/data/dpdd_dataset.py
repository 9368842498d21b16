"""DualPixelDefocusDataset: DPDD's dual-pixel setting, input = left and right views stacked (6 channels).

Options (``datasets.<phase>``) are those of :class:`PairedRestorationDataset` with the degraded image given
as two views instead of ``dataroot_lq`` (names as in Restormer's dual-pixel dataset):

* ``dataroot_gt``: the all-in-focus targets (``datasets/DPDD/<split>/gt.lmdb`` from ``basicsr-restore prepare
  dpdd``, or a folder);
* ``dataroot_lqL``, ``dataroot_lqR``: the left and right dual-pixel views (``lqL.lmdb`` / ``lqR.lmdb``, or
  folders whose files are named like the targets, or with a ``_L`` / ``_R`` suffix);
* ``gt_size``, ``use_hflip``/``use_flip``, ``use_rot``/``geometric_augs``, ``val_crop_size``,
  ``meta_info_file``, ``io_backend`` as in the paired dataset. The same crop and the same flips/rotations
  are applied to the three images.

Images are decoded unchanged and divided by 65535 for 16-bit data (DPDD's published dual-pixel protocol),
255 for 8-bit. ``lq`` is ``cat([left, right])`` in RGB order, shape (6, H, W); ``gt`` is (3, H, W).
"""
import os
import random

import torch
from basicsr.data.transforms import augment
from basicsr.utils import img2tensor

from basicsr_restore.data.lmdb_io import read_meta_info
from basicsr_restore.data.paired_dataset import PairedRestorationDataset, centre_crop
from basicsr_restore.imageio import images_in, to_float
from basicsr_restore.register import register


@register('dataset')
class DualPixelDefocusDataset(PairedRestorationDataset):
    """Left + right dual-pixel views (6-channel ``lq``) and the all-in-focus target; see the module docstring."""

    OPTION_KEYS = (PairedRestorationDataset.OPTION_KEYS - {'dataroot_lq'}) | {'dataroot_lqL', 'dataroot_lqR'}

    def __init__(self, opt):
        name = f"dataset '{opt.get('name', 'dual_pixel')}' ({opt.get('phase', 'train')})"
        for key in ('dataroot_lqL', 'dataroot_lqR'):
            if not opt.get(key):
                raise ValueError(f'{name}: option {key} is missing (the {"left" if key[-1] == "L" else "right"} '
                                 'dual-pixel views, e.g. datasets/DPDD/train/' + key[-3:] + '.lmdb).')
        if opt.get('dataroot_lq'):
            raise ValueError(f'{name}: DualPixelDefocusDataset reads dataroot_lqL and dataroot_lqR; remove dataroot_lq '
                             '(for the single-image setting use PairedRestorationDataset with the lqC views).')
        if int(opt.get('scale') or 1) != 1:
            raise ValueError(f'{name}: scale must be 1 for dual-pixel defocus deblurring.')
        super().__init__(dict(opt, dataroot_lq=opt['dataroot_lqL']))  # the parent checks GT against the left view
        self.opt = opt
        right = opt['dataroot_lqR']
        if not os.path.isdir(right):
            raise FileNotFoundError(f"{self.where}: dataroot_lqR '{right}' does not exist. Prepare the data "
                                    '(`basicsr-restore prepare dpdd ...`) or fix the option.')
        self.roots = dict(self.roots, lqR=right)
        if self.backend == 'lmdb':
            self._check_right_lmdb(right)
        else:
            self._match_right_files(right)

    def _check_right_lmdb(self, right):
        if not str(right).rstrip('/').endswith('.lmdb'):
            raise ValueError(f"{self.where}: io_backend lmdb needs dataroot_lqR ending with .lmdb, got '{right}'.")
        held = {k for k, _ in read_meta_info(right)}
        missing = [k for k in self.keys if k not in held]
        if missing:
            raise ValueError(f'{self.where}: the right views ({right}) lack {len(missing)} keys of the targets, e.g. '
                             f'{missing[:3]}; dataroot_gt, dataroot_lqL and dataroot_lqR must come from the same '
                             'preparation.')

    def _match_right_files(self, right):
        rights = images_in(right, recursive=True)
        self.right_paths, missing = {}, []
        for rel in self.keys:
            candidates = [rel, rel[:-2] + '_R' if rel.endswith('_L') else None, rel + '_R']
            found = next((rights[c] for c in candidates if c in rights), None)
            if found is None:
                missing.append(rel)
            self.right_paths[rel] = found
        if missing:
            raise FileNotFoundError(f"{self.where}: no right view in dataroot_lqR '{right}' for {len(missing)} left "
                                    f"views, e.g. {missing[:3]} (expected the same name, or '_R' for '_L').")

    def _read(self, kind, key):
        if kind == 'lqR' and self.backend != 'lmdb':
            path = self.right_paths[key]
            where = f"{self.where}: lqR image '{path}'"
            with open(path, 'rb') as f:
                return self._decode(f.read(), where), where
        return super()._read(kind, key)

    def __getitem__(self, index):
        key = self.keys[index]
        (gt, gt_where), (left, left_where), (right, right_where) = (self._read(k, key) for k in ('gt', 'lq', 'lqR'))
        shapes = {'gt': gt.shape, 'lqL': left.shape, 'lqR': right.shape}
        if len({s[:2] for s in shapes.values()}) != 1:
            raise ValueError(f'{self.where}: image {key!r}: the target and the two views differ in size {shapes}; '
                             'they must be aligned.')
        if self.phase == 'train':
            gt, left, right = self._random_crop3(gt, left, right, key)
            gt, left, right = augment([gt, left, right], self.hflip, self.rot)
        elif self.val_crop_size:
            gt, left, right = centre_crop([gt, left, right], self.val_crop_size)
        gt, left, right = to_float(gt, gt_where), to_float(left, left_where), to_float(right, right_where)
        gt, left, right = img2tensor([gt, left, right], bgr2rgb=self.channels == 3, float32=True)
        path = key if self.backend == 'lmdb' else self.paths[key][1]
        return {'lq': torch.cat([left, right], 0), 'gt': gt, 'lq_path': path,
                'gt_path': key if self.backend == 'lmdb' else self.paths[key][0]}

    def _random_crop3(self, gt, left, right, key):
        size = self.gt_size
        h, w = gt.shape[:2]
        if h < size or w < size:
            raise ValueError(f'{self.where}: image {key!r} is {h}x{w}, smaller than gt_size {size}. Lower gt_size or '
                             'prepare larger crops.')
        top, left_x = random.randint(0, h - size), random.randint(0, w - size)
        return [img[top:top + size, left_x:left_x + size] for img in (gt, left, right)]
