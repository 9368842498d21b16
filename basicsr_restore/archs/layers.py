"""Blocks shared by two or more networks, and the padding helpers every caller uses.

Attribute names follow the official checkpoints (``main``, ``merge``, ``layers``, ``feat_extract`` ...),
so that released weights load without key mapping.
"""
import torch
import torch.nn.functional as F
from torch import nn


# ----------------------------------------------------------------------------------------------- sizes
def check_multiple(net_name, x, multiple):
    """Raise a clear error when the spatial size of ``x`` is not a multiple of ``multiple``."""
    h, w = x.shape[-2:]
    if h % multiple or w % multiple:
        hint = ('set datasets.train.gt_size to a multiple of {m}'
                if torch.is_grad_enabled() else 'pad the input first (basicsr_restore.archs.layers.pad_to_multiple; '
                'RestorationModel and `basicsr-restore infer` do it for you)')
        raise ValueError(f'{net_name} needs height and width that are multiples of {multiple}, got {h}x{w}: '
                         + hint.format(m=multiple))


def pad_to_multiple(x, multiple, mode='reflect', min_size=0):
    """Pad ``x`` (N,C,H,W) at the bottom/right to multiples of ``multiple`` (and at least ``min_size``);
    return it and the original size. Reflection needs the pad to be smaller than the image; tiny images
    fall back to replication.
    """
    h, w = x.shape[-2:]
    ph, pw = max((-h) % multiple, min_size - h), max((-w) % multiple, min_size - w)
    if ph or pw:
        if mode == 'reflect' and (ph >= h or pw >= w):
            mode = 'replicate'
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, (h, w)


def crop_to(outputs, size):
    """Crop a tensor or a list of multi-scale outputs back to ``size`` (scaled for the coarser outputs)."""
    h, w = size
    if torch.is_tensor(outputs):
        return outputs[..., :h, :w]
    full_h = outputs[-1].shape[-2]
    cropped = []
    for out in outputs:
        factor = full_h // out.shape[-2]
        cropped.append(out[..., :-(-h // factor), :-(-w // factor)])
    return cropped


def restore_any_size(net, x):
    """Run ``net`` on ``x`` of any size: pad to the network's ``pad_multiple``/``min_size``, take the final
    output of a multi-output network, crop back to the input size. The caller picks eval/no_grad."""
    padded, size = pad_to_multiple(x, getattr(net, 'pad_multiple', 1), min_size=getattr(net, 'min_size', 0))
    out = net(padded)
    return crop_to(out[-1] if isinstance(out, (list, tuple)) else out, size)


# ------------------------------------------------------------------------------------ basic conv units
class BasicConv(nn.Module):
    """Conv (or transposed conv) with bias, optionally followed by GELU. Key prefix ``main.0``."""

    def __init__(self, in_channel, out_channel, kernel_size, stride=1, bias=True, relu=True, transpose=False):
        super().__init__()
        if transpose:
            conv = nn.ConvTranspose2d(in_channel, out_channel, kernel_size, stride=stride,
                                      padding=kernel_size // 2 - 1, bias=bias)
        else:
            conv = nn.Conv2d(in_channel, out_channel, kernel_size, stride=stride, padding=kernel_size // 2, bias=bias)
        layers = [conv, nn.GELU()] if relu else [conv]
        self.main = nn.Sequential(*layers)

    def forward(self, x):
        return self.main(x)


# ------------------------------------------------------- the MIMO-UNet-lineage skeleton (ChaIR, IRNeXt)
class SCM(nn.Module):
    """Shallow convolutional module: features of the down-scaled input image for one coarse level."""

    def __init__(self, out_plane):
        super().__init__()
        self.main = nn.Sequential(
            BasicConv(3, out_plane // 4, kernel_size=3),
            BasicConv(out_plane // 4, out_plane // 2, kernel_size=1),
            BasicConv(out_plane // 2, out_plane // 2, kernel_size=3),
            BasicConv(out_plane // 2, out_plane, kernel_size=1, relu=False),
            nn.InstanceNorm2d(out_plane, affine=True),
        )

    def forward(self, x):
        return self.main(x)


class FAM(nn.Module):
    """Feature attention module, simplified to concatenation + 3x3 conv."""

    def __init__(self, channel):
        super().__init__()
        self.merge = BasicConv(channel * 2, channel, kernel_size=3, relu=False)

    def forward(self, x1, x2):
        return self.merge(torch.cat([x1, x2], dim=1))


class ResStage(nn.Module):
    """``num_res`` residual blocks; only the last one carries the network's special module."""

    def __init__(self, channel, num_res, make_block):
        super().__init__()
        self.layers = nn.Sequential(*[make_block(channel, i == num_res - 1) for i in range(num_res)])

    def forward(self, x):
        return self.layers(x)


class MultiScaleUNet(nn.Module):
    """Three-level U-Net with multi-scale inputs and residual outputs ``[1/4, 1/2, 1]`` (coarse to fine).

    Subclasses pass ``make_block(channel, special) -> nn.Module``: the residual block of the network, with
    its special module when ``special`` is true, and state their input rules as class attributes (checked
    with clear errors before every forward).
    """
    pad_multiple = 4
    min_size = 8
    multi_output = True
    #: blocks that ``speed.checkpoint: true`` recomputes in the backward pass
    checkpoint_blocks = ('ResBlock',)
    #: why inputs must be at least ``min_size`` pixels (for the error message)
    min_size_reason = 'the InstanceNorm of SCM1 needs more than one pixel at 1/4 scale'
    #: the BatchNorm that sees one value per sample, so that training needs batches of 2 (None: no such rule)
    per_sample_batch_norm = None

    def __init__(self, make_block, num_res, base_channel=32):
        super().__init__()
        c1, c2, c3 = base_channel, base_channel * 2, base_channel * 4
        self.Encoder = nn.ModuleList([ResStage(c, num_res, make_block) for c in (c1, c2, c3)])
        self.feat_extract = nn.ModuleList([
            BasicConv(3, c1, kernel_size=3),
            BasicConv(c1, c2, kernel_size=3, stride=2),
            BasicConv(c2, c3, kernel_size=3, stride=2),
            BasicConv(c3, c2, kernel_size=4, stride=2, transpose=True),
            BasicConv(c2, c1, kernel_size=4, stride=2, transpose=True),
            BasicConv(c1, 3, kernel_size=3, relu=False),
        ])
        self.Decoder = nn.ModuleList([ResStage(c, num_res, make_block) for c in (c3, c2, c1)])
        self.Convs = nn.ModuleList([BasicConv(c3, c2, kernel_size=1), BasicConv(c2, c1, kernel_size=1)])
        self.ConvsOut = nn.ModuleList([BasicConv(c3, 3, kernel_size=3, relu=False),
                                       BasicConv(c2, 3, kernel_size=3, relu=False)])
        self.FAM1 = FAM(c3)
        self.SCM1 = SCM(c3)
        self.FAM2 = FAM(c2)
        self.SCM2 = SCM(c2)

    def check_input(self, x):
        name = type(self).__name__
        check_multiple(name, x, self.pad_multiple)
        if min(x.shape[-2:]) < self.min_size:
            size = self.min_size
            raise ValueError(f'{name} needs inputs of at least {size}x{size} ({self.min_size_reason}), '
                             f'got {x.shape[-2]}x{x.shape[-1]}: set datasets.train.gt_size to {self.min_size} or more, '
                             'or pad the input.')
        if self.training and x.shape[0] < 2 and self.per_sample_batch_norm:
            raise ValueError(f'{name} trains {self.per_sample_batch_norm} over one value per sample: set '
                             'datasets.train.batch_size_per_gpu to 2 or more.')

    def forward(self, x):
        self.check_input(x)
        x_2 = F.interpolate(x, scale_factor=0.5)
        x_4 = F.interpolate(x_2, scale_factor=0.5)
        z2 = self.SCM2(x_2)
        z4 = self.SCM1(x_4)

        e1 = self.Encoder[0](self.feat_extract[0](x))
        e2 = self.Encoder[1](self.FAM2(self.feat_extract[1](e1), z2))
        e3 = self.Encoder[2](self.FAM1(self.feat_extract[2](e2), z4))

        d3 = self.Decoder[0](e3)
        out_quarter = self.ConvsOut[0](d3) + x_4
        d2 = self.Decoder[1](self.Convs[0](torch.cat([self.feat_extract[3](d3), e2], dim=1)))
        out_half = self.ConvsOut[1](d2) + x_2
        d1 = self.Decoder[2](self.Convs[1](torch.cat([self.feat_extract[4](d2), e1], dim=1)))
        out_full = self.feat_extract[5](d1) + x
        return [out_quarter, out_half, out_full]


# ---------------------------------------------------------------------------------- attention units
class SimAM(nn.Module):
    """Parameter-free energy-based attention (SimAM, Yang et al., ICML 2021).

    Every activation ``t`` of a channel is weighted by ``sigmoid(1/e*)``, where the minimal energy of
    separating it from the other activations of its channel gives the importance
    ``1/e* = (t - mu)^2 / (4 (var + e_lambda)) + 1/2``; ``mu`` and ``var`` are the channel's spatial
    mean and variance (unbiased: divisor ``H*W - 1``), per sample.
    """

    def __init__(self, e_lambda=1e-4):
        super().__init__()
        self.e_lambda = e_lambda

    def forward(self, x):
        n = x.shape[-2] * x.shape[-1] - 1
        d = (x - x.mean(dim=(2, 3), keepdim=True)).pow(2)
        importance = d / (4 * (d.sum(dim=(2, 3), keepdim=True) / n + self.e_lambda)) + 0.5
        return x * torch.sigmoid(importance)

    def extra_repr(self):
        return f'e_lambda={self.e_lambda}'
