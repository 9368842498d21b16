"""The dataset names of the BasicSR forks' option files, registered as what they mean: aligned degraded/clean
pairs, read by :class:`PairedRestorationDataset` with the forks' keys (``use_flip``, ``use_rot``,
``geometric_augs``, ``filename_tmpl``; Restormer's progressive ``mini_batch_sizes``/``iters``/``gt_sizes`` are
read by the model). The forks' ``PairedImageDataset`` is basicsr's own name: its ``use_flip`` is passed on as
basicsr's ``use_hflip`` (``option_checks.adopt_fork_keys``)."""
from basicsr_restore.core.registry import register
from basicsr_restore.data.paired_dataset import PairedRestorationDataset


@register('dataset')
class PairedImageDataset_SIDD(PairedRestorationDataset):  # noqa: N801 (the forks' name)
    """NAFNet's, HINet's and DRCNet's SIDD dataset: paired ``gt``/``lq`` images, as PairedRestorationDataset."""


@register('dataset')
class Dataset_PairedImage(PairedRestorationDataset):  # noqa: N801 (the fork's name)
    """Restormer's paired dataset: paired ``gt``/``lq`` images, as PairedRestorationDataset."""
