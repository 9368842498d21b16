"""ChaIR: the two channel-attention modules on hand-checkable cases, block layout, outputs, size checks."""
import math

import pytest
import torch
import torch.nn.functional as F
from basicsr.utils.registry import ARCH_REGISTRY

import basicsr_restore  # noqa: F401  (registers the archs)
from basicsr_restore.archs.chair_arch import ChannelDynamicConv, SFConv


def test_card():
    net_cls = ARCH_REGISTRY.get('ChaIR')
    assert net_cls.card.size()[:2] == (4, 8)
    assert (net_cls.card.multi_output, net_cls.card.checkpoint_key) == (True, 'model')


def test_sfconv_softmax_is_joint_over_all_branches_and_channels():
    c = 8
    m = SFConv(c).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
        m.out.weight.copy_(torch.eye(c).view(c, c, 1, 1))  # out = identity 1x1 conv
        m.gamma.fill_(1.)
    # all logits are 0: a joint softmax gives 1/(4C) everywhere (a per-channel one would give 1/4)
    weights = m.branch_weights(torch.randn(2, c, 1, 1))
    for w in weights:
        assert torch.allclose(w, torch.full((2, c, 1, 1), 1 / (4 * c)))
    x = torch.randn(2, c, 8, 8)
    b1 = m.convll(x)
    b2 = m.convl(b1)
    b3 = m.convm(b2)
    b4 = m.convh(b3)
    assert torch.allclose(m(x), x + (b1 + b2 + b3 + b4) / (4 * c), atol=1e-6)

    # one large logit (branch "high", channel 3) takes almost all the mass of all 4C entries
    with torch.no_grad():
        m.fcs[0].bias[3] = 20.
    weights = torch.cat(m.branch_weights(torch.randn(1, c, 1, 1)), dim=1).flatten()
    assert weights.sum().item() == pytest.approx(1., abs=1e-6)
    assert weights[3].item() == pytest.approx(1 / (1 + (4 * c - 1) * math.exp(-20.)), abs=1e-6)


def test_sfconv_dimensions():
    assert SFConv(32).fc.out_channels == 32 and SFConv(64).fc.out_channels == 32
    assert SFConv(128).fc.out_channels == 64
    assert len(SFConv(32).fcs) == 4


def test_dyna_ch_tap_layout_and_channel_reflect_padding():
    c = 6
    m = ChannelDynamicConv(c).eval()
    with torch.no_grad():
        m.conv.weight.zero_()
        m.filter_bn.bias.zero_()
        m.filter_bn.bias[2 * c:] = math.atanh(0.5)  # tap 2 (the next channel) of every channel = 0.5
        m.gamma.fill_(1.)
        m.beta.fill_(0.)
    x = torch.randn(2, c, 5, 7)
    expected = 0.5 * torch.cat([x[:, 1:], x[:, c - 2:c - 1]], dim=1)  # reflect: channel C reads channel C-2
    assert torch.allclose(m(x), expected, atol=1e-6)

    with torch.no_grad():  # tap 0 (the previous channel) of channel 0 only; channel -1 reads channel 1
        m.filter_bn.bias.zero_()
        m.filter_bn.bias[0] = math.atanh(0.5)
    y = m(x)
    assert torch.allclose(y[:, 0], 0.5 * x[:, 1], atol=1e-6)
    assert torch.allclose(y[:, 1:], torch.zeros_like(y[:, 1:]))


def test_attention_modules_start_as_identity():
    x = torch.randn(2, 16, 6, 6)
    assert torch.equal(ChannelDynamicConv(16).eval()(x), x)
    assert torch.equal(SFConv(16).eval()(x), x)


def test_attention_only_in_last_block_of_each_stage():
    net = ARCH_REGISTRY.get('ChaIR')(num_res=3)
    keys = net.state_dict().keys()
    for stage in ('Encoder.0', 'Encoder.1', 'Encoder.2', 'Decoder.0', 'Decoder.1', 'Decoder.2'):
        assert f'{stage}.layers.2.dyna_ch.filter_bn.running_mean' in keys
        assert f'{stage}.layers.2.sfconv.fcs.3.weight' in keys
        assert f'{stage}.layers.0.proj.weight' in keys  # every block has the depthwise projection
        assert not any(k.startswith((f'{stage}.layers.0.dyna_ch', f'{stage}.layers.1.sfconv')) for k in keys)
    assert net.state_dict()['Decoder.0.layers.2.dyna_ch.conv.weight'].shape == (384, 128, 1, 1)


def test_three_residual_outputs_and_sizes():
    net = ARCH_REGISTRY.get('ChaIR')(num_res=1, base_channel=8).eval()
    x = torch.rand(1, 3, 36, 52)
    with torch.no_grad():
        outs = net(x)
        assert [tuple(o.shape) for o in outs] == [(1, 3, 9, 13), (1, 3, 18, 26), (1, 3, 36, 52)]
        for head in (net.ConvsOut[0], net.ConvsOut[1], net.feat_extract[5]):
            head.main[0].weight.zero_()
            head.main[0].bias.zero_()
        outs = net(x)
    x2 = F.interpolate(x, scale_factor=0.5)
    assert torch.equal(outs[0], F.interpolate(x2, scale_factor=0.5))
    assert torch.equal(outs[1], x2)
    assert torch.equal(outs[2], x)


def test_bad_size_and_batch_one_training_errors():
    net = ARCH_REGISTRY.get('ChaIR')(num_res=1, base_channel=8)
    with pytest.raises(ValueError, match='multiples of 4'):
        net.eval()(torch.rand(1, 3, 34, 52))
    with pytest.raises(ValueError, match='at least 8x8'):
        net.eval()(torch.rand(1, 3, 4, 52))
    with pytest.raises(ValueError, match='batch_size_per_gpu'):
        net.train()(torch.rand(1, 3, 32, 32))
    assert len(net.train()(torch.rand(2, 3, 32, 32))) == 3
