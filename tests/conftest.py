"""Shared fixtures: subprocess helpers and small data made with the project's own tools."""
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

BIN = os.path.dirname(sys.executable)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(args, cwd, env=None, check=True, timeout=300):
    """Run ``args`` (``python`` means this interpreter; ``basicsr-restore`` its console script)."""
    args = [sys.executable if a == 'python' else os.path.join(BIN, a) if a == 'basicsr-restore' else a for a in args]
    full_env = dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='2')
    full_env.pop('BASICSR_RESTORE_NO_AUTOLOAD', None)
    full_env.update(env or {})
    proc = subprocess.run(args, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f'{args} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}')
    return proc


def photo(size=(64, 64), seed=0, dtype=np.uint8):
    """A crop of a real photo (scikit-image's astronaut), BGR, as uint8 or uint16."""
    from skimage import data
    rng = np.random.default_rng(seed)
    img = data.astronaut()[:, :, ::-1]
    y, x = rng.integers(0, 512 - size[0]), rng.integers(0, 512 - size[1])
    img = np.ascontiguousarray(img[y:y + size[0], x:x + size[1]])
    if dtype == np.uint16:
        img = img.astype(np.uint16) * 257 + rng.integers(0, 257, size=img.shape).astype(np.uint16)
    return img


def noisy(img, seed=0, sigma=25):
    rng = np.random.default_rng(seed)
    top = 65535 if img.dtype == np.uint16 else 255
    scale = top / 255
    out = img.astype(np.float64) + rng.normal(0, sigma * scale, img.shape)
    return np.clip(np.round(out), 0, top).astype(img.dtype)


def write_folder(folder, images):
    os.makedirs(folder, exist_ok=True)
    for name, img in images.items():
        cv2.imwrite(os.path.join(folder, name), img)


_PREPARED = {}


def prepared_once(name, tmp_path_factory, build):
    """``build(folder)`` once per test session (miniature datasets shared by several test modules)."""
    if name not in _PREPARED:
        _PREPARED[name] = build(tmp_path_factory.mktemp(name))
    return _PREPARED[name]


@pytest.fixture(scope='session')
def demo_data(tmp_path_factory):
    """``basicsr-restore prepare demo`` output (LMDB train pairs + the held-out validation photo)."""
    out = tmp_path_factory.mktemp('demo') / 'datasets' / 'demo'
    run(['basicsr-restore', 'prepare', 'demo', '--out', str(out)], cwd=ROOT)
    return out
