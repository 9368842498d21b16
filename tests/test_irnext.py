"""IRNeXt specifics: outputs, size rules, dynamic filter and its local mean."""
import pytest
import torch
import torch.nn.functional as F

from basicsr_restore.archs.irnext_arch import DynamicFilter, IRNeXt, local_mean


def tiny(**kw):
    return IRNeXt(num_res=1, base_channel=8, **kw)


@pytest.mark.parametrize('low_pass', ['global', 'local'])
def test_three_residual_outputs_coarse_to_fine(low_pass):
    net = tiny(low_pass=low_pass).eval()
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        outs = net(x)
    assert [tuple(o.shape[-2:]) for o in outs] == [(16, 24), (32, 48), (64, 96)]
    # residual: with the last conv of every head zeroed, each output is the (nearest) down-scaled input
    for head in (net.ConvsOut[0], net.ConvsOut[1], net.feat_extract[5]):
        torch.nn.init.zeros_(head.main[0].weight)
        torch.nn.init.zeros_(head.main[0].bias)
    with torch.no_grad():
        outs = net(x)
    assert torch.equal(outs[2], x)
    assert torch.equal(outs[1], x[..., ::2, ::2])
    assert torch.equal(outs[0], x[..., ::4, ::4])


def test_size_errors_are_clear():
    net = tiny()
    with pytest.raises(ValueError, match='multiples of 32, got 64x80.*gt_size'):
        net(torch.rand(2, 3, 64, 80))
    with pytest.raises(ValueError, match='at least 64x64'):
        net(torch.rand(2, 3, 32, 64))
    with pytest.raises(ValueError, match='batch_size_per_gpu to 2'):
        net(torch.rand(1, 3, 64, 64))


def test_dynamic_filter_is_identity_at_init_and_matches_a_direct_computation():
    torch.manual_seed(0)
    f = DynamicFilter(16).eval()
    x = torch.randn(2, 16, 9, 11)
    assert torch.allclose(f(x), x)
    for p in (f.lamb_l, f.lamb_h, f.inside_all):
        p.data.normal_()
    with torch.no_grad():
        # direct: per sample, group g = c // 2 uses kernel K[g] (taps row-major) on the reflect-padded map
        k = torch.tanh(f.bn(f.conv(x.mean((2, 3), keepdim=True)))).view(2, 8, 3, 3)
        padded = F.pad(x, (1, 1, 1, 1), mode='reflect')
        low = torch.zeros_like(x)
        for dy in range(3):
            for dx in range(3):
                low += k[:, torch.arange(16) // 2, dy, dx][..., None, None] * padded[..., dy:dy + 9, dx:dx + 11]
        ref = x.mean((2, 3), keepdim=True)
        expected = (low * (f.inside_all + 1) - f.inside_all * ref) * f.lamb_l[:, None, None] \
            + x * (f.lamb_h[:, None, None] + 1)
        assert torch.allclose(f(x), expected, atol=1e-5)


def test_local_mean_is_a_box_mean_over_valid_windows():
    x = torch.randn(1, 2, 16, 20)
    out = local_mean(x)  # kernel (16*120//256, 20*120//256) = (7, 9)
    assert out.shape == x.shape
    assert torch.allclose(out[0, :, 3, 4], x[0, :, 0:7, 0:9].mean((1, 2)), atol=1e-6)
    assert torch.allclose(out[0, :, 0, 0], out[0, :, 3, 4])  # replicate padding top/left by (16-10)//2, (20-12)//2
    # tiny maps: the window is at least 1 (the official code fails there)
    assert torch.equal(local_mean(torch.ones(1, 1, 2, 2)), torch.ones(1, 1, 2, 2))


def pooled_local_mean(x, base_size=120, train_size=256):
    """The plain formula: a stride-1 average pooling over the valid windows, replicate-padded back."""
    h, w = x.shape[-2:]
    kh, kw = max(1, h * base_size // train_size), max(1, w * base_size // train_size)
    out = F.avg_pool2d(x, (kh, kw), stride=1)
    dh, dw = h - out.shape[-2], w - out.shape[-1]
    return F.pad(out, (dw // 2, (dw + 1) // 2, dh // 2, (dh + 1) // 2), mode='replicate')


@pytest.mark.parametrize('shape', [(1, 2, 16, 20), (2, 3, 45, 80), (1, 1, 1, 1), (1, 2, 2, 3), (1, 3, 64, 33)])
def test_local_mean_from_running_sums_equals_the_pooling_formula_in_fp64(shape):
    x = torch.randn(*shape, dtype=torch.float64) + 3.0
    expected = pooled_local_mean(x)
    got = local_mean(x)
    assert got.dtype == torch.float64 and got.shape == x.shape
    assert ((got - expected).abs().max() / expected.abs().max()).item() <= 1e-10


def test_local_mean_keeps_low_precision_inputs_accurate():
    x = torch.rand(1, 2, 96, 160) + 0.5
    got = local_mean(x.bfloat16())
    assert got.dtype == torch.bfloat16
    assert (got.double() - pooled_local_mean(x.double())).abs().max().item() < 1e-2  # bf16 rounding only
