"""``basicsr-restore prepare rain13k|rain100h|...`` on miniature copies of the Rain13K download."""
import os

import cv2
import numpy as np
import pytest
from conftest import photo, prepared_once

from basicsr_restore.commands.cli import main
from basicsr_restore.data.lmdb_io import read_meta_info
from basicsr_restore.data.paired_dataset import PairedRestorationDataset

SIZE = (40, 48)


def rainy(img, seed):
    """Bright diagonal streaks, the look of synthetic rain."""
    rng = np.random.default_rng(seed)
    streaks = np.zeros(img.shape[:2], np.float32)
    streaks[rng.random(img.shape[:2]) < 0.03] = 1.0
    streaks = cv2.filter2D(streaks, -1, np.eye(7, dtype=np.float32) / 3)
    return np.clip(img + 120 * streaks[:, :, None], 0, 255).astype(np.uint8)


def write_set(folder, names, seed=0, lq='input', gt='target', lq_name=None):
    """``folder/{input,target}/<name>``: JPEG pairs as distributed."""
    for i, name in enumerate(names):
        clean = photo(SIZE, seed + i)
        for sub, img, n in ((gt, clean, name), (lq, rainy(clean, seed + i), lq_name(name) if lq_name else name)):
            os.makedirs(os.path.join(folder, sub), exist_ok=True)
            params = [cv2.IMWRITE_JPEG_QUALITY, 95] if n.endswith('.jpg') else []
            cv2.imwrite(os.path.join(folder, sub, n), img, params)


def make_rain_download(root, tests=('Rain100H', 'Rain100L')):
    """Restormer's layout: ``train/Rain13K/{input,target}`` and ``test/<Set>/{input,target}``."""
    write_set(os.path.join(root, 'train', 'Rain13K'), [f'{i}.jpg' for i in range(1, 5)])
    for i, name in enumerate(tests):
        write_set(os.path.join(root, 'test', name), ['1.png', '2.png'], seed=10 * (i + 1))
    return root


def prepared_rain(tmp_path_factory):
    def build(base):
        make_rain_download(str(base / 'raw'), ('Rain100H', 'Rain100L', 'Test100', 'Test1200', 'Test2800'))
        assert main(['prepare', 'rain13k', str(base / 'raw'), str(base / 'Rain13K')]) == 0
        return base / 'Rain13K'

    return prepared_once('rain', tmp_path_factory, build)


@pytest.fixture(scope='module')
def rain(tmp_path_factory):
    return prepared_rain(tmp_path_factory)


def test_rain13k_stores_whole_images_and_the_test_sets_found(rain):
    meta = read_meta_info(str(rain / 'train' / 'gt.lmdb'))
    assert [k for k, _ in meta] == ['1', '2', '3', '4'] and meta[0][1] == (40, 48, 3)
    for name in ('Rain100H', 'Rain100L'):
        assert [k for k, _ in read_meta_info(str(rain / 'test' / name / 'lq.lmdb'))] == ['1', '2']
    assert sorted(os.listdir(rain / 'test')) == ['Rain100H', 'Rain100L', 'Test100', 'Test1200', 'Test2800']
    ds = PairedRestorationDataset(dict(name='r', phase='val', dataroot_gt=str(rain / 'test' / 'Rain100H' / 'gt.lmdb'),
                                       dataroot_lq=str(rain / 'test' / 'Rain100H' / 'lq.lmdb')))
    assert (ds[0]['lq'] - ds[0]['gt']).max() > 0.3  # the streaks are there


def test_summary_names_the_missing_test_sets(tmp_path, capsys):
    make_rain_download(str(tmp_path / 'raw'))
    assert main(['prepare', 'rain13k', str(tmp_path / 'raw'), str(tmp_path / 'out'), '--train-only']) == 0
    assert not (tmp_path / 'out' / 'test').exists()
    assert main(['prepare', 'rain13k', str(tmp_path / 'raw'), str(tmp_path / 'out')]) == 0
    out = capsys.readouterr().out
    assert 'kept' in out and 'test/Rain100H' in out
    assert '4 training images are smaller than 256 px on a side (e.g. 1 48x40)' in out
    assert 'lower datasets.train.gt_size to 40' in out
    assert 'test sets not found' in out and 'Test100, Test1200, Test2800' in out


def test_single_test_set_from_the_original_names(tmp_path, capsys):
    """An original-style copy: ``rain/rain-001.png`` with ``norain/norain-001.png``."""
    write_set(str(tmp_path / 'Rain100L'), ['norain-001.png', 'norain-002.png'], lq='rain', gt='norain',
              lq_name=lambda n: n.replace('norain', 'rain'))
    assert main(['prepare', 'rain100l', str(tmp_path), str(tmp_path / 'out')]) == 0
    assert [k for k, _ in read_meta_info(str(tmp_path / 'out' / 'test' / 'Rain100L' / 'gt.lmdb'))] == ['rain-001',
                                                                                                       'rain-002']
    assert main(['prepare', 'test1200', str(tmp_path), str(tmp_path / 'out')]) == 2
    err = capsys.readouterr().err
    assert 'Test1200' in err and 'test/Test1200/{input,target}' in err
