"""DPDD's dual-pixel setting: networks built with ``in_channels: 6`` take the left + right views that
``DualPixelDefocusDataset`` stacks and restore one RGB image, residual to the mean of the two views; with the
default ``in_channels: 3`` they are the official configurations, key for key. The ``*_dual.yml`` recipes train
through the stock ``python -m basicsr.train`` on the miniature prepared DPDD of tests/test_prepare_dpdd.py."""
import glob
import os
import re

import pytest
import torch
import torch.nn.functional as F
from basicsr.utils.registry import ARCH_REGISTRY
from conftest import ROOT, run
from test_options import data_overrides, load, logs, tiny_overrides
from test_prepare_dpdd import prepared_dpdd

from basicsr_restore.archs.card import layout, load_manifest, size_rule  # importing the package registers the nets
from basicsr_restore.core.inference import final_output, restore_any_size

NETWORKS = ['IRNeXt', 'ChaIR', 'EIRN']  # the networks that got in_channels (MIRNet and DRCNet had theirs)
#: the layers whose input is the image: the only ones whose shapes in_channels changes
FIRST_CONVS = {
    'IRNeXt': ('feat_extract.0.main.0.weight', 'SCM1.main.0.main.0.weight', 'SCM2.main.0.main.0.weight'),
    'ChaIR': ('feat_extract.0.main.0.weight', 'SCM1.main.0.main.0.weight', 'SCM2.main.0.main.0.weight'),
    'EIRN': tuple(f'shallow_feat{i}.0.weight' for i in (1, 2, 3)) + tuple(
        f'query_stem{s}.scale{i}.0.weight' for s in (1, 2) for i in range(3)) + ('query_stem3.scale0.0.weight',),
}
#: the layers that produce the residuals added to the image (zeroed, every output is the image itself)
RESIDUAL_HEADS = {
    'IRNeXt': ('feat_extract.5', 'ConvsOut.0', 'ConvsOut.1'),
    'ChaIR': ('feat_extract.5', 'ConvsOut.0', 'ConvsOut.1'),
    'EIRN': ('tail', 'sam12.conv2', 'sam23.conv2'),
}
DUAL_RECIPES = sorted(glob.glob(os.path.join(ROOT, 'options', 'train', 'DPDD', '*_dual.yml')))


def tiny(name, in_channels, seed=0):
    torch.manual_seed(seed)
    cls = ARCH_REGISTRY.get(name)
    return cls(**cls.card.tiny, in_channels=in_channels)


def side(net):
    return size_rule(net).fit(32)


def mean_of_views(x):
    return (x[:, :3] + x[:, 3:]) / 2


@pytest.mark.parametrize('name', NETWORKS)
def test_six_channels_in_one_rgb_image_out(name):
    net = tiny(name, 6).eval()
    s = side(net)
    x = torch.rand(1, 6, s, s, requires_grad=True)
    outputs = net(x)
    assert len(outputs) == len(net.card.outputs)
    assert all(o.shape[:2] == (1, 3) for o in outputs) and final_output(outputs).shape == (1, 3, s, s)
    sum(o.abs().mean() for o in outputs).backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)
    assert x.grad[:, :3].abs().sum() > 0 and x.grad[:, 3:].abs().sum() > 0, 'both views reach the outputs'
    with torch.no_grad():
        odd = torch.rand(1, 6, s + 1, s + 3)
        assert restore_any_size(net, odd).shape == (1, 3, s + 1, s + 3)


@pytest.mark.parametrize('name', NETWORKS)
def test_every_output_is_residual_to_the_mean_of_the_views(name):
    """With the residual heads zeroed, each output is the mean of left and right at its scale."""
    net = tiny(name, 6).eval()
    modules = dict(net.named_modules())
    with torch.no_grad():
        for head in RESIDUAL_HEADS[name]:
            for p in modules[head].parameters():
                p.zero_()
        s = side(net)
        x = torch.rand(1, 6, s, s)
        base = mean_of_views(x)
        for out in net(x):
            expected = F.interpolate(base, size=out.shape[-2:], mode='nearest')  # MIMO-UNet's coarse inputs
            assert torch.allclose(out, expected, atol=1e-6)


@pytest.mark.parametrize('name', NETWORKS)
def test_three_channels_keep_the_official_layout_and_six_widen_only_the_first_convs(name):
    cls = ARCH_REGISTRY.get(name)
    preset_name, preset = next(iter(cls.card.presets.items()))
    manifest = load_manifest(cls, preset_name)
    three = cls(**preset.kwargs, in_channels=3)
    assert sum(p.numel() for p in three.parameters()) == preset.params == manifest['param_count']
    assert layout(three.state_dict()) == manifest['state_dict']
    six = layout(cls(**preset.kwargs, in_channels=6).state_dict())
    assert list(six) == list(layout(three.state_dict())), 'same keys, in the same order'
    changed = {k: (manifest['state_dict'][k], v) for k, v in six.items() if manifest['state_dict'][k] != v}
    assert sorted(changed) == sorted(FIRST_CONVS[name])
    assert all(old[1] == 3 and new[1] == 6 and old[:1] + old[2:] == new[:1] + new[2:]
               for old, new in changed.values())


@pytest.mark.parametrize('name', NETWORKS)
def test_channel_errors_name_the_option(name):
    cls = ARCH_REGISTRY.get(name)
    for bad in (4, 0, 'six'):
        with pytest.raises(ValueError, match=f'{name}: in_channels must be 3'):
            cls(**cls.card.tiny, in_channels=bad)
    net = tiny(name, 3).eval()
    s = side(net)
    with torch.no_grad(), pytest.raises(ValueError, match=r'network_g\.in_channels: 3\), got 6 channels.*_dual'):
        net(torch.rand(1, 6, s, s))


def test_every_single_image_dpdd_recipe_has_a_dual_pixel_one():
    single = {os.path.basename(p)[:-4] for p in glob.glob(os.path.join(ROOT, 'options', 'train', 'DPDD', '*.yml'))
              if not p.endswith('_dual.yml')}
    assert single and {f'{n}_dual' for n in single} == {os.path.basename(p)[:-4] for p in DUAL_RECIPES}


@pytest.fixture(scope='module')
def dpdd(tmp_path_factory):
    return {'DPDD': prepared_dpdd(tmp_path_factory)}


@pytest.mark.parametrize('path', DUAL_RECIPES, ids=os.path.basename)
def test_dual_recipe_trains_through_the_stock_runner(path, dpdd, tmp_path):
    opt = load(path)
    net = opt['network_g']['type']
    gt_size = size_rule(ARCH_REGISTRY.get(net)(**ARCH_REGISTRY.get(net).card.tiny)).fit(32)
    args = ['python', '-m', 'basicsr.train', '-opt', path, '--force_yml', 'num_gpu=0', 'train:total_iter=2',
            'train:scheduler:warmup_iter=1', 'val:val_freq=2', 'logger:print_freq=1', 'logger:save_checkpoint_freq=2',
            'logger:use_tb_logger=false', f'datasets:train:gt_size={gt_size}', 'datasets:train:batch_size_per_gpu=2',
            'datasets:train:num_worker_per_gpu=1'] + tiny_overrides(net)
    run(args + data_overrides(opt, dpdd), cwd=tmp_path)
    root = tmp_path / 'experiments' / opt['name']
    text = logs(root)
    assert f'Network [{net}] is created.' in text and 'Dataset [DualPixelDefocusDataset]' in text
    block = text.split(f"Validation {opt['datasets']['val']['name']}")[1]
    for metric in opt['val']['metrics']:
        assert re.search(rf'# {metric}: \d+\.\d+', block), f'{metric} missing'
    state = torch.load(root / 'models' / 'net_g_2.pth', map_location='cpu', weights_only=True)['params']
    assert state['feat_extract.0.main.0.weight'].shape[1] == 6
