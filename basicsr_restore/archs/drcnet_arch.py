"""DRCNet (Li et al., ECCV 2022, "Dynamic Image Restoration Contrastive Network"): HINet's two-stage
U-Net (depth 4 instead of 5) whose encoder blocks are DFR blocks: a spatial-filter branch (3x3 conv,
learnable region normalisation RN-L on half of the channels, LeakyReLU) multiplied by an energy-based
attention branch (3x3 conv on the block input, SimAM, LeakyReLU), plus a 1x1 shortcut. Stage 1 hands
its result to stage 2 through a supervised attention module (SAM) and cross-stage feature fusion (CSFF).

One official release (``leefly072/DRCNet``, no pretrained weights published): the default constructor,
18,975,798 parameters, used for deblurring (GoPro), deraining (Rain13k) and denoising (SIDD); the
recipes differ only in which levels use RN-L (``hin_position_left..right``: all levels for Rain13k and
SIDD, levels 2..3 in the GoPro training options). Outputs ``[stage1, stage2]``, the final image last.
Trained with :class:`~basicsr_restore.losses.intra_cr_loss.IntraCRLoss` on both outputs.

Every encoder block holds an RN-L module, also when its level does not use it (the official checkpoint
layout has the ``norm.*`` keys in every block). Those unused parameters never receive a gradient; they
are created with ``requires_grad=False`` here, so that DDP and the optimizer ignore them (the official
model adds ``0 * sum(params)`` to the loss instead, which leaves them unchanged too).

Checkpoints: BasicSR format ``{'params': state_dict}`` with the official key names.
"""
import torch
from torch import nn

from basicsr_restore.archs.card import NetworkCard, Preset, SizeRule, count_indexed
from basicsr_restore.archs.layers import SAM


def conv3x3(in_channels, out_channels, bias=True):
    return nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias)


# ------------------------------------------------------------------------------------------- SimAM
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


# ------------------------------------------------------------------------- learnable region normalisation
class SelfAwareAffine(nn.Module):
    """Importance map ``m = sigmoid(conv7x7(cat[mean_c x, max_c x]))`` (B,1,h,w) and the pixel-wise
    affine maps ``gamma = conv7x7(m)``, ``beta = conv7x7(m)``. Keys ``conv1``, ``gamma_conv``, ``beta_conv``."""

    def __init__(self, kernel_size=7):
        super().__init__()
        pad = kernel_size // 2
        self.conv1 = nn.Conv2d(2, 1, kernel_size, padding=pad, bias=False)
        self.gamma_conv = nn.Conv2d(1, 1, kernel_size, padding=pad)
        self.beta_conv = nn.Conv2d(1, 1, kernel_size, padding=pad)

    def forward(self, x):
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        importance = torch.sigmoid(self.conv1(pooled))
        return importance, self.gamma_conv(importance), self.beta_conv(importance)


class RegionNorm(nn.Module):
    """Normalise the region ``mask == 1`` and its complement separately and add the two results.

    For a region R with ``S`` pixels over the whole batch (1 if empty): its batch-wide per-channel mean
    ``mu`` fills the outside, the result goes through a per-sample affine InstanceNorm and is scaled by
    ``sqrt(S / (B*h*w))``. This is DRCNet's variant of Region Normalization (Yu et al., AAAI 2020), whose
    original uses an affine-free BatchNorm: with per-sample statistics the filled outside is only roughly
    zero, and as both regions share the InstanceNorm, its bias is added twice. Key ``bn_norm``.
    """

    def __init__(self, channels):
        super().__init__()
        self.bn_norm = nn.InstanceNorm2d(channels, affine=True, track_running_stats=False)

    def normalize_region(self, x, mask):
        region = x * mask
        b, _, h, w = x.shape
        count = mask.sum(dim=(0, 2, 3))
        count = torch.where(count == 0, torch.ones_like(count), count)
        mu = region.sum(dim=(0, 2, 3)) / count
        filled = region + (1 - mask) * mu[None, :, None, None]
        return self.bn_norm(filled) * torch.sqrt(count / (b * h * w))[None, :, None, None]

    def forward(self, x, mask):
        mask = mask.detach()
        return self.normalize_region(x, mask) + self.normalize_region(x, 1 - mask)


class RegionNormL(nn.Module):
    """Learnable region normalisation (RN-L): the regions are where the self-computed importance map is
    at least ``threshold`` (a hard, gradient-free mask) and the rest; the region-normalised features are
    modulated pixel-wise, ``rn(x) * (1 + gamma) + beta``. ``sa.conv1`` learns only through gamma/beta.
    Keys ``sa.*``, ``rn.bn_norm.*``.
    """

    def __init__(self, channels, threshold=0.8):
        super().__init__()
        self.sa = SelfAwareAffine()
        self.threshold = threshold
        self.rn = RegionNorm(channels)

    def forward(self, x):
        importance, gamma, beta = self.sa(x)
        mask = (importance.detach() >= self.threshold).to(x.dtype)
        return self.rn(x, mask) * (1 + gamma) + beta


# ------------------------------------------------------------------------------------------------ blocks
class DFRBlock(nn.Module):
    """Encoder block ``y = LReLU([RN-L(a1), a2]) * LReLU(SimAM(conv_2(x))) + identity(x)``, where
    ``a1, a2`` are the channel halves of ``conv_1(x)``; both 3x3 convs read the block input. Stage-2 blocks
    above the bottom add CSFF ``csff_enc(enc) + csff_dec(dec)``; blocks above the bottom return
    ``(downsample(y), y)``, the bottom one ``y``.

    Args:
        use_rn (bool): apply RN-L to the first half (otherwise the ``norm`` parameters exist for the
            checkpoint layout only and are frozen).
    """

    def __init__(self, in_size, out_size, downsample, relu_slope, use_csff=False, use_rn=False):
        super().__init__()
        self.identity = nn.Conv2d(in_size, out_size, 1)
        self.conv_1 = conv3x3(in_size, out_size)
        self.relu_1 = nn.LeakyReLU(relu_slope)
        self.conv_2 = conv3x3(in_size, out_size)
        self.att = SimAM(e_lambda=1e-4)
        self.relu_2 = nn.LeakyReLU(relu_slope)
        self.norm = RegionNormL(out_size // 2)
        self.use_csff = downsample and use_csff
        if self.use_csff:
            self.csff_enc = conv3x3(out_size, out_size)
            self.csff_dec = conv3x3(out_size, out_size)
        self.use_rn = use_rn
        if use_rn:
            # the official block builds its RN-L a second time here; doing the same keeps a seeded
            # initialisation identical to the official one (same random numbers drawn in the same order)
            self.norm = RegionNormL(out_size // 2)
        else:
            self.norm.requires_grad_(False)
        self.downsample = nn.Conv2d(out_size, out_size, 4, stride=2, padding=1, bias=False) if downsample else None

    def forward(self, x, enc=None, dec=None):
        a = self.conv_1(x)
        if self.use_rn:
            a1, a2 = torch.chunk(a, 2, dim=1)
            a = torch.cat([self.norm(a1), a2], dim=1)
        out = self.relu_1(a) * self.relu_2(self.att(self.conv_2(x))) + self.identity(x)
        if self.use_csff:
            out = out + self.csff_enc(enc) + self.csff_dec(dec)
        if self.downsample is not None:
            return self.downsample(out), out
        return out


class DecoderBlock(nn.Module):
    """HINet's plain residual block: ``LReLU(conv_2(LReLU(conv_1(x)))) + identity(x)``."""

    def __init__(self, in_size, out_size, relu_slope):
        super().__init__()
        self.identity = nn.Conv2d(in_size, out_size, 1)
        self.conv_1 = conv3x3(in_size, out_size)
        self.relu_1 = nn.LeakyReLU(relu_slope)
        self.conv_2 = conv3x3(out_size, out_size)
        self.relu_2 = nn.LeakyReLU(relu_slope)

    def forward(self, x):
        return self.relu_2(self.conv_2(self.relu_1(self.conv_1(x)))) + self.identity(x)


class UpBlock(nn.Module):
    """2x2 stride-2 transposed conv, concatenation with the skip (``bridge``), decoder block."""

    def __init__(self, in_size, out_size, relu_slope):
        super().__init__()
        self.up = nn.ConvTranspose2d(in_size, out_size, 2, stride=2)
        self.conv_block = DecoderBlock(in_size, out_size, relu_slope)

    def forward(self, x, bridge):
        return self.conv_block(torch.cat([self.up(x), bridge], dim=1))


# ----------------------------------------------------------------------------------------------- network
def read_arguments(layout):
    """The arguments a DRCNet checkpoint shows: input channels and width of the first convolution, the depth
    (levels of the first U-Net's encoder)."""
    first = layout['conv_01.weight']
    return [{'in_chn': first[1], 'wf': first[0], 'depth': count_indexed(layout, 'down_path_1.')}]


CARD = NetworkCard(
    name='DRCNet',
    paper='Li et al., "Dynamic Image Restoration Contrastive Network", ECCV 2022',
    size=lambda depth, **_: SizeRule(2 ** (depth - 1), 2 ** depth,
                                     'its coarsest level needs at least 2 pixels: on a 1x1 map RN-L\'s InstanceNorm '
                                     'fails and SimAM divides 0 by 0'),
    presets={'default': Preset({'in_chn': 3, 'wf': 64, 'depth': 4, 'relu_slope': 0.2, 'hin_position_left': 0,
                                'hin_position_right': 4}, 18_975_798, 'DRCNet.json',
                               "the authors' GoPro, SIDD and Rain13K recipes")},
    checkpoint_key='params',
    outputs=('stage 1 (SAM image)', 'final'),
    tiny={'wf': 8, 'depth': 3},
    checkpoint_blocks=('DFRBlock', 'UpBlock'),
    read_arguments=read_arguments,
    half_precision_db={'fp16': 82.7, 'bf16': 63.9},  # scripts/half_precision.py
)


class DRCNet(nn.Module):
    """DRCNet. Returns ``[out_1, out_2]``: the stage-1 image (from SAM) and the final image, both
    residual to the input.

    Args:
        in_chn (int): image channels (official 3; the official SAM only works with 3, here it follows
            ``in_chn``).
        wf (int): channels of the first level, doubled at every level (official 64; must be even).
        depth (int): levels per U-Net (official 4); H and W must be multiples of ``2**(depth-1)``.
        relu_slope (float): LeakyReLU slope (0.2).
        hin_position_left, hin_position_right (int): levels ``left <= i <= right`` use RN-L (official
            defaults 0 and 4: every level; GoPro training options 2 and 3).

    The coarsest map must have at least 2 pixels (the official network fails on a 1x1 map: RN-L's
    InstanceNorm raises, and SimAM's variance of one pixel is 0/0, NaN), so 8x8 inputs are refused;
    ``min_size`` makes inference pad them to 16.
    """
    card = CARD

    def __init__(self, in_chn=3, wf=64, depth=4, relu_slope=0.2, hin_position_left=0, hin_position_right=4):
        super().__init__()
        if depth < 1 or wf < 2 or wf % 2:
            raise ValueError(f'DRCNet: depth must be >= 1 and wf a positive even number, got depth={depth}, wf={wf}')
        self.depth = depth
        self.size_rule = self.card.size(depth=depth)
        self.down_path_1 = nn.ModuleList()
        self.down_path_2 = nn.ModuleList()
        self.conv_01 = conv3x3(in_chn, wf)
        self.conv_02 = conv3x3(in_chn, wf)

        prev = wf
        for i in range(depth):
            use_rn = hin_position_left <= i <= hin_position_right
            downsample = i + 1 < depth
            self.down_path_1.append(DFRBlock(prev, 2 ** i * wf, downsample, relu_slope, use_rn=use_rn))
            self.down_path_2.append(DFRBlock(prev, 2 ** i * wf, downsample, relu_slope, use_csff=True, use_rn=use_rn))
            prev = 2 ** i * wf

        self.up_path_1 = nn.ModuleList()
        self.up_path_2 = nn.ModuleList()
        self.skip_conv_1 = nn.ModuleList()
        self.skip_conv_2 = nn.ModuleList()
        for i in reversed(range(depth - 1)):
            self.up_path_1.append(UpBlock(prev, 2 ** i * wf, relu_slope))
            self.up_path_2.append(UpBlock(prev, 2 ** i * wf, relu_slope))
            self.skip_conv_1.append(conv3x3(2 ** i * wf, 2 ** i * wf))
            self.skip_conv_2.append(conv3x3(2 ** i * wf, 2 ** i * wf))
            prev = 2 ** i * wf
        self.sam12 = SAM(prev, in_chn, kernel_size=3, bias=True)
        self.cat12 = nn.Conv2d(prev * 2, prev, 1)
        self.last = conv3x3(prev, in_chn)

    def forward(self, x):
        multiple = self.size_rule.multiple
        self.size_rule.check('DRCNet', x, minimum=False)
        if x.shape[-2] * x.shape[-1] < 2 * multiple ** 2:
            raise ValueError(f'DRCNet needs at least 2 pixels at its coarsest level, got {x.shape[-2]}x{x.shape[-1]} '
                             f'(a 1x1 map there): use inputs larger than {multiple}x{multiple}.')
        image = x
        # stage 1: encoder skips ``encs`` (fine to coarse) and decoder outputs ``decs`` (coarse to fine)
        x1 = self.conv_01(image)
        encs, decs = [], []
        for down in self.down_path_1[:-1]:
            x1, skip = down(x1)
            encs.append(skip)
        x1 = self.down_path_1[-1](x1)
        for i, up in enumerate(self.up_path_1):
            x1 = up(x1, self.skip_conv_1[i](encs[-i - 1]))
            decs.append(x1)
        sam_feature, out_1 = self.sam12(x1, image)

        # stage 2, with cross-stage fusion of the stage-1 encoder and decoder features of each level
        x2 = self.cat12(torch.cat([self.conv_02(image), sam_feature], dim=1))
        skips = []
        for i, down in enumerate(self.down_path_2[:-1]):
            x2, skip = down(x2, encs[i], decs[-i - 1])
            skips.append(skip)
        x2 = self.down_path_2[-1](x2)
        for i, up in enumerate(self.up_path_2):
            x2 = up(x2, self.skip_conv_2[i](skips[-i - 1]))
        return [out_1, self.last(x2) + image]
