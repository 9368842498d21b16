"""IRNeXt (Cui et al., ICML 2023): a 3-level multi-scale U-Net whose stages end with a multi-scale
dynamic-filter module.

Two official releases, selected by ``low_pass``:

* ``'global'`` (dehazing release, default ``num_res=4``, 5,455,241 parameters): the low-pass reference
  inside each dynamic filter is the global average.
* ``'local'`` (motion-deblurring release, ``num_res=14``, 13,205,641 parameters): a local box mean whose
  window is ``base_size/train_size`` of the map it sees (TLC, base 120 of 256). The official code
  computes the window at its first call and caches it; here it is computed at every call from the
  current size, which equals the official behaviour on a fresh test process.

Checkpoints: ``{'model': state_dict}`` with the official key names (``param_key_g: model``).
"""
import torch
import torch.nn.functional as F
from torch import nn

from basicsr_restore.archs.card import NetworkCard, Preset, SizeRule
from basicsr_restore.archs.layers import BasicConv, MIMOUNet, mimo_arguments

#: ``low_pass``: the two official releases (see the module docstring)
LOW_PASS = ('global', 'local')


def box_sums(x, kh, kw):
    """Sums over every ``kh`` x ``kw`` window of ``x`` at stride 1 (the valid windows only, as
    ``avg_pool2d(x, (kh, kw), stride=1) * kh * kw``), from running sums: one cumulative sum per axis, and the
    difference of two running sums is the sum over a window. The cost is linear in the map size whatever the
    window (a pooling kernel costs ``kh * kw`` per output). Accumulated in float32 at least (float64 stays
    float64), one axis at a time so that the running sums stay small."""
    acc = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    rows = F.pad(acc.cumsum(dim=-2), (0, 0, 1, 0))
    acc = rows[..., kh:, :] - rows[..., :-kh, :]
    cols = F.pad(acc.cumsum(dim=-1), (1, 0))
    return cols[..., kw:] - cols[..., :-kw]


def local_mean(x, base_size=120, train_size=256):
    """Mean over a window of ``floor(size * base_size / train_size)`` (at least 1) per axis, at stride 1 over the
    valid windows, replicate-padded back to the input size (split as floor/ceil of the difference, top/left
    first). The window covers about 47 % of each axis, so it is computed from running sums (:func:`box_sums`)."""
    h, w = x.shape[-2:]
    kh, kw = max(1, h * base_size // train_size), max(1, w * base_size // train_size)
    out = (box_sums(x, kh, kw) / (kh * kw)).to(x.dtype)
    dh, dw = kh - 1, kw - 1
    return F.pad(out, (dw // 2, (dw + 1) // 2, dh // 2, (dh + 1) // 2), mode='replicate')


class DynamicFilter(nn.Module):
    """Content-adaptive 3x3 low-pass filter per sample and channel group, plus learned high-pass gain.

    The kernel of each of ``group`` channel groups comes from the globally pooled features (1x1 conv, BN,
    tanh). The filtered map is re-centred on a low-pass reference ``A_l(x)`` and scaled by ``lamb_l``; the
    input is added back scaled by ``1 + lamb_h``. All gains start at 0, so the module starts as identity.
    """

    def __init__(self, channels, kernel_size=3, group=8, low_pass='global', base_size=120, train_size=256):
        super().__init__()
        if channels % group:
            raise ValueError(f'DynamicFilter: channels ({channels}) must be divisible by group ({group})')
        if low_pass not in LOW_PASS:
            raise ValueError(f"IRNeXt: low_pass must be 'global' or 'local', got {low_pass!r}")
        self.kernel_size, self.group = kernel_size, group
        self.low_pass, self.base_size, self.train_size = low_pass, base_size, train_size
        self.conv = nn.Conv2d(channels, group * kernel_size ** 2, kernel_size=1, bias=False)
        self.bn = nn.BatchNorm2d(group * kernel_size ** 2)
        nn.init.kaiming_normal_(self.conv.weight, mode='fan_out', nonlinearity='relu')
        self.lamb_l = nn.Parameter(torch.zeros(channels))
        self.lamb_h = nn.Parameter(torch.zeros(channels))
        self.inside_all = nn.Parameter(torch.zeros(channels, 1, 1))

    def reference(self, x):
        if self.low_pass == 'global':
            return x.mean(dim=(2, 3), keepdim=True)
        return local_mean(x, self.base_size, self.train_size)

    def forward(self, x):
        b, c, h, w = x.shape
        k = self.kernel_size
        kernels = torch.tanh(self.bn(self.conv(x.mean(dim=(2, 3), keepdim=True))))  # (B, group*k*k, 1, 1)
        # one k x k kernel per (sample, group), shared by the c/group channels of the group: a grouped conv
        kernels = kernels.view(b, self.group, 1, k, k).expand(b, self.group, c // self.group, k, k)
        padded = F.pad(x, (k // 2,) * 4, mode='reflect').reshape(1, b * c, h + k - 1, w + k - 1)
        low = F.conv2d(padded, kernels.reshape(b * c, 1, k, k), groups=b * c).view(b, c, h, w)
        out_low = (low * (self.inside_all + 1.) - self.inside_all * self.reference(x)) * self.lamb_l[:, None, None]
        return out_low + x * (self.lamb_h[:, None, None] + 1.)


class DeepPoolLayer(nn.Module):
    """Multi-scale module: dynamic filters on 1/8, 1/4, 1/2 pooled maps, refined coarse to fine."""

    def __init__(self, channels, **filter_kwargs):
        super().__init__()
        self.scales = (8, 4, 2)
        self.convs = nn.ModuleList([nn.Conv2d(channels, channels, 3, padding=1, bias=False) for _ in self.scales])
        self.dynas = nn.ModuleList([DynamicFilter(channels, **filter_kwargs) for _ in self.scales])
        self.conv_sum = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.act = nn.GELU()

    def forward(self, x):
        size = x.shape[-2:]
        total = x
        previous = None
        for scale, conv, dyna in zip(self.scales, self.convs, self.dynas):
            y = F.avg_pool2d(x, scale, scale)
            if previous is not None:
                y = y + F.interpolate(previous, scale_factor=2, mode='bilinear', align_corners=True)
            previous = dyna(conv(y))
            total = total + F.interpolate(previous, size=size, mode='bilinear', align_corners=True)
        return self.conv_sum(self.act(total))


class ResBlock(nn.Module):
    """conv3x3-GELU, [DeepPoolLayer], conv3x3, plus the input. Keys ``main.0``, ``main.1``, ``main.2``."""

    def __init__(self, channels, special=False, **filter_kwargs):
        super().__init__()
        self.main = nn.Sequential(
            BasicConv(channels, channels, kernel_size=3),
            DeepPoolLayer(channels, **filter_kwargs) if special else nn.Identity(),
            BasicConv(channels, channels, kernel_size=3, relu=False),
        )

    def forward(self, x):
        return self.main(x) + x


CARD = NetworkCard(
    name='IRNeXt',
    paper='Cui et al., "IRNeXt: Rethinking convolutional network design for image restoration", ICML 2023',
    size=lambda **_: SizeRule(32, 64, 'its 1/32-scale maps are reflect-padded'),
    presets={
        'dehaze': Preset({}, 5_455_241, 'IRNeXt_dehaze.json', 'dehazing (ITS/OTS) release'),
        'deblur': Preset({'num_res': 14, 'low_pass': 'local'}, 13_205_641, 'IRNeXt_deblur.json',
                         'motion deblurring (GoPro) release; also the recipes for SIDD, Rain13K and DPDD'),
    },
    checkpoint_key='model',
    outputs=('1/4 scale', '1/2 scale', 'full size'),
    tiny={'num_res': 1, 'base_channel': 8},
    checkpoint_blocks=('ResBlock',),
    batch_rule='the BatchNorm of its dynamic filters',
    read_arguments=mimo_arguments,
    half_precision_db={'fp16': 81.8, 'bf16': 63.2},  # scripts/half_precision.py
)


class IRNeXt(MIMOUNet):
    """IRNeXt. Returns ``[out_1/4, out_1/2, out_full]``, each residual to the input (the mean of its RGB views
    when ``in_channels`` > 3) at its scale.

    Args:
        num_res (int): residual blocks per stage, the last with the multi-scale module. Official: 4
            (dehazing), 14 (motion deblurring).
        low_pass (str): ``'global'`` (dehazing release) or ``'local'`` (deblurring release, TLC box mean).
        base_size (int), train_size (int): window of the local box mean, ``base_size/train_size`` of the
            map size (official 120/256).
        base_channel (int): width of the first level (official 32; other values are not an official
            configuration, meant for quick experiments; must be a multiple of 8).
        in_channels (int): 3 (official) or RGB views stacked, e.g. 6 for DPDD's dual-pixel left + right views;
            what they feed and what the residuals are added to: :class:`~basicsr_restore.archs.layers.MIMOUNet`.
    """
    card = CARD
    #: what the option check and the editor schema add to the signature's types (a tuple: one of these words)
    OPTION_RULES = {'low_pass': LOW_PASS}

    def __init__(self, num_res=4, low_pass='global', base_size=120, train_size=256, base_channel=32, in_channels=3):
        filter_kwargs = dict(low_pass=low_pass, base_size=base_size, train_size=train_size)
        super().__init__(lambda ch, special: ResBlock(ch, special, **filter_kwargs), num_res, base_channel,
                         in_channels)
