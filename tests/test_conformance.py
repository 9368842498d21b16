"""One suite over the registries (timm's habit): every registered network and preset, every loss, every dataset
of this package passes the same checks. A network, loss or dataset added to the registries is tested here
without editing this file (``test_toy_network.py`` proves it with a toy network)."""
import inspect
import os
import sys

import cv2
import numpy as np
import pytest
import torch
from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY

import basicsr_restore  # noqa: F401
from basicsr_restore.archs.card import constructor_arguments, layout, load_manifest, size_rule
from basicsr_restore.core.inference import final_output, restore_any_size
from basicsr_restore.core.registry import OURS

NETWORKS = list(OURS['arch'])
PRESETS = [(name, preset) for name in NETWORKS for preset in ARCH_REGISTRY.get(name).card.presets]
LOSSES = list(OURS['loss'])
DATASETS = list(OURS['dataset'])


def tiny(name, seed=0):
    torch.manual_seed(seed)
    cls = ARCH_REGISTRY.get(name)
    return cls(**cls.card.tiny)


def smallest_size(net):
    """The smallest square side the network takes: a multiple of its rule, at least its minimum, at least 16."""
    rule = size_rule(net)
    side = max(rule.min_size, 16, rule.multiple)
    return -(-side // rule.multiple) * rule.multiple


# -------------------------------------------------------------------------------------------- networks
@pytest.mark.parametrize('name', NETWORKS)
def test_card_is_complete(name):
    cls = ARCH_REGISTRY.get(name)
    card = cls.card
    assert card.name == name and card.paper and card.outputs and card.presets
    net = tiny(name)
    assert size_rule(net).multiple >= 1 and size_rule(net) == card.size(**constructor_arguments(cls, card.tiny))
    module = sys.modules[cls.__module__]
    assert all(isinstance(getattr(module, block, None), type) for block in card.checkpoint_blocks)
    if card.checkpoint_blocks:
        assert {type(m).__name__ for m in net.modules()} & set(card.checkpoint_blocks), 'no block to checkpoint'
    for preset in card.presets.values():
        assert preset.params > 0 and preset.manifest.endswith('.json')


@pytest.mark.parametrize('name,preset', PRESETS, ids=[f'{n}-{p}' for n, p in PRESETS])
def test_preset_parameters_keys_and_shapes_equal_the_manifest(name, preset):
    cls = ARCH_REGISTRY.get(name)
    card, manifest = cls.card, load_manifest(cls, preset)
    net = cls(**card.preset(preset).kwargs)
    assert manifest['network'] == name and manifest['checkpoint_key'] == card.checkpoint_key
    assert constructor_arguments(cls, manifest['arch_kwargs']) == constructor_arguments(cls, card.preset(preset).kwargs)
    count = sum(p.numel() for p in net.parameters())
    assert count == manifest['param_count'] == card.preset(preset).params
    ours, expected = layout(net.state_dict()), manifest['state_dict']
    assert sorted(set(expected) - set(ours)) == [], 'keys of the official layout missing here'
    assert sorted(set(ours) - set(expected)) == [], 'keys here that the official layout lacks'
    assert {k: v for k, v in ours.items() if expected[k] != v} == {}, 'shapes differ'


@pytest.mark.parametrize('name', NETWORKS)
def test_outputs_are_as_the_card_says_and_odd_sizes_restore(name):
    net = tiny(name).eval()
    side = smallest_size(net)
    with torch.no_grad():
        out = net(torch.rand(1, 3, side, side))
        outputs = out if isinstance(out, (list, tuple)) else [out]
        assert len(outputs) == len(net.card.outputs)
        assert final_output(out).shape == (1, 3, side, side)
        for h, w in ((37, 53), (side + 1, side + 3)):
            x = torch.rand(1, 3, h, w)
            restored = restore_any_size(net, x)
            assert restored.shape == x.shape and torch.isfinite(restored).all()


@pytest.mark.parametrize('name', NETWORKS)
def test_size_rule_errors_name_the_rule(name):
    net = tiny(name).eval()
    rule, side = size_rule(net), smallest_size(net)
    with torch.no_grad():
        if rule.multiple > 1:
            with pytest.raises(ValueError, match=f'multiples of {rule.multiple}'):
                net(torch.rand(1, 3, side + 1, side))
        if rule.min_size > rule.multiple:
            small = rule.multiple * max(1, (rule.min_size - 1) // rule.multiple)
            with pytest.raises(ValueError, match=name):
                net(torch.rand(1, 3, small, small))


@pytest.mark.parametrize('name', NETWORKS)
def test_training_gives_finite_gradients_and_eval_is_deterministic(name):
    net = tiny(name).train()
    side = smallest_size(net)
    x, gt = torch.rand(2, 3, side, side), torch.rand(2, 3, side, side)
    outputs = net(x)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    loss = sum((o - torch.nn.functional.interpolate(gt, size=o.shape[-2:])).abs().mean() for o in outputs)
    loss.backward()
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    net.eval()
    assert not any(m.training for m in net.modules())
    with torch.no_grad():
        y = torch.rand(1, 3, side, side)
        assert torch.equal(final_output(net(y)), final_output(net(y)))


# ---------------------------------------------------------------------------------------------- losses
def build_loss(name, **options):
    cls = LOSS_REGISTRY.get(name)
    torch.manual_seed(0)  # a loss with random parts (an untrained VGG) is the same loss every time
    return cls(**{**getattr(cls, 'example_options', {}), **options})


def call(loss, pred, target, lq):
    return loss(pred, target, lq) if getattr(loss, 'needs_lq', False) else loss(pred, target)


def images(seed=0, size=32):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(2, 3, size, size, generator=g) for _ in range(3)]


@pytest.mark.parametrize('name', LOSSES)
def test_loss_weight_scales_and_reductions_are_checked(name):
    pred, target, lq = images()
    one = call(build_loss(name, loss_weight=1.0), pred, target, lq)
    two = call(build_loss(name, loss_weight=2.0), pred, target, lq)
    assert one.dim() == 0 and torch.isfinite(one) and one.item() != 0
    assert torch.allclose(two, 2 * one, rtol=1e-5)
    if 'reduction' in inspect.signature(LOSS_REGISTRY.get(name).__init__).parameters:
        with pytest.raises(ValueError, match='reduction'):
            build_loss(name, reduction='median')


@pytest.mark.parametrize('name', LOSSES)
def test_loss_gradient_reaches_only_the_prediction(name):
    """The prediction gets a finite gradient; nothing of the loss itself (a VGG, a kernel) is trained."""
    pred, target, lq = images(1)
    pred.requires_grad_()
    loss = build_loss(name)
    call(loss, pred, target, lq).backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    assert [n for n, p in loss.named_parameters() if p.requires_grad or p.grad is not None] == []


@pytest.mark.parametrize('name', LOSSES)
def test_loss_is_float32_under_autocast(name):
    pred, target, lq = images(2, size=16)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        value = call(build_loss(name), pred.bfloat16(), target, lq)
    assert value.dtype == torch.float32 and torch.isfinite(value)


# -------------------------------------------------------------------------------------------- datasets
def dataroots(name):
    return sorted(k for k in DATASET_REGISTRY.get(name).OPTION_KEYS if k.startswith('dataroot_'))


def folders(tmp_path, name, size=(40, 48), count=2):
    """One folder of aligned 8-bit images per dataroot of the dataset; returns the options."""
    opt = {'name': 'conformance', 'phase': 'val', 'type': name}
    rng = np.random.default_rng(0)
    for key in dataroots(name):
        folder = tmp_path / key
        folder.mkdir()
        for i in range(count):
            cv2.imwrite(str(folder / f'img{i}.png'), rng.integers(0, 256, (*size, 3), dtype=np.uint8))
        opt[key] = str(folder)
    return opt


@pytest.mark.parametrize('name', DATASETS)
def test_dataset_reads_its_folders(name, tmp_path):
    ds = DATASET_REGISTRY.get(name)(folders(tmp_path, name))
    sample = ds[0]
    assert len(ds) == 2 and sample['gt'].shape == (3, 40, 48) and sample['lq'].shape[-2:] == (40, 48)
    assert sample['gt'].dtype == torch.float32 and 0 <= sample['gt'].min() and sample['gt'].max() <= 1


@pytest.mark.parametrize('name', DATASETS)
def test_dataset_bad_input_matrix(name, tmp_path):
    """Every kind of bad input gets one error that names the option or the file."""
    cls = DATASET_REGISTRY.get(name)
    good = folders(tmp_path, name)
    for key in dataroots(name):
        with pytest.raises(ValueError, match=key):
            cls({k: v for k, v in good.items() if k != key})
        with pytest.raises(FileNotFoundError, match='nowhere'):
            cls({**good, key: str(tmp_path / 'nowhere')})
    with pytest.raises(ValueError, match='bit_depth'):
        cls({**good, 'bit_depth': 12})
    with pytest.raises(ValueError, match='gt_size'):
        cls({**good, 'phase': 'train'})
    with pytest.raises(ValueError, match='gt_size 64'):
        cls({**good, 'phase': 'train', 'gt_size': 64})[0]
    with pytest.raises(ValueError, match='channels'):
        cls({**good, 'channels': 1})[0]
    last = dataroots(name)[0]  # the targets: every degraded image needs its own
    os.remove(os.path.join(good[last], 'img1.png'))
    with pytest.raises(FileNotFoundError, match='img1'):
        cls(good)
    with open(os.path.join(good[last], 'img1.png'), 'wb') as f:
        f.write(b'not a png')
    with pytest.raises(ValueError, match='img1'):
        cls(good)[1]
