"""Checkpoints identify themselves: every preset of every network from its layout, configurations off the presets
from their shapes, any wrapper layout; ``infer``/``convert`` without ``--arch``; unknown and truncated files."""
import os

import numpy as np
import pytest
import torch
from conftest import cli, photo, write_folder

from basicsr_restore.archs.card import constructor_arguments, layout, load_manifest
from basicsr_restore.core import checkpoints, state_dicts
from basicsr_restore.core.identify import UnknownLayout, identify
from basicsr_restore.core.registry import network_classes

PRESETS = [(cls, name) for cls in network_classes() for name in cls.card.presets]

#: configurations that are no preset: the arguments must be read from the shapes
OFF_PRESET = {
    'IRNeXt': {'num_res': 2, 'base_channel': 16},
    'ChaIR': {'num_res': 2, 'base_channel': 8},
    'MIRNet': {'n_feat': 16, 'n_RRG': 2, 'n_MSRB': 1, 'height': 2, 'width': 1},
    'DRCNet': {'wf': 16, 'depth': 3},
    'EIRN': {'n_feat': 16, 'scale_unetfeats': 8, 'scale_orsnetfeats': 8, 'num_cab': 2},
}


@pytest.mark.parametrize('cls, preset', PRESETS, ids=[f'{c.__name__}-{p}' for c, p in PRESETS])
def test_every_preset_is_identified_from_its_layout(cls, preset):
    found = identify(load_manifest(cls, preset)['state_dict'])
    assert (found.name, found.preset) == (cls.__name__, preset)  # by name: a test may reload the modules
    assert found.kwargs == constructor_arguments(cls, cls.card.presets[preset].kwargs)


def test_every_network_has_an_off_preset_case():
    assert set(OFF_PRESET) == {cls.__name__ for cls in network_classes()}


@pytest.mark.parametrize('cls', network_classes(), ids=lambda c: c.__name__)
def test_off_preset_arguments_are_read_from_the_shapes(cls):
    torch.manual_seed(0)
    net = cls(**OFF_PRESET[cls.__name__]).eval()
    found = identify(net.state_dict())
    assert found.name == cls.__name__ and found.preset is None
    assert {k: found.kwargs[k] for k in OFF_PRESET[cls.__name__]} == OFF_PRESET[cls.__name__]
    rebuilt = found.cls(**found.kwargs).eval()
    rebuilt.load_state_dict(net.state_dict())
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        a, b = net(x), rebuilt(x)
    a, b = (a[-1], b[-1]) if isinstance(a, (list, tuple)) else (a, b)
    assert torch.equal(a, b)


def wrap(state, how):
    if how == 'official':
        return {'model': {f'module.{k}': v for k, v in state.items()}, 'optimizer': {}, 'epoch': 3}
    if how == 'state_dict':
        return {'state_dict': {f'module.{k}': v for k, v in state.items()}, 'epoch': 3}
    if how == 'basicsr':
        return {'params': state, 'params_ema': {f'_orig_mod.{k}': v for k, v in state.items()}}
    if how == 'compiled-ddp':
        return {'params': {f'module._orig_mod.{k}': v for k, v in state.items()}}
    return state


@pytest.mark.parametrize('how', ['bare', 'official', 'state_dict', 'basicsr', 'compiled-ddp'])
def test_any_wrapper_layout_opens_without_naming_the_network(tmp_path, how):
    from basicsr_restore.archs.eirn_arch import EIRN
    net = EIRN(**EIRN.card.tiny)
    path = tmp_path / 'w.pth'
    torch.save(wrap(net.state_dict(), how), path)
    opened, info = checkpoints.open_network(str(path))
    assert type(opened) is EIRN and info['found'].startswith('identified from the key layout')
    assert all(torch.equal(opened.state_dict()[k], v) for k, v in net.state_dict().items())


def test_a_real_preset_file_opens_as_its_preset(tmp_path):
    from basicsr_restore.archs.irnext_arch import IRNeXt
    net = IRNeXt()  # the dehazing release's configuration, as the authors save it
    path = tmp_path / 'model_ots.pkl'
    torch.save({'model': net.state_dict()}, path)
    opened, info = checkpoints.open_network(str(path))
    assert info['found'] == "identified from the key layout (preset 'dehaze')"
    assert info['key'] == 'model' and sum(p.numel() for p in opened.parameters()) == 5_455_241


def test_unknown_layout_names_the_closest_ones_and_what_differs(tmp_path):
    from basicsr_restore.archs.drcnet_arch import DRCNet
    state = DRCNet(**DRCNet.card.tiny).state_dict()
    partial = dict(list(state.items())[: len(state) // 2])  # a file saved half-way
    with pytest.raises(UnknownLayout) as err:
        identify(partial)
    message = str(err.value)
    assert 'match no network' in message and 'Closest known layouts' in message
    assert message.splitlines()[1].startswith('  - DRCNet')  # the closest layout first
    assert 'missing (e.g.' in message and '--arch NAME' in message
    torch.save({'params': {'conv.weight': torch.zeros(3, 3, 1, 1)}}, tmp_path / 'other.pth')
    with pytest.raises(UnknownLayout, match=r"weights '.*other.pth': the weights \(1 tensors\) match no network"):
        checkpoints.open_network(str(tmp_path / 'other.pth'), what='weights')


def test_truncated_and_non_checkpoint_files_are_clear_errors(tmp_path):
    from basicsr_restore.archs.irnext_arch import IRNeXt
    good = tmp_path / 'good.pth'
    torch.save({'params': IRNeXt(**IRNeXt.card.tiny).state_dict()}, good)
    data = good.read_bytes()
    (tmp_path / 'cut.pth').write_bytes(data[: len(data) // 2])
    (tmp_path / 'notes.txt').write_text('not weights')
    for name in ('cut.pth', 'notes.txt'):
        with pytest.raises(state_dicts.CheckpointError, match=name):
            checkpoints.open_network(str(tmp_path / name))


def test_infer_and_convert_need_no_arch(tmp_path, capsys):
    from basicsr_restore.archs.irnext_arch import IRNeXt
    torch.manual_seed(1)
    state = IRNeXt(num_res=1, base_channel=8).state_dict()
    official = tmp_path / 'official.pkl'
    torch.save(wrap(state, 'official'), official)
    write_folder(tmp_path / 'in', {'a.png': photo((40, 56), seed=3)})

    rc, out, err = cli(capsys, 'infer', '-i', tmp_path / 'in', '-o', tmp_path / 'found', '--weights', official)
    assert rc == 0, err
    assert 'IRNeXt(num_res=1, low_pass=' in out and 'identified from the key layout' in out
    rc, _, err = cli(capsys, 'infer', '-i', tmp_path / 'in', '-o', tmp_path / 'named', '--weights', official,
                     '--arch', 'IRNeXt', '--arch-args', 'num_res=1', 'base_channel=8')
    assert rc == 0, err
    import cv2
    assert np.array_equal(cv2.imread(str(tmp_path / 'found' / 'a.png')), cv2.imread(str(tmp_path / 'named' / 'a.png')))

    converted = tmp_path / 'converted.pth'
    rc, out, err = cli(capsys, 'convert', official, converted)
    assert rc == 0, err
    assert 'identified from the key layout: IRNeXt(num_res=1' in out
    record = torch.load(converted, weights_only=True)['network_g']
    assert record['type'] == 'IRNeXt' and record['num_res'] == 1 and record['base_channel'] == 8
    rc, out, err = cli(capsys, 'infer', '-i', tmp_path / 'in', '-o', tmp_path / 'recorded', '--weights', converted)
    assert rc == 0, err
    assert 'network recorded in the file (network_g)' in out
    assert os.path.isfile(tmp_path / 'recorded' / 'a.png')

    torch.save({'params': {'conv.weight': torch.zeros(3, 3, 1, 1)}}, tmp_path / 'other.pth')
    rc, out, err = cli(capsys, 'infer', '-i', tmp_path / 'in', '-o', tmp_path / 'x',
                       '--weights', tmp_path / 'other.pth')
    assert rc == 2 and 'match no network of basicsr-restore' in err and 'Closest known layouts' in err
    rc, out, err = cli(capsys, 'convert', tmp_path / 'other.pth', tmp_path / 'other_converted.pth')
    assert rc == 0 and 'network: not identified, so none is recorded' in out  # still converted (e.g. a basicsr net)


def test_layout_helper_matches_state_dict_shapes():
    from basicsr_restore.archs.mirnet_arch import MIRNet
    net = MIRNet(**MIRNet.card.tiny)
    assert identify(layout(net.state_dict())).kwargs == identify(net.state_dict()).kwargs
