"""DRCNet specifics: two outputs, size rule, SimAM and RN-L on hand-checkable cases, and the RN-L
parameters that no level uses (present for the checkpoint layout, frozen, ignored by DDP)."""
import math
import os

import pytest
import torch
import torch.distributed as dist

from basicsr_restore.archs.drcnet_arch import DRCNet, RegionNorm, SimAM

NORM_KEYS = ('norm.sa.conv1.weight', 'norm.sa.gamma_conv.weight', 'norm.sa.gamma_conv.bias',
             'norm.sa.beta_conv.weight', 'norm.sa.beta_conv.bias', 'norm.rn.bn_norm.weight', 'norm.rn.bn_norm.bias')


def tiny(**kw):
    return DRCNet(**{'wf': 8, **kw})


def test_two_outputs_final_last_and_size_rule():
    assert DRCNet().size_rule[:2] == (8, 16) and DRCNet.card.multi_output and DRCNet.card.checkpoint_key == 'params'
    net = tiny().eval()
    x = torch.rand(2, 3, 16, 24)
    with torch.no_grad():
        out = net(x)
        assert isinstance(out, list) and len(out) == 2 and all(o.shape == x.shape for o in out)
        torch.nn.init.zeros_(net.last.weight)
        torch.nn.init.zeros_(net.last.bias)
        torch.nn.init.zeros_(net.sam12.conv2.weight)
        torch.nn.init.zeros_(net.sam12.conv2.bias)
        assert all(torch.equal(o, x) for o in net(x))   # both outputs are residual to the input
    with pytest.raises(ValueError, match='DRCNet needs height and width that are multiples of 8, got 16x20'):
        net(torch.rand(1, 3, 16, 20))
    with pytest.raises(ValueError, match='2 pixels at its coarsest level'):
        net(torch.rand(1, 3, 8, 8))                    # 1x1 bottom map: the official network fails
    assert net(torch.rand(1, 3, 8, 16))[1].isfinite().all()
    assert tiny(depth=3).size_rule.multiple == 4 and tiny(depth=3)(torch.rand(1, 3, 12, 12))[1].shape == (1, 3, 12, 12)
    with pytest.raises(ValueError, match='even'):
        DRCNet(wf=7)


def test_layout_norm_in_every_encoder_block_csff_only_in_stage_2():
    keys = tiny().state_dict().keys()
    for path in ('down_path_1', 'down_path_2'):
        for level in range(4):
            assert all(f'{path}.{level}.{k}' in keys for k in NORM_KEYS)
            assert (f'{path}.{level}.downsample.weight' in keys) == (level < 3)
            assert f'{path}.{level}.downsample.bias' not in keys
            assert (f'{path}.{level}.csff_enc.weight' in keys) == (path == 'down_path_2' and level < 3)
    assert not any('.att.' in k or 'up_path_1.0.conv_block.norm' in k for k in keys)
    # the official module registers the block's children in this order (so does the state dict)
    block = [k for k in keys if k.startswith('down_path_2.0.')]
    assert block[:6] == ['down_path_2.0.identity.weight', 'down_path_2.0.identity.bias', 'down_path_2.0.conv_1.weight',
                         'down_path_2.0.conv_1.bias', 'down_path_2.0.conv_2.weight', 'down_path_2.0.conv_2.bias']
    assert block[-1] == 'down_path_2.0.downsample.weight' and block[-5] == 'down_path_2.0.csff_enc.weight'


def no_grad_after_backward(net):
    out = net(torch.rand(2, 3, 16, 16))
    sum(o.mean() for o in out).backward()
    return sorted(n for n, p in net.named_parameters() if p.grad is None)


def test_default_uses_rn_everywhere_and_every_parameter_learns():
    net = tiny()
    assert all(p.requires_grad for p in net.parameters())
    assert no_grad_after_backward(net) == []


@pytest.mark.parametrize('left,right,levels', [(2, 3, (0, 1)), (3, 4, (0, 1, 2))])
def test_unused_rn_parameters_are_exactly_the_frozen_ones(left, right, levels):
    """GoPro's training (2..3) and test (3..4) options: the RN-L parameters of the other levels, in both
    stages (7 tensors per block), get no gradient; they are the frozen ones and nothing else is frozen."""
    net = tiny(hin_position_left=left, hin_position_right=right)
    expected = sorted(f'{path}.{lv}.{k}' for path in ('down_path_1', 'down_path_2') for lv in levels for k in NORM_KEYS)
    frozen = sorted(n for n, p in net.named_parameters() if not p.requires_grad)
    assert frozen == expected and len(frozen) == 14 * len(levels)
    assert no_grad_after_backward(net) == expected
    # the parameters still count and still load (official layout)
    assert sum(p.numel() for p in net.parameters()) == sum(p.numel() for p in tiny().parameters())
    net.load_state_dict(tiny().state_dict(), strict=True)


def test_ddp_trains_without_find_unused_parameters(tmp_path):
    """Without freezing, DDP fails at the second step ("Expected to have finished reduction ...")."""
    dist.init_process_group('gloo', init_method=f'file://{os.path.join(tmp_path, "store")}', rank=0, world_size=1)
    try:
        ddp = torch.nn.parallel.DistributedDataParallel(tiny(hin_position_left=2, hin_position_right=3))
        for _ in range(2):
            sum(o.mean() for o in ddp(torch.rand(1, 3, 16, 16))).backward()
    finally:
        dist.destroy_process_group()


def test_simam_by_hand():
    simam = SimAM()
    const = torch.full((1, 2, 3, 3), 0.7)                    # no deviation: importance 1/2
    assert torch.allclose(simam(const), const * torch.sigmoid(torch.tensor(0.5)))
    x = torch.tensor([[[[0., 2.]]]])                          # mu 1, (t-mu)^2 = 1, unbiased var 2/(2-1) = 2
    importance = 1 / (4 * (2 + 1e-4)) + 0.5
    assert torch.allclose(simam(x), x * torch.sigmoid(torch.tensor(importance)))


def test_region_norm_by_hand():
    """Empty mask: the full region is plain InstanceNorm; the empty one counts as 1 pixel and adds the
    (shared) InstanceNorm bias scaled by sqrt(1 / (B*h*w)). Half/half masks: each region is normalised on
    its own, its outside filled with the region mean."""
    torch.manual_seed(0)
    rn = RegionNorm(3)
    with torch.no_grad():
        rn.bn_norm.weight.uniform_(0.5, 1.5)
        rn.bn_norm.bias.uniform_(-1, 1)
    x = torch.rand(2, 3, 4, 4)
    inorm = torch.nn.functional.instance_norm(x, weight=rn.bn_norm.weight, bias=rn.bn_norm.bias, eps=1e-5)
    bias = rn.bn_norm.bias[None, :, None, None]
    assert torch.allclose(rn(x, torch.zeros(2, 1, 4, 4)), inorm + bias / math.sqrt(32), atol=1e-6)
    assert torch.allclose(rn(x, torch.ones(2, 1, 4, 4)), inorm + bias / math.sqrt(32), atol=1e-6)

    # batch 1, left half / right half: the filled outside is constant, so the region's own values are
    # standardised with its per-channel statistics over an (N/2 values of region, N/2 of its mean) map
    x = torch.rand(1, 3, 4, 4)
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2] = 1
    out = rn(x, mask)
    left = x[..., :2]
    mu = left.mean(dim=(2, 3), keepdim=True)
    var = ((left - mu) ** 2).sum(dim=(2, 3), keepdim=True) / 16   # the 8 filled values add 0
    w, b = rn.bn_norm.weight[None, :, None, None], rn.bn_norm.bias[None, :, None, None]
    own = ((left - mu) / torch.sqrt(var + 1e-5) * w + b) * math.sqrt(0.5)
    assert torch.allclose(out[..., :2] - b * math.sqrt(0.5), own, atol=1e-5)  # + the other region's filled part
