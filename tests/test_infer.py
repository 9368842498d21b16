"""``basicsr-restore infer``: any size, tiles, TTA, bit depth and channels, checkpoint layouts, bad inputs."""
import os

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from basicsr.utils.registry import ARCH_REGISTRY
from conftest import cli, noisy, photo, run, write_folder
from torch import nn

import basicsr_restore  # noqa: F401
from basicsr_restore.archs.card import SizeRule
from basicsr_restore.archs.irnext_arch import IRNeXt
from basicsr_restore.core import checkpoints
from basicsr_restore.core.inference import Restorer

TINY = dict(IRNeXt.card.tiny)


class InferTestPointwise(nn.Module):
    """A 1x1 convolution (identity weights by default) with a multiple of 8 and two outputs: per pixel, so
    every flip/rotation commutes with it and tiles cannot differ from the whole image."""
    size_rule = SizeRule(8)

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.eye(3)[:, :, None, None])
            self.conv.bias.zero_()

    def forward(self, x):
        assert x.shape[-1] % 8 == 0 and x.shape[-2] % 8 == 0, 'not padded'
        out = self.conv(x)
        return [F.avg_pool2d(out, 2), out]


class InferTestConv(nn.Module):
    """Three 3x3 convolutions with zero padding: receptive-field radius 3, no global operation."""
    size_rule = SizeRule(4)

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(8, 3, 3, padding=1))

    def forward(self, x):
        return self.body(x)


# test-only networks: into basicsr's registry (so --arch finds them), not into this package's list
ARCH_REGISTRY._obj_map.setdefault('InferTestPointwise', InferTestPointwise)


@pytest.fixture(scope='module')
def weights(tmp_path_factory):
    """Checkpoints written by this test: the identity network, and a tiny IRNeXt in BasicSR's layout."""
    folder = tmp_path_factory.mktemp('weights')
    torch.save({'params': InferTestPointwise().state_dict()}, folder / 'identity.pth')
    torch.manual_seed(0)
    sd = IRNeXt(**TINY).state_dict()
    torch.save({'params': sd, 'params_ema': sd}, folder / 'irnext.pth')
    return folder


# ------------------------------------------------------------------------------------ tiles and TTA
def test_tiled_equals_whole_image():
    net = InferTestConv().eval()
    x = torch.rand(1, 3, 100, 150)
    whole = Restorer(net, 'cpu')(x)
    tiled = Restorer(net, 'cpu', tile=38, overlap=16)  # rounded up to 40; margins of 4 >= radius 3
    assert tiled.tile == 40 and tiled.count_tiles(100, 150) > 6
    out = tiled(x)
    assert out.shape == x.shape
    assert (out - whole)[..., 8:-8, 8:-8].abs().max() < 1e-3
    # a hard cut without blending margins would show the tile edges: the test can tell the difference
    naive = whole.clone()
    naive[..., :, 40:80] = net(x[..., :, 40:80]).detach()
    assert (naive - whole)[..., 8:-8, 8:-8].abs().max() > 1e-3


def test_tta_on_a_pointwise_network_is_exact_and_keeps_odd_shapes():
    torch.manual_seed(1)
    net = InferTestPointwise()
    with torch.no_grad():
        net.conv.weight.copy_(torch.rand(3, 3, 1, 1))
    x = torch.rand(1, 3, 37, 53)
    plain = Restorer(net, 'cpu')(x)
    ensembled = Restorer(net, 'cpu', tta=True)(x)
    assert ensembled.shape == plain.shape == x.shape
    assert torch.allclose(ensembled, plain, atol=1e-6)
    assert torch.equal(Restorer(InferTestPointwise(), 'cpu', tta=True)(x), x)  # the pairwise mean is exact
    blended = Restorer(InferTestPointwise(), 'cpu', tta=True, tile=16, overlap=8)(x)
    assert (blended - x).abs().max() < 1e-6  # blending weights only round


def test_tta_changes_a_real_network_but_keeps_the_shape():
    torch.manual_seed(0)
    net = IRNeXt(**TINY).eval()
    x = torch.rand(1, 3, 40, 70)
    plain, ensembled = Restorer(net, 'cpu')(x), Restorer(net, 'cpu', tta=True)(x)
    assert ensembled.shape == x.shape
    assert not torch.allclose(plain, ensembled, atol=1e-4)  # a convolutional net is not flip-invariant


# ---------------------------------------------------------------------------- the command, end to end
def test_odd_sizes_16_bit_gray_and_alpha_through_the_command(tmp_path, weights, capsys):
    color16 = photo((45, 61), 1, dtype=np.uint16)
    gray = cv2.cvtColor(photo((33, 47), 2), cv2.COLOR_BGR2GRAY)
    rgba = np.dstack([photo((29, 35), 3), np.arange(29 * 35, dtype=np.uint8).reshape(29, 35)])
    write_folder(tmp_path / 'in', {'c16.png': color16, 'gray.png': gray, 'rgba.png': rgba})
    cv2.imwrite(str(tmp_path / 'in' / 'c16t.tif'), color16)
    rc, out, err = cli(capsys, 'infer', '-i', tmp_path / 'in', '-o', tmp_path / 'out', '--arch', 'InferTestPointwise',
                       '--weights', weights / 'identity.pth', '--tta', '--tile', '24', '--tile-overlap', '8',
                       '--device', 'cpu', '--compare')
    assert rc == 0, err
    assert "key 'params'" in out and '4 image(s) restored' in out
    read = {n: cv2.imread(str(tmp_path / 'out' / n), cv2.IMREAD_UNCHANGED)
            for n in ('c16.png', 'c16t.tif', 'gray.png', 'rgba.png')}
    # the identity network, tiled and x8-ensembled, gives back every input bit for bit
    assert read['c16.png'].dtype == np.uint16 and np.array_equal(read['c16.png'], color16)
    assert read['c16t.tif'].dtype == np.uint16 and np.array_equal(read['c16t.tif'], color16)
    assert read['gray.png'].ndim == 2 and np.array_equal(read['gray.png'], gray)
    assert read['rgba.png'].shape == (29, 35, 4) and np.array_equal(read['rgba.png'], rgba)
    strip = cv2.imread(str(tmp_path / 'out' / 'compare' / 'c16.png'), cv2.IMREAD_UNCHANGED)
    assert strip.dtype == np.uint8 and strip.shape == (45, 122, 3)


def test_real_network_with_ground_truth_tables(tmp_path, weights, capsys):
    clean = {'a.png': photo((37, 53), 4), 'b.png': photo((70, 90), 5)}
    write_folder(tmp_path / 'gt', clean)
    write_folder(tmp_path / 'lq', {k: noisy(v, seed=i) for i, (k, v) in enumerate(clean.items())})
    args = ['infer', '-i', str(tmp_path / 'lq' / '*.png'), '-o', tmp_path / 'out', '--arch', 'IRNeXt',
            '--weights', weights / 'irnext.pth', '--device', 'cpu', '--gt', tmp_path / 'gt', '--tile', '64',
            '--tile-overlap', '16', '--arch-args', 'num_res=1', 'base_channel=8']
    rc, out, err = cli(capsys, *args)
    assert rc == 0, err
    assert "key 'params_ema' (detected)" in out
    for name, img in clean.items():
        assert cv2.imread(str(tmp_path / 'out' / name)).shape == img.shape
    lines = (tmp_path / 'out' / 'metrics.csv').read_text().splitlines()
    assert lines[0] == 'image,psnr_in,psnr_out,ssim_in,ssim_out'
    assert [line.split(',')[0] for line in lines[1:]] == ['a', 'b', 'mean']
    mean = [float(v) for v in lines[3].split(',')[1:]]
    assert 5 < mean[0] < 40 and 0 < mean[2] < 1
    assert '| **mean** |' in (tmp_path / 'out' / 'metrics.md').read_text()
    # nothing already written is replaced without --overwrite
    rc, _, err = cli(capsys, *args)
    assert rc == 2 and 'exist already' in err and '--overwrite' in err
    assert cli(capsys, *args, '--overwrite')[0] == 0
    # the CPU's best switches (channels_last) restore the same images (to one level); an impossible switch is named and
    # dropped
    fast = [a if a != tmp_path / 'out' else tmp_path / 'fast' for a in args]
    rc, out, err = cli(capsys, *fast[:-3], '--speed', 'best', '--tf32', *fast[-3:])
    assert rc == 0, err
    assert ': cpu, channels_last, tiles 64' in out and 'speed.tf32: has no effect on the cpu' in err
    for name in clean:  # float rounding of another memory layout moves a pixel by one level at most
        fast_img, plain = (cv2.imread(str(tmp_path / d / name)).astype(int) for d in ('fast', 'out'))
        assert np.abs(fast_img - plain).max() <= 1
    rc, _, err = cli(capsys, *fast[:-3], '--speed', 'fastest', *fast[-3:])
    assert rc == 2 and "--speed 'fastest': use best or fp32" in err


def test_16_bit_scores_use_the_16_bit_range(tmp_path, weights, capsys):
    gt = photo((40, 40), 6, dtype=np.uint16)
    lq = np.clip(gt.astype(np.int64) + 100, 0, 65535).astype(np.uint16)  # well below one 8-bit step
    write_folder(tmp_path / 'gt', {'x.png': gt})
    write_folder(tmp_path / 'lq', {'x.png': lq})
    rc, out, err = cli(capsys, 'infer', '-i', tmp_path / 'lq', '-o', tmp_path / 'out', '--arch', 'InferTestPointwise',
                       '--weights', weights / 'identity.pth', '--gt', tmp_path / 'gt', '--device', 'cpu')
    assert rc == 0, err
    row = (tmp_path / 'out' / 'metrics.csv').read_text().splitlines()[1].split(',')
    mse = np.mean((lq.astype(np.float64) - gt) ** 2)
    assert float(row[2]) == pytest.approx(10 * np.log10(65535.0 ** 2 / mse), abs=1e-3)


# ---------------------------------------------------------------------------------- checkpoint layouts
def _layouts(sd, other):
    module = {f'module.{k}': v for k, v in sd.items()}
    return {
        'params': {'params': sd},
        'params_ema+params': {'params_ema': sd, 'params': other},
        'model': {'model': sd, 'optimizer': {'lr': 1.0}, 'epoch': 3},
        'state_dict+module': {'state_dict': module, 'epoch': 3},
        'bare': dict(sd),
        'bare+compile': {f'_orig_mod.{k}': v for k, v in sd.items()},
    }


@pytest.mark.parametrize('layout', ['params', 'params_ema+params', 'model', 'state_dict+module', 'bare',
                                    'bare+compile'])
def test_every_checkpoint_layout_loads(tmp_path, layout):
    torch.manual_seed(2)
    sd = IRNeXt(**TINY).state_dict()
    other = {k: torch.zeros_like(v) for k, v in sd.items()}
    torch.save(_layouts(sd, other)[layout], tmp_path / 'w.pth')
    net, info = checkpoints.load_network('IRNeXt', TINY, str(tmp_path / 'w.pth'))
    assert all(torch.equal(v, sd[k]) for k, v in net.state_dict().items())
    assert info['tensors'] == len(sd)
    if layout == 'state_dict+module':
        assert info['key'] == 'state_dict' and info['stripped'] == {'module.': len(sd)}
    if layout == 'params_ema+params':
        assert info['key'] == 'params_ema'


# ---------------------------------------------------------------------------------------- bad inputs
def test_unreadable_image_is_reported_and_the_others_are_restored(tmp_path, weights, capsys):
    write_folder(tmp_path / 'in', {'good.png': photo((16, 16))})
    (tmp_path / 'in' / 'broken.png').write_bytes(b'not an image at all')
    rc, _, err = cli(capsys, 'infer', '-i', tmp_path / 'in', '-o', tmp_path / 'out', '--arch', 'InferTestPointwise',
                     '--weights', weights / 'identity.pth', '--device', 'cpu')
    assert rc == 2
    assert "cannot read image '" in err and 'broken.png' in err and 'Traceback' not in err
    assert (tmp_path / 'out' / 'good.png').is_file()


def test_missing_weights_wrong_architecture_and_unknown_names(tmp_path, weights, capsys):
    write_folder(tmp_path / 'in', {'a.png': photo((16, 16))})
    base = ['infer', '-i', tmp_path / 'in', '-o', tmp_path / 'out', '--device', 'cpu']
    rc, _, err = cli(capsys, *base, '--arch', 'IRNeXt', '--weights', tmp_path / 'nope.pth')
    assert rc == 2 and "--weights '" in err and 'does not exist' in err
    rc, _, err = cli(capsys, *base, '--arch', 'IRNeXt', '--weights', weights / 'irnext.pth',
                     '--arch-args', 'num_res=2', 'base_channel=8')
    assert rc == 2 and 'does not fit IRNeXt' in err and 'missing keys: ' in err
    rc, _, err = cli(capsys, *base, '--arch', 'ChaIR', '--weights', weights / 'irnext.pth')
    assert rc == 2 and 'unexpected keys' in err
    rc, _, err = cli(capsys, *base, '--arch', 'NoSuchNet', '--weights', weights / 'irnext.pth')
    assert rc == 2 and "'NoSuchNet' is not registered" in err
    found = ['infer', '-i', tmp_path / 'in', '-o', tmp_path / 'found', '--weights', weights / 'irnext.pth']
    rc, out, err = cli(capsys, *found)  # the network is found from the file
    assert rc == 0 and 'IRNeXt(num_res=1' in out and 'identified from the key layout' in out, err
    rc, _, err = cli(capsys, *base)
    assert rc == 2 and '-opt OPTIONS.yml' in err and '--weights FILE' in err
    rc, _, err = cli(capsys, *base, '--arch', 'IRNeXt', '--weights', weights / 'irnext.pth', '--arch-args', 'num_res')
    assert rc == 2 and 'neither key=value nor a JSON object' in err
    assert not (tmp_path / 'out' / 'a.png').exists()


def test_option_file_and_the_exit_status_of_the_installed_command(tmp_path, weights):
    write_folder(tmp_path / 'in', {'a.png': photo((20, 30))})
    (tmp_path / 'test.yml').write_text(
        f"name: t\nnetwork_g: {{type: IRNeXt, num_res: 1, base_channel: 8}}\n"
        f"path: {{pretrain_network_g: {weights / 'irnext.pth'}, param_key_g: params}}\n")
    proc = run(['basicsr-restore', 'infer', '-i', 'in', '-o', 'out', '-opt', 'test.yml', '--device', 'cpu',
                '--amp', 'bf16'], cwd=tmp_path)
    assert "IRNeXt(num_res=1, base_channel=8) <- " in proc.stdout and "key 'params' (asked for)" in proc.stdout
    assert cv2.imread(str(tmp_path / 'out' / 'a.png')).shape == (20, 30, 3)
    bad = run(['basicsr-restore', 'infer', '-i', 'in', '-o', 'out2', '-opt', 'test.yml', '--weights', 'none.pth'],
              cwd=tmp_path, check=False)
    assert bad.returncode == 2 and 'does not exist' in bad.stderr and 'Traceback' not in bad.stderr
    assert not os.path.exists(tmp_path / 'out2')


def test_non_finite_outputs_are_refused_and_not_written(tmp_path, capsys):
    """Finite but huge weights overflow to Inf: the image is reported, nothing black is written, exit status 2."""
    net = InferTestPointwise()
    with torch.no_grad():
        net.conv.weight.mul_(3e38)
        net.conv.bias.fill_(3e38)
    torch.save({'params': net.state_dict()}, tmp_path / 'huge.pth')
    write_folder(tmp_path / 'in', {'a.png': photo((16, 16), 1)})
    rc, _, err = cli(capsys, 'infer', '-i', tmp_path / 'in', '-o', tmp_path / 'out', '--arch', 'InferTestPointwise',
                     '--weights', tmp_path / 'huge.pth', '--device', 'cpu')
    assert rc == 2 and "the network produced NaN/Inf for '" in err and 'nothing was written' in err
    assert not (tmp_path / 'out' / 'a.png').exists()
