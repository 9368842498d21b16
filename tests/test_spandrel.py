"""The five networks open in spandrel (chaiNNer, ComfyUI, traiNNer-redux) through ``basicsr_restore.spandrel``: every
official preset's layout in the authors' wrapper and in ours, the descriptor's fields from the card, the same image as
``basicsr-restore infer``, and files of other networks left to spandrel."""
import sys
import types

import cv2
import numpy as np
import pytest
import torch

spandrel = pytest.importorskip('spandrel')

from conftest import cli, photo  # noqa: E402

from basicsr_restore import spandrel as bridge  # noqa: E402
from basicsr_restore.archs.card import SizeRule  # noqa: E402
from basicsr_restore.core.errors import RestoreError  # noqa: E402
from basicsr_restore.core.inference import final_output, tiled  # noqa: E402
from basicsr_restore.core.registry import network_classes  # noqa: E402

NETWORKS = {cls.__name__: cls for cls in network_classes()}
PRESETS = [(name, preset) for name, cls in NETWORKS.items() for preset in cls.card.presets]


@pytest.fixture(scope='module')
def registry():
    registry = spandrel.MAIN_REGISTRY.copy()
    assert sorted(bridge.install(registry)) == sorted(NETWORKS)
    assert bridge.install(registry) == []  # idempotent
    return registry


def loader(registry):
    return spandrel.ModelLoader(registry=registry)


def save(path, state, wrapper, prefix=''):
    state = {prefix + k: v for k, v in state.items()}
    torch.save(state if wrapper is None else {wrapper: state, 'note': 'x'} if wrapper != 'basicsr' else
               {'params': state, 'params_ema': state}, path)
    return path


@pytest.mark.parametrize('name,preset', PRESETS, ids=[f'{n}-{p}' for n, p in PRESETS])
def test_every_preset_loads_in_its_release_wrapper_with_the_cards_fields(name, preset, registry, tmp_path):
    cls = NETWORKS[name]
    net = cls(**cls.card.presets[preset].kwargs)
    path = save(tmp_path / 'release.pth', net.state_dict(), cls.card.checkpoint_key, prefix='module.')
    model = loader(registry).load_from_file(str(path))
    rule = net.size_rule
    assert isinstance(model, spandrel.ImageModelDescriptor) and model.architecture.id == name
    assert (model.purpose, model.scale, model.input_channels, model.output_channels) == ('Restoration', 1, 3, 3)
    assert model.tags == [preset] and model.tiling == spandrel.ModelTiling.DISCOURAGED
    assert (model.size_requirements.multiple_of, model.size_requirements.minimum) == (
        rule.multiple, -(-rule.min_size // rule.multiple) * rule.multiple)
    for key, value in net.state_dict().items():
        assert torch.equal(model.model.state_dict()[key], value), key


def tiny_file(tmp_path, name, **extra):
    torch.manual_seed(0)
    cls = NETWORKS[name]
    net = cls(**{**cls.card.tiny, **extra}).eval()
    with torch.no_grad():  # BatchNorm statistics other than the init, so that eval mode matters
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return net, save(tmp_path / f'{name}.pth', net.state_dict(), 'basicsr')


@pytest.mark.parametrize('name', sorted(NETWORKS))
def test_the_descriptor_restores_like_infer(name, registry, tmp_path, capsys):
    net, path = tiny_file(tmp_path, name)
    img = photo((45, 70), seed=3)  # odd sizes: both pad at the bottom/right to the size rule
    cv2.imwrite(str(tmp_path / 'in.png'), img)
    rc, _, err = cli(capsys, 'infer', '-i', tmp_path / 'in.png', '-o', tmp_path / 'out', '--weights', path,
                     '--device', 'cpu')
    assert rc == 0, err
    ours = cv2.imread(str(tmp_path / 'out' / 'in.png'))
    model = loader(registry).load_from_file(str(path))
    x = torch.from_numpy(img[:, :, ::-1].astype(np.float32) / 255).permute(2, 0, 1)[None].contiguous()
    theirs = model(x)[0].permute(1, 2, 0).numpy()[:, :, ::-1]
    theirs = np.round(theirs * 255).astype(np.int16)
    assert theirs.shape == ours.shape
    assert np.abs(theirs - ours.astype(np.int16)).max() <= 1
    # tiles are not exact: each of the five averages over the whole image somewhere (with these seeded tiny networks
    # the difference is above one 8-bit level for four of them and about 1e-4 for MIRNet)
    square = torch.from_numpy(photo((128, 128), seed=4)[:, :, ::-1].astype(np.float32) / 255).permute(2, 0, 1)[None]
    with torch.no_grad():
        whole = final_output(net(square)).clamp(0, 1)
        tiles = tiled(lambda t: final_output(net(t)).clamp(0, 1), square, 64, 16)
    assert (whole - tiles).abs().max() > 1e-5, name


def test_dual_pixel_networks_and_safetensors_files(registry, tmp_path):
    net, _ = tiny_file(tmp_path, 'IRNeXt', in_channels=6)
    from safetensors.torch import save_file
    save_file({f'params_ema.{k}': v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / 'n.safetensors'))
    model = loader(registry).load_from_file(str(tmp_path / 'n.safetensors'))
    assert model.architecture.id == 'IRNeXt' and model.input_channels == 6 and model.tags == ['custom']


def test_the_size_requirements_reject_what_the_card_rejects(registry, tmp_path):
    for name in sorted(NETWORKS):
        _, path = tiny_file(tmp_path, name)
        model = loader(registry).load_from_file(str(path))
        rule = model.model.size_rule
        for side in range(1, 3 * rule.multiple + rule.min_size + 2):
            card_accepts = True
            try:
                SizeRule.check(rule, name, torch.zeros(1, 3, side, side))
            except ValueError:
                card_accepts = False
            assert model.size_requirements.check(side, side) == card_accepts, (name, side)


def test_files_of_other_networks_are_never_claimed(registry, tmp_path):
    from spandrel.architectures.DnCNN import DnCNN
    torch.save(DnCNN().state_dict(), tmp_path / 'dncnn.pth')
    assert loader(registry).load_from_file(str(tmp_path / 'dncnn.pth')).architecture.id == 'DnCNN'
    net = NETWORKS['MIRNet'](**NETWORKS['MIRNet'].card.tiny)
    state = net.state_dict()
    state.pop(next(iter(state)))  # one tensor missing: not a MIRNet layout any more
    torch.save(state, tmp_path / 'partial.pth')
    with pytest.raises(spandrel.UnsupportedModelError):
        loader(registry).load_from_file(str(tmp_path / 'partial.pth'))


def test_half_precision_flags_follow_the_measured_psnr_and_the_bar():
    for cls in NETWORKS.values():
        measured = cls.card.half_precision_db
        assert set(measured) == {'fp16', 'bf16'} and all(v > 0 for v in measured.values())
        assert bridge.precision_of(cls) == {k: v >= bridge.PRECISION_BAR_DB for k, v in measured.items()}
    below = type('Net', (), {'card': types.SimpleNamespace(half_precision_db={'fp16': 44.9, 'bf16': 45.0})})
    assert bridge.precision_of(below) == {'fp16': False, 'bf16': True}


def test_without_spandrel_install_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, 'spandrel', None)
    with pytest.raises(RestoreError, match=r'pip install "basicsr-restore\[spandrel\]"'):
        bridge.install()
