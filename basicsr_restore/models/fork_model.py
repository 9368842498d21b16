"""The model names of the BasicSR forks' option files, registered as what they mean.

``ImageRestorationModel`` (NAFNet, HINet, DRCNet) and ``ImageCleanModel`` (Restormer) are
:class:`~basicsr_restore.models.restoration_model.RestorationModel` with the fork's defaults: the forks clip the
gradients at max-norm 0.01 unless ``train.use_grad_clip: false`` (NAFNet, HINet, DRCNet) or only with
``train.use_grad_clip: true`` (Restormer). Every other key of their option files is read by the model itself
(``docs/forks.md`` lists them and what each does here).
"""
from basicsr_restore.core.registry import register
from basicsr_restore.models.restoration_model import RestorationModel


@register('model')
class ImageRestorationModel(RestorationModel):
    """NAFNet's, HINet's and DRCNet's model name: gradient clipping (0.01) on unless ``use_grad_clip: false``."""
    GRAD_CLIP_BY_DEFAULT = True


@register('model')
class ImageCleanModel(RestorationModel):
    """Restormer's model name: gradient clipping (0.01) only with ``use_grad_clip: true``."""
    GRAD_CLIP_BY_DEFAULT = False
