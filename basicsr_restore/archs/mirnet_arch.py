"""MIRNet (Zamir et al., ECCV 2020, "Learning Enriched Features for Real Image Restoration and
Enhancement"): a single-resolution residual network of recursive residual groups whose multi-scale
residual blocks run parallel streams at full, 1/2 and 1/4 resolution (64/128/256 channels) that exchange
information through selective-kernel fusion.

One official architecture (the default constructor, 31,787,419 parameters) serves every official task:
real denoising (SIDD/DND), real super-resolution (RealSR, low-resolution input pre-aligned to the output
size), low-light enhancement (LOL) and enhancement (MIT-Adobe FiveK). Output: ``input + prediction``.

The official module shares weights in ways that change the parameter count and the training dynamics;
they are reproduced here:

* the 2 dual attention units (DAU) of a stream in a multi-scale block are one module listed twice;
* one PReLU is shared by every DAU. Officially it is a default argument evaluated once per process, so it
  is even shared between two networks built in one process; here it is shared within one network only
  (so ``net_g`` and ``net_g_ema`` stay independent);
* the down-samplers ``'64_2'``, ``'128_2'`` and the fusion module ``selective_kernel.0`` are applied twice.

The state dict still lists every shared tensor under each of its names (797 entries, 48 of them the
``filt`` blur buffers of the anti-aliased down-samplers), exactly as the official checkpoints do.

Checkpoints: ``{'epoch', 'state_dict', 'optimizer'}``, keys possibly prefixed with ``module.``
(``param_key_g: state_dict``; BasicSR strips the prefix).
"""
import torch
from torch import nn
from torch.nn import functional as F

from basicsr_restore.archs.card import NetworkCard, Preset, SizeRule, count_indexed
from basicsr_restore.archs.layers import ChannelAttention


# ------------------------------------------------------------------------------------------ attention
class ChannelPoolConv(nn.Module):
    """Stack the channel-wise max and mean of ``x`` (in that order) and map them to one channel with a
    bias-free ``kernel_size`` conv. Key ``conv``."""

    def __init__(self, kernel_size=5):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x):
        return self.conv(torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1))


class SpatialAttention(nn.Module):
    """``x * sigmoid(conv5x5(cat[max_c x, mean_c x]))`` (no normalisation, no ReLU). Key ``spatial.conv``."""

    def __init__(self):
        super().__init__()
        self.spatial = ChannelPoolConv(5)

    def forward(self, x):
        return x * torch.sigmoid(self.spatial(x))


class DAU(nn.Module):
    """Dual attention unit: ``r = conv3x3, act, conv3x3`` (``body``), then spatial (``SA``) and channel
    (``CA``) attention on ``r`` side by side, fused by a 1x1 conv 2C->C (``conv1x1``), plus the input.

    ``act`` is the PReLU shared by every DAU of the network; it is passed in, not created here.
    """

    def __init__(self, channels, act):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            act,
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
        )
        self.SA = SpatialAttention()
        self.CA = ChannelAttention(channels, reduction=8)
        self.conv1x1 = nn.Conv2d(2 * channels, channels, 1, bias=False)

    def forward(self, x):
        r = self.body(x)
        return self.conv1x1(torch.cat([self.SA(r), self.CA(r)], dim=1)) + x


class SKFF(nn.Module):
    """Selective kernel feature fusion of ``height`` same-shaped inputs.

    ``z = PReLU(conv1x1 C->d (GAP(sum of inputs)))`` with ``d = max(C/8, 4)`` (``conv_du``); one 1x1 conv
    d->C per input (``fcs.i``); a softmax across the inputs, per channel, weights their sum.
    """

    def __init__(self, channels, height=3, reduction=8):
        super().__init__()
        d = max(int(channels / reduction), 4)
        self.conv_du = nn.Sequential(nn.Conv2d(channels, d, 1, bias=False), nn.PReLU())
        self.fcs = nn.ModuleList([nn.Conv2d(d, channels, 1, bias=False) for _ in range(height)])

    def forward(self, feats):
        feats = torch.stack(feats, dim=1)                                      # (B, height, C, H, W)
        z = self.conv_du(feats.sum(dim=1).mean(dim=(2, 3), keepdim=True))
        weights = torch.softmax(torch.stack([fc(z) for fc in self.fcs], dim=1), dim=1)
        return (feats * weights).sum(dim=1)


# ------------------------------------------------------------------------------------------- resizing
class BlurDownsample(nn.Module):
    """Anti-aliased stride-2 down-sampling (antialiased-cnns, filter size 3): reflect-pad 1, then a
    depthwise conv with the fixed binomial blur ``[1,2,1]^T [1,2,1] / 16``, kept as the persistent buffer
    ``filt`` of shape (C, 1, 3, 3) as in the official checkpoints."""

    def __init__(self, channels):
        super().__init__()
        taps = torch.tensor([1., 2., 1.])
        kernel = taps[:, None] * taps[None, :]
        self.register_buffer('filt', (kernel / kernel.sum()).expand(channels, 1, 3, 3).clone())

    def forward(self, x):
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode='reflect'), self.filt, stride=2, groups=x.shape[1])


class ResidualDownSample(nn.Module):
    """C -> 2C at half resolution: ``top`` = 1x1, PReLU, 3x3, PReLU, blur-down, 1x1 C->2C; ``bot`` =
    blur-down, 1x1 C->2C; output ``top + bot``. All convs bias-free."""

    def __init__(self, channels):
        super().__init__()
        self.top = nn.Sequential(
            nn.Conv2d(channels, channels, 1, bias=False), nn.PReLU(),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.PReLU(),
            BlurDownsample(channels),
            nn.Conv2d(channels, 2 * channels, 1, bias=False),
        )
        self.bot = nn.Sequential(BlurDownsample(channels), nn.Conv2d(channels, 2 * channels, 1, bias=False))

    def forward(self, x):
        return self.top(x) + self.bot(x)


class ResidualUpSample(nn.Module):
    """C -> C/2 at double resolution: ``top`` = 1x1, PReLU, transposed conv 3x3 stride 2, PReLU, 1x1 C->C/2;
    ``bot`` = bilinear x2 (align_corners False), 1x1 C->C/2; output ``top + bot``. All convs bias-free."""

    def __init__(self, channels):
        super().__init__()
        self.top = nn.Sequential(
            nn.Conv2d(channels, channels, 1, bias=False), nn.PReLU(),
            nn.ConvTranspose2d(channels, channels, 3, stride=2, padding=1, output_padding=1, bias=False),
            nn.PReLU(),
            nn.Conv2d(channels, channels // 2, 1, bias=False),
        )
        self.bot = nn.Sequential(nn.Upsample(scale_factor=2, mode='bilinear', align_corners=False),
                                 nn.Conv2d(channels, channels // 2, 1, bias=False))

    def forward(self, x):
        return self.top(x) + self.bot(x)


class Resample(nn.Module):
    """``steps`` residual down- (channels doubling) or up-samplings (channels halving) in a row. Key
    ``body.<step>``."""

    def __init__(self, channels, steps, down):
        super().__init__()
        blocks = []
        for _ in range(steps):
            blocks.append(ResidualDownSample(channels) if down else ResidualUpSample(channels))
            channels = channels * 2 if down else channels // 2
        self.body = nn.Sequential(*blocks)

    def forward(self, x):
        return self.body(x)


# ------------------------------------------------------------------------------------------ the body
class MSRB(nn.Module):
    """Multi-scale residual block (the paper's MRB) with ``height`` streams of ``n_feat * 2**j`` channels
    at 1/2**j resolution and ``width`` columns of DAUs.

    Containers (official keys): ``blocks[j][i]`` (the DAU of stream j, the same module in every column i);
    ``down['<C>_<s>']`` / ``up['<C>_<s>']`` (from a C-channel stream, by factor s); ``last_up['<j>']``
    (stream j back to full resolution, separate from ``up``); ``selective_kernel[j]`` (SKFF of stream j);
    ``conv_out`` (3x3).

    Forward: the first column runs the streams in a chain (stream j from ``down['<C>_2']`` of stream
    j-1). Each further column first fuses, for every stream j, all streams brought to its resolution
    (``SKFF_j``), then applies the column's DAUs. Finally every stream is brought to full resolution by
    ``last_up``, fused by ``selective_kernel[0]`` (re-used), passed through ``conv_out``, plus the input.
    """

    def __init__(self, n_feat, height, width, act, bias=False):
        super().__init__()
        self.height, self.width = height, width
        feats = [n_feat * 2 ** j for j in range(height)]
        self.blocks = nn.ModuleList([nn.ModuleList([DAU(c, act)] * width) for c in feats])
        self.last_up = nn.ModuleDict({str(j): Resample(feats[j], j, down=False) for j in range(1, height)})
        # key order as in the official ModuleDicts: per stream, the largest factor first
        self.down = nn.ModuleDict({f'{feats[j]}_{2 ** s}': Resample(feats[j], s, down=True)
                                   for j in range(height) for s in range(height - 1 - j, 0, -1)})
        self.up = nn.ModuleDict({f'{feats[j]}_{2 ** s}': Resample(feats[j], s, down=False)
                                 for j in reversed(range(height)) for s in range(j, 0, -1)})
        self.conv_out = nn.Conv2d(n_feat, n_feat, 3, padding=1, bias=bias)
        self.selective_kernel = nn.ModuleList([SKFF(c, height) for c in feats])

    def resample(self, t, src, dst):
        """Bring stream ``src``'s tensor ``t`` to the resolution and width of stream ``dst``."""
        if src == dst:
            return t
        key = f'{t.shape[1]}_{2 ** abs(src - dst)}'
        return self.up[key](t) if src > dst else self.down[key](t)

    def forward(self, x):
        streams = [self.blocks[0][0](x)]
        for j in range(1, self.height):
            streams.append(self.blocks[j][0](self.resample(streams[-1], j - 1, j)))
        for i in range(1, self.width):
            fused = [self.selective_kernel[j]([self.resample(s, k, j) for k, s in enumerate(streams)])
                     for j in range(self.height)]
            streams = [self.blocks[j][i](f) for j, f in enumerate(fused)]
        full = [streams[0]] + [self.last_up[str(j)](streams[j]) for j in range(1, self.height)]
        return self.conv_out(self.selective_kernel[0](full)) + x


class RRG(nn.Module):
    """Recursive residual group: ``n_MSRB`` MSRBs and a bias-free 3x3 conv (``body``), plus the input."""

    def __init__(self, n_feat, n_MSRB, height, width, act, bias=False):
        super().__init__()
        self.body = nn.Sequential(*[MSRB(n_feat, height, width, act, bias) for _ in range(n_MSRB)],
                                  nn.Conv2d(n_feat, n_feat, 3, padding=1, bias=False))

    def forward(self, x):
        return self.body(x) + x


def read_arguments(layout):
    """The arguments a MIRNet checkpoint shows: widths and kernel of the in/out convolutions, the number of RRGs
    and MSRBs, the MSRB's height (scales) and width (DAUs per scale), the channel growth per scale, biases."""
    conv_in, conv_out = layout['conv_in.weight'], layout['conv_out.weight']
    msrb = 'body.0.body.0.'
    kwargs = {'in_channels': conv_in[1], 'out_channels': conv_out[0], 'n_feat': conv_in[0], 'kernel_size': conv_in[2],
              'n_RRG': count_indexed(layout, 'body.'), 'n_MSRB': count_indexed(layout, 'body.0.body.') - 1,
              'height': count_indexed(layout, msrb + 'blocks.'), 'width': count_indexed(layout, msrb + 'blocks.0.'),
              'bias': 'conv_in.bias' in layout}
    if kwargs['height'] > 1:
        kwargs['stride'] = layout[msrb + 'blocks.1.0.body.0.weight'][0] // conv_in[0]
    return [kwargs, dict(kwargs, n_MSRB=kwargs['n_MSRB'] + 1)]


CARD = NetworkCard(
    name='MIRNet',
    paper='Zamir et al., "Learning enriched features for real image restoration and enhancement", ECCV 2020',
    size=lambda height, **_: SizeRule(2 ** (height - 1), 0, f'its {height} streams halve the size {height - 1} times'),
    presets={'default': Preset({'in_channels': 3, 'out_channels': 3, 'n_feat': 64, 'kernel_size': 3, 'stride': 2,
                                'n_RRG': 3, 'n_MSRB': 2, 'height': 3, 'width': 2, 'bias': False}, 31_787_419,
                               'MIRNet.json',
                               'every official task (denoising SIDD/DND, super-resolution, enhancement)')},
    checkpoint_key='state_dict',
    outputs=('full size',),
    tiny={'n_feat': 8, 'n_RRG': 1, 'n_MSRB': 1},
    checkpoint_blocks=('MSRB',),
    read_arguments=read_arguments,
    half_precision_db={'fp16': 79.4, 'bf16': 61.9},  # scripts/half_precision.py
)


class MIRNet(nn.Module):
    """MIRNet: ``conv_in``, ``n_RRG`` recursive residual groups (``body``), ``conv_out``, plus the input.

    Args (official names and defaults; every official task uses the defaults):
        in_channels, out_channels (int): image channels; equal, because of the global residual.
        n_feat (int): channels of the full-resolution stream (64); stream j has ``n_feat * 2**j``.
        kernel_size (int): kernel of ``conv_in`` and ``conv_out`` only (3).
        stride (int): channel multiplier between streams. Only 2 works in the official code (its
            down-samplers always double the channels), so other values are rejected.
        n_RRG (int), n_MSRB (int): groups, and multi-scale blocks per group (3, 2).
        height (int), width (int): streams, and DAU columns, per multi-scale block (3, 2).
        bias (bool): bias of ``conv_in``, ``conv_out`` and each MSRB's ``conv_out`` only (False); as
            officially, every other conv is bias-free regardless.
    """
    card = CARD

    def __init__(self, in_channels=3, out_channels=3, n_feat=64, kernel_size=3, stride=2, n_RRG=3, n_MSRB=2,
                 height=3, width=2, bias=False):
        super().__init__()
        if stride != 2:
            raise ValueError(f'MIRNet: stride (channel multiplier between streams) must be 2, got {stride}')
        if in_channels != out_channels:
            raise ValueError(f'MIRNet adds its input to its output: in_channels ({in_channels}) must equal '
                             f'out_channels ({out_channels})')
        self.size_rule = self.card.size(height=height)
        dau_act = nn.PReLU()  # one slope shared by every DAU; registered only inside the DAUs
        self.conv_in = nn.Conv2d(in_channels, n_feat, kernel_size, padding=(kernel_size - 1) // 2, bias=bias)
        self.body = nn.Sequential(*[RRG(n_feat, n_MSRB, height, width, dau_act, bias) for _ in range(n_RRG)])
        self.conv_out = nn.Conv2d(n_feat, out_channels, kernel_size, padding=(kernel_size - 1) // 2, bias=bias)

    def forward(self, x):
        self.size_rule.check('MIRNet', x)
        return self.conv_out(self.body(self.conv_in(x))) + x
