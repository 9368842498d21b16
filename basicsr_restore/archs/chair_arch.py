"""ChaIR (Cui & Knoll, "Exploring the potential of channel interactions for image restoration",
Knowledge-Based Systems 2023): the MIMO-UNet-lineage 3-level U-Net shared with IRNeXt, whose residual
blocks add a depthwise 3x3 conv and, in the last block of every stage, two channel-attention modules:

* ``dyna_ch`` -- channel attention in the spatial domain: a per-sample dynamic 1-D convolution along the
  channel axis (3 taps per output channel, predicted from the pooled features).
* ``sfconv`` -- implicit frequency-domain channel attention: four cascaded 3x3 convs (growing receptive
  field, from "low-low" to "high" frequency) fused by weights from a softmax taken jointly over all
  4*C logits.

Official release (``c-yn/ChaIR``, dehazing ITS and OTS, identical code): ``num_res=16``, 15,017,001
parameters; both released checkpoints load into the defaults. The motion-deblurring release uses the same
blocks; its ``num_res`` has not been seen (read it from a checkpoint as ``1 + max i`` over the keys
``Encoder.0.layers.<i>.*``).

Checkpoints: ``{'model': state_dict}`` with the official key names (``param_key_g: model``). The ``dyna_ch``
BatchNorm sees one value per sample and channel, so training needs 2 or more samples per GPU.
"""
import torch
import torch.nn.functional as F
from torch import nn

from basicsr_restore.archs.card import NetworkCard, Preset, SizeRule
from basicsr_restore.archs.layers import BasicConv, MIMOUNet, mimo_arguments


class ChannelDynamicConv(nn.Module):
    """Per-sample dynamic 1-D convolution along the channel axis (official attribute ``dyna_ch``).

    From the globally pooled input, a bias-free 1x1 conv, BatchNorm and tanh predict ``kernel`` taps for each
    of the C output channels; tap ``t`` of channel ``c`` is logit ``t*C + c``. Output channel ``c`` is the sum
    over taps of ``tap_t * x[c - kernel//2 + t]``, the channel axis being reflect-padded (``x[-1] = x[1]``,
    ``x[C] = x[C-2]``). The result is mixed back as ``y * gamma + x * beta``; gamma starts at 0 and beta at 1,
    so the module starts as the identity.
    """

    def __init__(self, channels, kernel=3):
        super().__init__()
        self.kernel = kernel
        self.conv = nn.Conv2d(channels, kernel * channels, kernel_size=1, bias=False)
        self.filter_bn = nn.BatchNorm2d(kernel * channels)
        self.gamma = nn.Parameter(torch.zeros(channels, 1, 1))
        self.beta = nn.Parameter(torch.ones(channels, 1, 1))

    def forward(self, x):
        b, c, h, w = x.shape
        taps = torch.tanh(self.filter_bn(self.conv(x.mean(dim=(2, 3), keepdim=True))))  # (B, k*C, 1, 1)
        taps = taps.view(b, self.kernel, c, 1, 1)
        # reflect-pad the channel axis: treat channels as the last axis of a (B, H*W, C) sequence
        pad = self.kernel // 2
        padded = F.pad(x.reshape(b, c, h * w).transpose(1, 2), (pad, pad), mode='reflect')
        padded = padded.transpose(1, 2).reshape(b, c + 2 * pad, h, w)
        y = sum(taps[:, t] * padded[:, t:t + c] for t in range(self.kernel))
        return y * self.gamma + x * self.beta


class SFConv(nn.Module):
    """Implicit frequency-domain channel attention (official attribute ``sfconv``).

    Four 3x3 conv + GELU applied in cascade, ``b1 = convll(x)``, ``b2 = convl(b1)``, ``b3 = convm(b2)``,
    ``b4 = convh(b3)``. Their summed global average goes through ``fc`` (C -> d, no activation,
    ``d = max(C // reduction, min_dim)``) and the four heads ``fcs`` (d -> C, order high, middle, low,
    low-low). The softmax is taken over the concatenated 4*C logits **jointly** (not per channel across the
    four branches, as in SKNet): the weights of all branches and channels sum to 1 per sample. The fused map
    ``b4*a_h + b3*a_m + b2*a_l + b1*a_ll`` goes through a 1x1 conv, is scaled by ``gamma`` (starts at 0, so
    the module starts as the identity) and added to the input.
    """

    def __init__(self, channels, reduction=2, min_dim=32):
        super().__init__()
        d = max(int(channels / reduction), min_dim)

        def conv3x3_gelu():
            return nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.GELU())

        self.convh = conv3x3_gelu()
        self.convm = conv3x3_gelu()
        self.convl = conv3x3_gelu()
        self.convll = conv3x3_gelu()
        self.fc = nn.Conv2d(channels, d, 1)
        self.fcs = nn.ModuleList([nn.Conv2d(d, channels, 1) for _ in range(4)])
        self.out = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def branch_weights(self, pooled):
        """Weights (high, middle, low, low-low), each (B, C, 1, 1), from the pooled sum of the branches."""
        z = self.fc(pooled)
        logits = torch.cat([fc(z) for fc in self.fcs], dim=1)  # (B, 4C, 1, 1)
        return torch.softmax(logits, dim=1).chunk(4, dim=1)

    def forward(self, x):
        lowlow = self.convll(x)
        low = self.convl(lowlow)
        middle = self.convm(low)
        high = self.convh(middle)
        a_high, a_middle, a_low, a_lowlow = self.branch_weights(
            (lowlow + low + middle + high).mean(dim=(2, 3), keepdim=True))
        fused = high * a_high + middle * a_middle + low * a_low + lowlow * a_lowlow
        return self.out(fused) * self.gamma + x


class ResBlock(nn.Module):
    """conv3x3-GELU, depthwise conv3x3-GELU, [dyna_ch, sfconv], conv3x3, plus the input.

    The attention modules exist only when ``special`` is true (the last block of a stage); otherwise they
    are identities without parameters.
    """

    def __init__(self, channels, special=False):
        super().__init__()
        self.conv1 = BasicConv(channels, channels, kernel_size=3)
        self.conv2 = BasicConv(channels, channels, kernel_size=3, relu=False)
        self.dyna_ch = ChannelDynamicConv(channels) if special else nn.Identity()
        self.sfconv = SFConv(channels) if special else nn.Identity()
        self.proj = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
        self.proj_act = nn.GELU()

    def forward(self, x):
        out = self.proj_act(self.proj(self.conv1(x)))
        out = self.sfconv(self.dyna_ch(out))
        return self.conv2(out) + x


CARD = NetworkCard(
    name='ChaIR',
    paper='Cui & Knoll, "Exploring the potential of channel interactions for image restoration", '
          'Knowledge-Based Systems 2023',
    size=lambda **_: SizeRule(4, 8, 'the InstanceNorm of SCM1 needs more than one pixel at 1/4 scale'),
    presets={'dehaze': Preset({}, 15_017_001, 'ChaIR.json', 'dehazing ITS and OTS releases (one configuration)')},
    checkpoint_key='model',
    outputs=('1/4 scale', '1/2 scale', 'full size'),
    tiny={'num_res': 1, 'base_channel': 8},
    checkpoint_blocks=('ResBlock',),
    batch_rule='the BatchNorm of its channel attention (dyna_ch)',
    read_arguments=mimo_arguments,
    half_precision_db={'fp16': 76.4, 'bf16': 58.1},  # scripts/half_precision.py
)


class ChaIR(MIMOUNet):
    """ChaIR. Returns ``[out_1/4, out_1/2, out_full]``, each residual to the (nearest-downsampled) input (the
    mean of its RGB views when ``in_channels`` > 3) at its scale; inference uses the last.

    Args:
        num_res (int): residual blocks per stage, the last with ``dyna_ch`` and ``sfconv``. Official: 16
            (dehazing ITS/OTS release).
        base_channel (int): width of the first level (official 32; other values are not an official
            configuration, meant for quick experiments).
        in_channels (int): 3 (official) or RGB views stacked, e.g. 6 for DPDD's dual-pixel left + right views;
            what they feed and what the residuals are added to: :class:`~basicsr_restore.archs.layers.MIMOUNet`.
    """
    card = CARD

    def __init__(self, num_res=16, base_channel=32, in_channels=3):
        super().__init__(ResBlock, num_res, base_channel, in_channels)
