"""Blocks shared by two or more networks: the MIMO-UNet skeleton of IRNeXt and ChaIR (with its conv units),
channel attention (MIRNet, EIRN) and the supervised attention module (DRCNet, EIRN).

Attribute names follow the official checkpoints (``main``, ``merge``, ``layers``, ``feat_extract`` ...),
so that released weights load without key mapping.
"""
import torch
import torch.nn.functional as F
from torch import nn

from basicsr_restore.archs.card import count_indexed


# -------------------------------------------------------------------------- input images and their views
def check_in_channels(name, in_channels):
    """``in_channels`` of a network whose output is one RGB image: 3, or a multiple of 3 (RGB views stacked along
    the channel axis, e.g. 6 for DPDD's left and right dual-pixel views); a clear error otherwise."""
    if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 3 or in_channels % 3:
        raise ValueError(f'{name}: in_channels must be 3 (one RGB image) or a multiple of 3 (RGB views stacked along '
                         f"the channels, e.g. 6 for DPDD's left and right dual-pixel views), got {in_channels!r}")
    return in_channels


def check_input_channels(name, x, in_channels):
    """A clear error naming ``network_g.in_channels`` when ``x`` has another number of channels."""
    if x.dim() != 4 or x.shape[1] != in_channels:
        got = f'{x.shape[1]} channels' if x.dim() == 4 else f'shape {tuple(x.shape)}'
        hint = (" (DualPixelDefocusDataset stacks DPDD's left and right views: use a *_dual.yml recipe)"
                if x.dim() == 4 and x.shape[1] == 6 else '')
        raise ValueError(f'{name} was built for (N, {in_channels}, H, W) inputs (network_g.in_channels: '
                         f'{in_channels}), got {got}: set network_g.in_channels to the channels of the '
                         f'input{hint}.')


def mean_of_views(x):
    """The RGB image a global residual is added to: ``x`` itself when it has 3 channels, else the mean of the
    RGB views stacked along its channels (for DPDD's dual-pixel views, the mean of left and right: about the
    combined image of the single-image setting, aligned with the all-in-focus target where the two views are
    shifted apart by defocus)."""
    b, c, h, w = x.shape
    if c == 3:
        return x
    return x.reshape(b, c // 3, 3, h, w).mean(dim=1)


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
    """Shallow convolutional module: features of the down-scaled input image (all its channels) for one coarse
    level."""

    def __init__(self, out_plane, in_channels=3):
        super().__init__()
        self.main = nn.Sequential(
            BasicConv(in_channels, out_plane // 4, kernel_size=3),
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


def mimo_arguments(layout):
    """The arguments a MIMO-UNet checkpoint shows: ``num_res`` (blocks per stage), ``base_channel`` (the first
    convolution's width) and, where it is not 3, ``in_channels``."""
    first = layout['feat_extract.0.main.0.weight']
    kwargs = {'num_res': count_indexed(layout, 'Encoder.0.layers.'), 'base_channel': first[0]}
    if first[1] != 3:
        kwargs['in_channels'] = first[1]
    return [kwargs]


class MIMOUNet(nn.Module):
    """The MIMO-UNet skeleton (Cho et al., "Rethinking coarse-to-fine approach in single image deblurring",
    ICCV 2021) that IRNeXt and ChaIR fill with their own residual blocks: a three-level U-Net fed the image at
    1, 1/2 and 1/4 scale (SCM, FAM) that returns residual outputs ``[1/4, 1/2, 1]`` (coarse to fine).

    Subclasses pass ``make_block(channel, special) -> nn.Module``: the residual block of the network, with
    its special module when ``special`` is true, and carry the network card (size rule, batch rule), checked
    with clear errors before every forward.

    ``in_channels`` (3, or a multiple of 3: RGB views stacked, e.g. 6 for DPDD's dual-pixel left + right) is
    what the first conv (``feat_extract.0``) and the coarse-level modules (``SCM1``, ``SCM2``) see; the outputs
    are RGB and each is residual to :func:`mean_of_views` of the input at its scale (the input itself for 3).
    """

    def __init__(self, make_block, num_res, base_channel=32, in_channels=3):
        super().__init__()
        self.size_rule = self.card.size()
        self.in_channels = check_in_channels(type(self).__name__, in_channels)
        c1, c2, c3 = base_channel, base_channel * 2, base_channel * 4
        self.Encoder = nn.ModuleList([ResStage(c, num_res, make_block) for c in (c1, c2, c3)])
        self.feat_extract = nn.ModuleList([
            BasicConv(in_channels, c1, kernel_size=3),
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
        self.SCM1 = SCM(c3, in_channels)
        self.FAM2 = FAM(c2)
        self.SCM2 = SCM(c2, in_channels)

    def check_input(self, x):
        name = type(self).__name__
        check_input_channels(name, x, self.in_channels)
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
        out_quarter = self.ConvsOut[0](d3) + mean_of_views(x_4)
        d2 = self.Decoder[1](self.Convs[0](torch.cat([self.feat_extract[3](d3), e2], dim=1)))
        out_half = self.ConvsOut[1](d2) + mean_of_views(x_2)
        d1 = self.Decoder[2](self.Convs[1](torch.cat([self.feat_extract[4](d2), e1], dim=1)))
        out_full = self.feat_extract[5](d1) + mean_of_views(x)
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
