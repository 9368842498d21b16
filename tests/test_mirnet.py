"""MIRNet specifics: the official weight sharing, blur buffers, single residual output, size rules."""
import pytest
import torch
import torch.nn.functional as F

from basicsr_restore.archs.mirnet_arch import DAU, SKFF, BlurDownsample, MIRNet


def tiny(**kw):
    return MIRNet(**{'n_feat': 8, 'n_RRG': 2, 'n_MSRB': 2, **kw})


def test_shared_modules_are_the_same_objects():
    net = tiny()
    msrbs = [m for m in net.modules() if type(m).__name__ == 'MSRB']
    assert len(msrbs) == 4
    for msrb in msrbs:
        for stream in msrb.blocks:                     # the 2 columns of a stream are one DAU
            assert len(stream) == 2 and stream[0] is stream[1]
        assert msrb.blocks[0][0] is not msrb.blocks[1][0]
        assert list(msrb.down) == ['8_4', '8_2', '16_2'] and list(msrb.up) == ['32_4', '32_2', '16_2']
        assert list(msrb.last_up) == ['1', '2']
    daus = {id(m): m for m in net.modules() if isinstance(m, DAU)}
    assert len(daus) == 4 * 3                          # unique DAUs: 2 RRG x 2 MSRB x 3 streams
    acts = {id(d.body[1]) for d in daus.values()}
    assert len(acts) == 1                              # one PReLU for every DAU of the network
    # ... but not across networks (the official default-argument PReLU would be process-wide)
    assert tiny().body[0].body[0].blocks[0][0].body[1] is not next(iter(daus.values())).body[1]


def test_state_dict_lists_shared_tensors_under_every_name():
    net = tiny()
    sd = net.state_dict()
    unique = {p.data_ptr() for p in net.parameters()}
    assert len(list(net.parameters())) == len(unique)
    pre = 'body.0.body.1.blocks.2.'
    assert sd[pre + '0.body.0.weight'].data_ptr() == sd[pre + '1.body.0.weight'].data_ptr()
    assert sd['body.0.body.0.blocks.0.0.body.1.weight'].data_ptr() == \
        sd['body.1.body.1.blocks.2.1.body.1.weight'].data_ptr()
    # unique parameters: every state_dict entry counted once per tensor, without the blur buffers
    dedup = {v.data_ptr(): v.numel() for k, v in sd.items() if not k.endswith('filt')}
    assert sum(p.numel() for p in net.parameters()) == sum(dedup.values())
    assert not any(k.endswith('bias') for k in sd)


def test_blur_filters_are_persistent_binomial_buffers():
    net = tiny()
    sd = net.state_dict()
    filts = [k for k in sd if k.endswith('.filt')]
    assert len(filts) == 4 * 8                         # per MSRB: 4 down steps, each top.4 and bot.0
    assert 'body.0.body.0.down.8_4.body.1.top.4.filt' in filts
    assert 'body.0.body.0.down.16_2.body.0.bot.0.filt' in filts
    assert sd['body.0.body.0.down.8_4.body.1.bot.0.filt'].shape == (16, 1, 3, 3)
    expected = torch.tensor([[1., 2., 1.], [2., 4., 2.], [1., 2., 1.]]) / 16
    assert all(torch.equal(sd[k][c, 0], expected) for k in filts for c in range(sd[k].shape[0]))
    assert not any(k in dict(net.named_parameters()) for k in filts)


def test_blur_downsample_uses_reflection_and_its_buffer():
    blur = BlurDownsample(2)
    x = torch.rand(1, 2, 6, 8)
    padded = F.pad(x, (1, 1, 1, 1), mode='reflect')
    k = blur.filt[0, 0]
    expected = sum(k[dy, dx] * padded[..., dy:dy + 6:2, dx:dx + 8:2] for dy in range(3) for dx in range(3))
    assert torch.allclose(blur(x), expected, atol=1e-6)
    blur.filt.zero_()
    assert torch.equal(blur(x), torch.zeros(1, 2, 3, 4))


def test_skff_softmax_is_over_the_inputs_per_channel():
    torch.manual_seed(0)
    skff = SKFF(8, height=3)
    feats = [torch.rand(2, 8, 4, 4) for _ in range(3)]
    with torch.no_grad():
        for fc in skff.fcs:
            fc.weight.zero_()                          # equal logits -> plain mean of the inputs
        assert torch.allclose(skff(feats), sum(feats) / 3, atol=1e-6)


def test_single_residual_output_and_size_rules():
    net = tiny().eval()
    x = torch.rand(1, 3, 12, 20)
    with torch.no_grad():
        out = net(x)
        assert torch.is_tensor(out) and out.shape == x.shape
        torch.nn.init.zeros_(net.conv_out.weight)
        assert torch.equal(net(x), x)
    assert net.size_rule.multiple == 4 and not MIRNet.card.multi_output and MIRNet.card.checkpoint_key == 'state_dict'
    with pytest.raises(ValueError, match='multiples of 4, got 12x18'):
        net(torch.rand(1, 3, 12, 18))
    assert MIRNet(n_feat=8, n_RRG=1, n_MSRB=1, height=4).size_rule.multiple == 8
    with pytest.raises(ValueError, match='stride'):
        MIRNet(stride=3)


def test_shared_prelu_receives_the_gradient_of_every_dau():
    net = MIRNet(n_feat=8, n_RRG=1, n_MSRB=2)
    net(torch.rand(1, 3, 8, 8)).mean().backward()
    prelu = net.body[0].body[0].blocks[0][0].body[1]
    assert prelu.weight.grad is not None
    grads = [p.grad for n, p in net.named_parameters() if n.endswith('body.1.weight') and 'blocks' in n]
    assert len(grads) == 1                             # named_parameters lists it once
