"""PSNR loss of HINet (also used by NAFNet): the negative average per-image PSNR, up to the weight."""
import math

import torch
from torch import nn


class PSNRLoss(nn.Module):
    """``loss_weight * 10/ln(10) * mean_over_batch(log(MSE_per_image + 1e-8))``.

    ``MSE_per_image`` is the mean squared error over C x H x W of each sample. For images in [0, 1] the value
    is ``-loss_weight`` times the average per-image PSNR in dB (floored by the 1e-8 term, i.e. at 80 dB),
    so it is negative during normal training. HINet's recipes: ``loss_weight: 0.5`` on each of its two
    outputs (GoPro, Rain13k).

    Args:
        toY (bool): compare the BT.601 luma ``(65.481 R + 128.553 G + 24.966 B + 16) / 255`` of RGB inputs
            in [0, 1] instead of all channels.
        reduction (str): only ``'mean'`` (over the batch), as in the official loss.

    Computed in float32 whatever the input dtype (the 1e-8 floor underflows in half precision).
    """

    def __init__(self, loss_weight=1.0, reduction='mean', toY=False):
        super().__init__()
        if reduction != 'mean':
            raise ValueError(f"PSNRLoss: only reduction 'mean' is supported, got {reduction!r}")
        self.loss_weight = loss_weight
        self.scale = 10 / math.log(10)
        self.toY = toY
        self.register_buffer('coef', torch.tensor([65.481, 128.553, 24.966]).reshape(1, 3, 1, 1), persistent=False)

    def to_y(self, img):
        return ((img * self.coef).sum(dim=1, keepdim=True) + 16.) / 255.

    def forward(self, pred, target, **kwargs):
        if pred.dim() != 4:
            raise ValueError(f'PSNRLoss expects (B, C, H, W) tensors, got shape {tuple(pred.shape)}')
        pred, target = pred.float(), target.float()
        if self.toY:
            pred, target = self.to_y(pred), self.to_y(target)
        mse = (pred - target).pow(2).mean(dim=(1, 2, 3))
        return self.loss_weight * self.scale * torch.log(mse + 1e-8).mean()
