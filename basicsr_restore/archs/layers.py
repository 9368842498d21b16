"""Blocks shared by two or more networks: the MIMO-UNet skeleton of IRNeXt and ChaIR (with its conv units),
channel attention (MIRNet, EIRN) and the supervised attention module (DRCNet, EIRN).

Attribute names follow the official checkpoints (``main``, ``merge``, ``layers``, ``feat_extract`` ...),
so that released weights load without key mapping.
"""
import torch
import torch.nn.functional as F
from torch import nn


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


class MIMOUNet(nn.Module):
    """The MIMO-UNet skeleton (Cho et al., "Rethinking coarse-to-fine approach in single image deblurring",
    ICCV 2021) that IRNeXt and ChaIR fill with their own residual blocks: a three-level U-Net fed the image at
    1, 1/2 and 1/4 scale (SCM, FAM) that returns residual outputs ``[1/4, 1/2, 1]`` (coarse to fine).

    Subclasses pass ``make_block(channel, special) -> nn.Module``: the residual block of the network, with
    its special module when ``special`` is true, and carry the network card (size rule, batch rule), checked
    with clear errors before every forward.
    """

    def __init__(self, make_block, num_res, base_channel=32):
        super().__init__()
        self.size_rule = self.card.size()
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
        self.size_rule.check(name, x)
        if self.training and x.shape[0] < 2 and self.card.batch_rule:
            raise ValueError(f'{name} trains {self.card.batch_rule} over one value per sample: set '
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
class ChannelAttention(nn.Module):
    """Squeeze-and-excitation (MIRNet's DAU, EIRN's CAB): global mean, 1x1 conv C -> C/r, ReLU, 1x1 conv
    C/r -> C, sigmoid, rescale. Bias-free; keys ``conv_du.0``, ``conv_du.2``."""

    def __init__(self, channels, reduction=8):
        super().__init__()
        self.conv_du = nn.Sequential(
            nn.Conv2d(channels, channels // reduction, 1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels // reduction, channels, 1, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x):
        return x * self.conv_du(x.mean(dim=(2, 3), keepdim=True))


class SAM(nn.Module):
    """Supervised attention module of the multi-stage networks (MPRNet's; DRCNet: 3x3 convs with bias, EIRN:
    1x1 bias-free): ``img = conv2(f) + image`` is the stage's output image, ``conv1(f) * sigmoid(conv3(img)) + f``
    goes on to the next stage. Returns ``(features, img)``."""

    def __init__(self, channels, img_channels=3, kernel_size=3, bias=True):
        super().__init__()
        pad = kernel_size // 2
        self.conv1 = nn.Conv2d(channels, channels, kernel_size, padding=pad, bias=bias)
        self.conv2 = nn.Conv2d(channels, img_channels, kernel_size, padding=pad, bias=bias)
        self.conv3 = nn.Conv2d(img_channels, channels, kernel_size, padding=pad, bias=bias)

    def forward(self, feat, image):
        img = self.conv2(feat) + image
        return self.conv1(feat) * torch.sigmoid(self.conv3(img)) + feat, img
