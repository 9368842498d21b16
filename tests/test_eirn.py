"""EIRN-R (reconstruction): stage outputs and their order, the query-map gating, the MPRNet ablation."""
import pytest
import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

import basicsr_restore  # noqa: F401  (registers the archs)
from basicsr_restore.archs.eirn_arch import EIRN, MFFB, QKB, QueryGate

TINY = dict(EIRN.card.tiny)


def tiny(**kwargs):
    torch.manual_seed(0)
    return EIRN(**{**TINY, **kwargs}).eval()


def test_registered_and_attributes():
    assert ARCH_REGISTRY.get('EIRN') is EIRN
    assert tiny().size_rule.multiple == 8 and EIRN.card.multi_output and EIRN.card.checkpoint_key is None


@pytest.mark.parametrize('kwargs', [{}, dict(query_from='image+feat', query_channels=1),
                                    dict(qk_in_blocks=False), dict(qk_in_fusion=False)])
def test_three_full_resolution_outputs(kwargs):
    x = torch.rand(2, 3, 32, 24)
    with torch.no_grad():
        outs = tiny(**kwargs)(x)
    assert isinstance(outs, list) and len(outs) == 3
    assert all(o.shape == x.shape for o in outs)


def test_output_order_stage1_stage2_stage3():
    """Zeroing the image head of stage k makes exactly output k equal to the input: the order is [1, 2, 3]."""
    x = torch.rand(1, 3, 32, 40)
    for k, head in enumerate(('sam12.conv2', 'sam23.conv2', 'tail')):
        net = tiny()
        nn.init.zeros_(net.get_submodule(head).weight)
        with torch.no_grad():
            outs = net(x)
        assert [torch.equal(o, x) for o in outs] == [i == k for i in range(3)]


def test_bad_size_raises():
    with pytest.raises(ValueError, match='multiples of 8'):
        tiny()(torch.rand(1, 3, 32, 36))


def test_qkb_gates_each_pixel_by_its_query():
    """Query 0 -> the block is the identity at that pixel, query 1 -> x + key(x)."""
    act = nn.PReLU()
    block = QKB(4, 2, act, query_channels=1).eval()
    with torch.no_grad():
        block.qk.query.weight.copy_(torch.tensor([50.0, 0.0]).view(1, 2, 1, 1))
        x = torch.randn(1, 4, 8, 8)
        e = torch.zeros(1, 2, 8, 8)
        e[:, 0, :, :4], e[:, 0, :, 4:] = -1.0, 1.0  # left: sigmoid(-50) ~ 0, right: sigmoid(50) ~ 1
        y, key = block(x, e), block.qk.key(x)
    assert torch.allclose(y[..., :4], x[..., :4], atol=1e-6)
    assert torch.allclose(y[..., 4:], x[..., 4:] + key[..., 4:], atol=1e-6)
    assert not torch.allclose(key[..., :4], torch.zeros(()), atol=1e-3)  # so the left half really was gated off


def test_query_gate_channels_and_inputs():
    gate = QueryGate(3, 5, query_from='image+feat', query_channels=1)
    assert gate.weight.shape == (1, 8, 1, 1)
    nn.init.zeros_(gate.weight)
    assert torch.equal(gate(torch.randn(1, 3, 4, 4), torch.randn(1, 5, 4, 4)), torch.full((1, 1, 4, 4), 0.5))
    assert QueryGate(3, 5).weight.shape == (5, 3, 1, 1)


def test_mffb_gated_and_plain():
    torch.manual_seed(0)
    x, enc, dec, e = (torch.randn(1, 4, 8, 8) for _ in range(4))
    plain = MFFB(4, 4, 4, gated=False)
    assert plain.query is None
    assert torch.allclose(plain(x, enc, dec), x + plain.key_enc(enc) + plain.key_dec(dec))
    gated = MFFB(4, 4, 4, gated=True)
    nn.init.zeros_(gated.query.weight)  # query 0.5 everywhere
    assert torch.allclose(gated(x, enc, dec, e), x + 0.5 * (gated.key_enc(enc) + gated.key_dec(dec)))


def _gate_hooks(net, value):
    return [m.register_forward_hook(lambda mod, inp, out: torch.full_like(out, value))
            for m in net.modules() if isinstance(m, QueryGate)]


def _key_grads(net, x, gate_value=None):
    net.zero_grad()
    hooks = _gate_hooks(net, gate_value) if gate_value is not None else []
    sum(o.square().mean() for o in net(x)).backward()
    for h in hooks:
        h.remove()
    return {n: p.grad for n, p in net.named_parameters() if '.qk.key.' in n or '.key_enc' in n or '.key_dec' in n}


def test_zero_query_maps_switch_every_key_branch_off():
    """With every query map forced to 0, no key branch (blocks and fusion) reaches the output; with 1, all do."""
    net = tiny().train()
    x = torch.rand(1, 3, 32, 32)
    grads = _key_grads(net, x, 0.0)
    assert len(grads) > 20 and all(g is not None and not g.any() for g in grads.values())
    grads = _key_grads(net, x, 1.0)
    assert all(g is not None and g.abs().sum() > 0 for g in grads.values())


def test_query_maps_come_from_the_degraded_image():
    """The gates vary over the image and their stems (convolutions of the image) are trained."""
    net = tiny().train()
    maps = []
    hooks = [m.register_forward_hook(lambda mod, inp, out: maps.append(out)) for m in net.modules()
             if isinstance(m, QueryGate)]
    x = torch.rand(1, 3, 32, 32)
    sum(o.square().mean() for o in net(x)).backward()
    for h in hooks:
        h.remove()
    assert len(maps) == sum(isinstance(m, QueryGate) for m in net.modules())  # every gate is used, once
    assert all(m.std(dim=(2, 3)).min() > 0 for m in maps)
    for stage in (1, 2, 3):
        assert net.get_submodule(f'query_stem{stage}.scale0.0').weight.grad.abs().sum() > 0


def test_one_prelu_shared_by_the_whole_network():
    net = tiny()
    assert len({id(m) for m in net.modules() if isinstance(m, nn.PReLU)}) == 1


def test_ablation_is_mprnet():
    """Without the query-key mechanism nothing of it is built and the size is MPRNet's (derain widths)."""
    net = EIRN(n_feat=40, scale_unetfeats=20, scale_orsnetfeats=16, qk_in_blocks=False, qk_in_fusion=False)
    assert not any('query' in k for k in net.state_dict())
    assert sum(p.numel() for p in net.parameters()) == 3_637_249  # swz30/MPRNet Deraining, n_feat=40


def test_bad_options():
    with pytest.raises(ValueError, match='query_from'):
        EIRN(**TINY, query_from='feat')
    with pytest.raises(ValueError, match='query_channels'):
        EIRN(**TINY, query_channels=2)
