"""``basicsr-restore prepare sidd|sidd-val`` on miniature SIDD-Medium scene folders and .mat block files."""
import os

import numpy as np
import pytest
import scipy.io
from conftest import noisy, photo, prepared_once, write_folder

from basicsr_restore.commands.cli import main
from basicsr_restore.commands.prepare.store import grid_positions
from basicsr_restore.core.imageio import batch_to_float
from basicsr_restore.data.lmdb_io import read_meta_info
from basicsr_restore.data.paired_dataset import PairedRestorationDataset

SCENES = ('0001_001_S6_00100_00060_3200_L', '0002_001_S6_00100_00020_3200_N')
FRAME = (76, 100)


def make_sidd_medium(root):
    """``SIDD_Medium_Srgb/Data/<scene>/{0001_NOISY_SRGB_010.PNG, 0001_GT_SRGB_010.PNG, ..._011}``."""
    for s, scene in enumerate(SCENES):
        instance = scene[:4]
        for capture in ('010', '011'):
            gt = photo(FRAME, s * 2 + int(capture[-1]))
            write_folder(os.path.join(root, 'SIDD_Medium_Srgb', 'Data', scene),
                         {f'{instance}_GT_SRGB_{capture}.PNG': gt,
                          f'{instance}_NOISY_SRGB_{capture}.PNG': noisy(gt, s, sigma=10)})
    return root


def make_validation_mats(root, images=2, blocks=3, size=32):
    """The two validation files (uint8 RGB, shape (images, blocks, size, size, 3)) written with scipy."""
    rng = np.random.default_rng(0)
    gt = np.stack([np.stack([photo((size, size), i * blocks + b)[:, :, ::-1] for b in range(blocks)])
                   for i in range(images)])
    noise = rng.normal(0, 10, gt.shape)
    noisy_blocks = np.clip(np.round(gt + noise), 0, 255).astype(np.uint8)
    os.makedirs(root, exist_ok=True)
    scipy.io.savemat(os.path.join(root, 'ValidationGtBlocksSrgb.mat'), {'ValidationGtBlocksSrgb': gt})
    scipy.io.savemat(os.path.join(root, 'ValidationNoisyBlocksSrgb.mat'), {'ValidationNoisyBlocksSrgb': noisy_blocks})
    return gt, noisy_blocks


def prepared_sidd(tmp_path_factory):
    """Miniature SIDD prepared into ``SIDD/train`` (crop 32, step 24) and ``SIDD/val``."""
    def build(base):
        make_sidd_medium(str(base / 'raw'))
        make_validation_mats(str(base / 'raw' / 'val'))
        assert main(['prepare', 'sidd', str(base / 'raw'), str(base / 'SIDD'), '--crop', '32', '--step', '24']) == 0
        assert main(['prepare', 'sidd-val', str(base / 'raw'), str(base / 'SIDD')]) == 0
        return base / 'SIDD'

    return prepared_once('sidd', tmp_path_factory, build)


@pytest.fixture(scope='module')
def sidd(tmp_path_factory):
    return prepared_sidd(tmp_path_factory)


def test_scene_folders_become_crops_keyed_without_noisy(sidd):
    keys = [k for k, _ in read_meta_info(str(sidd / 'train' / 'gt.lmdb'))]
    per_frame = len(grid_positions(76, 32, 24, 0)) * len(grid_positions(100, 32, 24, 0))
    assert per_frame == 12 and len(keys) == 4 * per_frame
    assert keys[0] == '0001_SRGB_010_s001' and '0002_SRGB_011_s012' in keys
    assert keys == [k for k, _ in read_meta_info(str(sidd / 'train' / 'lq.lmdb'))]
    ds = PairedRestorationDataset(dict(name='s', phase='train', gt_size=16, dataroot_gt=str(sidd / 'train' / 'gt.lmdb'),
                                       dataroot_lq=str(sidd / 'train' / 'lq.lmdb'), use_hflip=True, use_rot=True))
    item = ds[0]
    gt, lq = (batch_to_float(item[k], 'cpu') for k in ('gt', 'lq'))
    assert gt.shape == lq.shape == (3, 16, 16)
    assert 0.01 < (gt - lq).abs().mean() < 0.1  # sigma-10 noise


def test_validation_mat_blocks_become_pairs_in_image_block_order(sidd, tmp_path):
    gt, noisy_blocks = make_validation_mats(str(tmp_path))  # same seeds as the fixture
    meta = read_meta_info(str(sidd / 'val' / 'gt.lmdb'))
    assert [k for k, _ in meta] == [f'ValidationBlocksSrgb_{i:04d}' for i in range(6)]
    assert meta[0][1] == (32, 32, 3)
    ds = PairedRestorationDataset(dict(name='v', phase='val', dataroot_gt=str(sidd / 'val' / 'gt.lmdb'),
                                       dataroot_lq=str(sidd / 'val' / 'lq.lmdb')))
    item = ds[ds.keys.index('ValidationBlocksSrgb_0004')]  # image 1, block 1
    rgb = np.round(item['lq'].numpy().transpose(1, 2, 0) * 255).astype(np.uint8)  # the dataset gives RGB
    assert np.array_equal(rgb, noisy_blocks[1, 1])
    assert np.array_equal(np.round(item['gt'].numpy().transpose(1, 2, 0) * 255).astype(np.uint8), gt[1, 1])


def test_missing_or_unreadable_mat_files_get_clear_messages(tmp_path, capsys):
    os.makedirs(tmp_path / 'only_gt')
    scipy.io.savemat(str(tmp_path / 'only_gt' / 'ValidationGtBlocksSrgb.mat'),
                     {'ValidationGtBlocksSrgb': np.zeros((1, 1, 8, 8, 3), np.uint8)})
    assert main(['prepare', 'sidd-val', str(tmp_path / 'only_gt'), str(tmp_path / 'out')]) == 2
    err = capsys.readouterr().err
    assert "missing ['ValidationNoisyBlocksSrgb.mat']" in err
    # a MATLAB v7.3 file (HDF5): scipy cannot read it; without h5py the message says what to do
    v73 = tmp_path / 'v73'
    os.makedirs(v73)
    header = b'MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 .'
    for name in ('ValidationGtBlocksSrgb', 'ValidationNoisyBlocksSrgb'):
        (v73 / f'{name}.mat').write_bytes(header.ljust(116, b' ') + b'\0' * 8 + b'\x00\x02IM' + b'\0' * 400)
    try:
        import h5py  # noqa: F401
        pytest.skip('h5py is installed: v7.3 files are read, no message to check')
    except ImportError:
        pass
    assert main(['prepare', 'sidd-val', str(v73), str(tmp_path / 'out')]) == 2
    err = capsys.readouterr().err
    assert 'MATLAB v7.3 (HDF5) file' in err and 'pip install h5py' in err


def test_sidd_layout_errors(tmp_path, capsys):
    os.makedirs(tmp_path / 'Data' / SCENES[0])
    write_folder(str(tmp_path / 'Data' / SCENES[0]), {'0001_NOISY_SRGB_010.PNG': photo((16, 16))})
    assert main(['prepare', 'sidd', str(tmp_path), str(tmp_path / 'out')]) == 2
    assert 'have no GT image beside them' in capsys.readouterr().err
    assert main(['prepare', 'sidd', str(tmp_path / 'nowhere'), str(tmp_path / 'out')]) == 2
    err = capsys.readouterr().err
    assert 'SIDD_Medium_Srgb/Data/<scene>/0001_NOISY_SRGB_010.PNG' in err and 'does not exist' in err


def test_sidd_crop_count_of_a_real_frame():
    """The spec's recipe (512 / step 384, border windows) on the largest SIDD frame size (S6, 5328x3000)."""
    assert len(grid_positions(3000, 512, 384, 0)) * len(grid_positions(5328, 512, 384, 0)) == 8 * 14
