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
from basicsr_restore.core.option_rules import Path
from basicsr_restore.core.registry import register
from basicsr_restore.data.paired_dataset import PairedRestorationDataset


@register('dataset')
class DualPixelDefocusDataset(PairedRestorationDataset):
    """Left + right dual-pixel views (6-channel ``lq``) and the all-in-focus target; see the module docstring."""

    STREAMS = {'gt': 'dataroot_gt', 'lqL': 'dataroot_lqL', 'lqR': 'dataroot_lqR'}
    STREAM_HINTS = {'lqL': ' (the left dual-pixel views, e.g. datasets/DPDD/train/lqL.lmdb)',
                    'lqR': ' (the right dual-pixel views, e.g. datasets/DPDD/train/lqR.lmdb)'}
    OPTION_KEYS = {**{k: rule for k, rule in PairedRestorationDataset.OPTION_KEYS.items() if k != 'dataroot_lq'},
                   'dataroot_lqL': Path('folder'), 'dataroot_lqR': Path('folder')}

    def check_options(self, opt):
        if opt.get('dataroot_lq'):
            raise ValueError(f'{self.where}: DualPixelDefocusDataset reads dataroot_lqL and dataroot_lqR; remove '
                             'dataroot_lq (for the single-image setting use PairedRestorationDataset with the lqC '
                             'views).')
        if self.scale != 1:
            raise ValueError(f'{self.where}: scale must be 1 for dual-pixel defocus deblurring.')

    def file_candidates(self, stream, rel):
        """A right view is named like its left view, or with ``_R`` for its ``_L`` suffix, or with ``_R`` added."""
        return [rel, rel[:-2] + '_R' if rel.endswith('_L') else None, rel + '_R']
