"""Every network against the committed manifest of its official checkpoint layout, and its demo options."""
import glob
import json
import os

import pytest
import torch
import yaml
from basicsr.archs import build_network
from basicsr.utils.registry import ARCH_REGISTRY

import basicsr_restore  # noqa: F401
from basicsr_restore.archs import MANIFEST_DIR
from basicsr_restore.archs.layers import restore_any_size
from basicsr_restore.register import OURS

from conftest import ROOT

MANIFESTS = sorted(glob.glob(os.path.join(MANIFEST_DIR, '*.json')))
DEMOS = sorted(glob.glob(os.path.join(ROOT, 'options', 'demo', '*_demo.yml')))


@pytest.mark.parametrize('path', MANIFESTS, ids=lambda p: os.path.basename(p)[:-5])
def test_parameters_keys_and_shapes_equal_the_manifest(path):
    with open(path) as f:
        manifest = json.load(f)
    net = ARCH_REGISTRY.get(manifest['network'])(**manifest['arch_kwargs'])
    assert sum(p.numel() for p in net.parameters()) == manifest['param_count']
    ours = {k: list(v.shape) for k, v in net.state_dict().items()}
    expected = manifest['state_dict']
    assert sorted(set(expected) - set(ours)) == [], 'keys of the official layout missing here'
    assert sorted(set(ours) - set(expected)) == [], 'keys here that the official layout lacks'
    assert {k: v for k, v in ours.items() if expected[k] != v} == {}, 'shapes differ'
    assert net.official_param_key == manifest['checkpoint_key']


def test_every_registered_network_has_a_manifest_and_a_demo():
    networks = {json.load(open(p))['network'] for p in MANIFESTS}
    demos = {yaml.safe_load(open(p))['network_g']['type'] for p in DEMOS}
    assert set(OURS['arch']) <= networks
    assert set(OURS['arch']) <= demos


@pytest.mark.parametrize('path', DEMOS, ids=lambda p: os.path.basename(p)[:-4])
def test_demo_network_builds_and_restores_odd_sizes(path):
    with open(path) as f:
        opt = yaml.safe_load(f)
    net = build_network(dict(opt['network_g'])).eval()
    for attr in ('pad_multiple', 'multi_output', 'official_param_key'):
        assert hasattr(type(net), attr), f'{type(net).__name__} lacks the class attribute {attr}'
    x = torch.rand(1, 3, 37, 53)
    with torch.no_grad():
        out = restore_any_size(net, x)
    assert out.shape == x.shape
    assert torch.isfinite(out).all()
