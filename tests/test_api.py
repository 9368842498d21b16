"""The Python API: ``basicsr_restore.load(...)`` / ``net.restore(...)`` / ``basicsr_restore.build(...)``; the
README's examples run as written (with basicsr blocked: plain torch), the same pixels as ``infer``, every input
form, clear errors."""
import os
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
import yaml
from conftest import ROOT, THREADS, cli, photo, write_folder

import basicsr_restore
from basicsr_restore.archs.irnext_arch import IRNeXt
from basicsr_restore.core.imageio import ImageError

BLOCK_BASICSR = '''
import importlib.abc, sys
class NoBasicsr(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == 'basicsr' or name.startswith('basicsr.'):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, NoBasicsr())
'''


def readme_python_blocks():
    with open(os.path.join(ROOT, 'README.md'), encoding='utf-8') as f:
        text = f.read()
    section = text.split('## Use it from Python', 1)[1].split('\n## ', 1)[0]
    return re.findall(r'```python\n(.*?)```', section, re.S)


def save_like_the_model(path, net, network_g):
    """A checkpoint as RestorationModel.save_network writes it: params, params_ema and the network record."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    state = net.state_dict()
    torch.save({'params': state, 'params_ema': state, 'network_g': dict(network_g)}, path)


@pytest.fixture(scope='module')
def demo_checkpoint(tmp_path_factory):
    with open(os.path.join(ROOT, 'options', 'demo', 'IRNeXt_demo.yml'), encoding='utf-8') as f:
        network_g = yaml.safe_load(f)['network_g']
    kwargs = {k: v for k, v in network_g.items() if k != 'type'}
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp('api')
    path = root / 'experiments' / 'IRNeXt_demo' / 'models' / 'net_g_latest.pth'
    save_like_the_model(str(path), IRNeXt(**kwargs), network_g)
    return root, path


def test_readme_examples_run_as_written_without_basicsr(demo_checkpoint):
    root, _ = demo_checkpoint
    blocks = readme_python_blocks()
    assert len(blocks) == 3, 'the README shows three Python examples (load and restore, options, spandrel)'
    code = BLOCK_BASICSR + '\n'.join(blocks) + '''
assert restored.shape == image.shape and restored.dtype == image.dtype
assert model.architecture.id == 'IRNeXt' and model.purpose == 'Restoration'
assert not any(m == 'basicsr' or m.startswith('basicsr.') for m in sys.modules)
'''
    proc = subprocess.run([sys.executable, '-c', code], cwd=root, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, OMP_NUM_THREADS=THREADS))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert '<basicsr_restore.Network IRNeXt(' in proc.stdout and 'on cpu>' in proc.stdout
    assert '13205641' in proc.stdout  # the count the README prints for the deblurring preset


@pytest.mark.parametrize('options', [[], ['--tile', '64', '--tile-overlap', '16', '--tta']])
def test_restore_gives_the_pixels_of_infer(demo_checkpoint, tmp_path, capsys, options):
    _, weights = demo_checkpoint
    bgr = photo((45, 70), seed=5)
    write_folder(tmp_path / 'in', {'p.png': bgr})
    rc, out, err = cli(capsys, 'infer', '-i', tmp_path / 'in', '-o', tmp_path / 'out', '--weights', weights, *options)
    assert rc == 0, err
    expected = cv2.imread(str(tmp_path / 'out' / 'p.png'))
    net = basicsr_restore.load(str(weights), device='cpu')
    kwargs = {'tile': 64, 'overlap': 16, 'tta': True} if options else {}
    got = net.restore(np.ascontiguousarray(bgr[:, :, ::-1]), **kwargs)
    assert np.array_equal(got[:, :, ::-1], expected)
    if not options:  # OpenCV's channel order, as serve passes decoded uploads
        assert np.array_equal(net.restore(bgr, bgr=True), expected)


def test_every_input_form(demo_checkpoint):
    net = basicsr_restore.load(str(demo_checkpoint[1]), device='cpu')
    rgb = photo((33, 47), seed=2)[:, :, ::-1].copy()
    for image in (rgb, rgb.astype(np.uint16) * 257, rgb.astype(np.float32) / 255, rgb[:, :, 0], rgb[:, :, :1],
                  np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])):
        out = net.restore(image)
        assert out.shape == image.shape and out.dtype == image.dtype
    rgba = np.dstack([rgb, np.arange(33 * 47, dtype=np.uint8).reshape(33, 47)])
    assert np.array_equal(net.restore(rgba)[:, :, 3], rgba[:, :, 3])  # alpha kept as it was
    as_float = net.restore(rgb.astype(np.float32) / 255)
    assert np.abs(as_float * 255 - net.restore(rgb)).max() <= 0.5 + 1e-3  # float and uint8 agree within rounding
    x = torch.from_numpy(rgb.transpose(2, 0, 1).astype(np.float32) / 255)
    one = net.restore(x)
    assert one.shape == x.shape and one.dtype == torch.float32
    batch = net.restore(torch.stack([x, x.flip(-1)]))
    assert batch.shape == (2,) + x.shape and torch.allclose(batch[0], one)


@pytest.mark.parametrize('bad, says', [
    (np.zeros((8, 8, 2), np.uint8), '2 channels'),
    (np.zeros((8, 8, 3), np.int32), 'int32 pixels'),
    (np.zeros((0, 8, 3), np.uint8), 'is not an image'),
    ([[1, 2], [3, 4]], 'expected a numpy array'),
    (torch.zeros(1, 1, 8, 8), 'give a float tensor'),
])
def test_bad_images_are_one_clear_error(demo_checkpoint, bad, says):
    net = basicsr_restore.load(str(demo_checkpoint[1]), device='cpu')
    with pytest.raises(ImageError, match=re.escape(says)):
        net.restore(bad)


def test_build_and_load_by_name(tmp_path):
    net = basicsr_restore.build('IRNeXt', preset='deblur', device='cpu')
    assert net.kwargs == {'num_res': 14, 'low_pass': 'local'}
    assert sum(p.numel() for p in net.net.parameters()) == IRNeXt.card.presets['deblur'].params
    with pytest.raises(ValueError, match="IRNeXt has no preset 'denoise'; its presets are: dehaze, deblur"):
        basicsr_restore.build('IRNeXt', preset='denoise')
    with pytest.raises(ValueError, match="architecture 'NoSuchNet' is not registered"):
        basicsr_restore.build('NoSuchNet')
    path = tmp_path / 'official.pkl'
    torch.save({'model': IRNeXt(**IRNeXt.card.tiny).state_dict()}, path)
    named = basicsr_restore.load(str(path), arch='IRNeXt', device='cpu', **IRNeXt.card.tiny)
    assert named.source.endswith('named') and "key 'model'" in named.source
    with pytest.raises(ValueError, match='need arch='):
        basicsr_restore.load(str(path), num_res=1)
