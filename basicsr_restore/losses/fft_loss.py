"""Frequency loss of ChaIR/IRNeXt: L1 between the stacked real/imaginary parts of the 2-D FFTs."""
import torch
from torch import nn

_REDUCTIONS = ('mean', 'sum', 'none')


def fft_l1(pred, target, reduction='mean'):
    """``|stack(re, im)(fft2(pred)) - stack(re, im)(fft2(target))|`` reduced; unnormalised FFT over (H, W).

    Computed in float32 whatever the input dtype, autocast off (half-precision FFTs are restricted to powers of
    two and lose the high frequencies' precision).
    """
    with torch.autocast(pred.device.type, enabled=False):
        diff = torch.view_as_real(torch.fft.fft2(pred.float())) - torch.view_as_real(torch.fft.fft2(target.float()))
    diff = diff.abs()
    if reduction == 'mean':
        return diff.mean()
    if reduction == 'sum':
        return diff.sum()
    return diff


class FFTLoss(nn.Module):
    """``loss_weight * mean |FFT(pred) - FFT(target)|`` with real and imaginary parts stacked.

    The official recipe uses ``loss_weight: 0.1`` next to an L1 pixel loss of weight 1, on every output
    scale. The FFT is unnormalised, so the loss grows with the image size: keep the training crop of the
    recipe (256) when you keep its weight.
    """

    def __init__(self, loss_weight=1.0, reduction='mean'):
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(f'FFTLoss: reduction must be one of {_REDUCTIONS}, got {reduction!r}')
        self.loss_weight = loss_weight
        self.reduction = reduction

    def forward(self, pred, target, **kwargs):
        return self.loss_weight * fft_l1(pred, target, self.reduction)
