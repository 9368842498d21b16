"""Edge loss of MPRNet (used by the EIRN-R reconstruction): Charbonnier on Laplacian-pyramid residuals."""
import torch
import torch.nn.functional as F
from torch import nn

_REDUCTIONS = ('mean', 'sum', 'none')
GAUSS_5 = (0.05, 0.25, 0.4, 0.25, 0.05)


def gaussian_blur(x, kernel):
    """Per-channel 5x5 blur with ``kernel`` (5, 5), replicate padding."""
    c = x.shape[1]
    x = F.pad(x, (2, 2, 2, 2), mode='replicate')
    return F.conv2d(x, kernel.expand(c, 1, 5, 5), groups=c)


def laplacian(x, kernel):
    """One Laplacian-pyramid level: ``x - blur(up(down(blur(x))))``; ``down`` keeps even rows/columns,
    ``up`` puts them back at their places with zeros in between and gain 4 (so the blur restores the mean)."""
    blurred = gaussian_blur(x, kernel)
    upsampled = torch.zeros_like(blurred)
    upsampled[:, :, ::2, ::2] = blurred[:, :, ::2, ::2] * 4
    return x - gaussian_blur(upsampled, kernel)


class EdgeLoss(nn.Module):
    """``loss_weight * Charbonnier(lap(pred), lap(target))`` with ``sqrt(d^2 + eps)`` per element.

    ``eps`` follows basicsr's ``CharbonnierLoss`` convention (added inside the root unsquared): MPRNet's
    ε = 1e-3 is ``eps: 1.0e-6``. MPRNet's recipe, per stage output: ``CharbonnierLoss(eps=1e-6)`` +
    ``EdgeLoss(loss_weight=0.05, eps=1e-6)``. Computed in float32 whatever the input dtype.
    """

    def __init__(self, loss_weight=1.0, eps=1e-6, reduction='mean'):
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(f'EdgeLoss: reduction must be one of {_REDUCTIONS}, got {reduction!r}')
        self.loss_weight, self.eps, self.reduction = loss_weight, eps, reduction
        k = torch.tensor(GAUSS_5)
        self.register_buffer('kernel', torch.outer(k, k), persistent=False)

    def forward(self, pred, target, **kwargs):
        # the Laplacian is linear: lap(pred) - lap(target) = lap(pred - target), one pass instead of two
        diff = laplacian(pred.float() - target.float(), self.kernel)
        loss = torch.sqrt(diff * diff + self.eps)
        if self.reduction == 'mean':
            loss = loss.mean()
        elif self.reduction == 'sum':
            loss = loss.sum()
        return self.loss_weight * loss
