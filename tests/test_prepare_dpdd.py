"""``basicsr-restore prepare dpdd`` on miniature 16-bit copies of both DPDD layouts, read back by the
single-image (PairedRestorationDataset) and dual-pixel (DualPixelDefocusDataset) datasets.

Images are 210x140 (1680x1120 / 8) cut with crop 64 / step 26, the same 4 x 7 grid as 512 / 204 on a real
image, so 28 windows per image of which int(0.3 * 28) = 8 are dropped.
"""
import os

import cv2
import numpy as np
import pytest
import torch
from conftest import photo, prepared_once

from basicsr_restore.commands.cli import main
from basicsr_restore.commands.prepare.store import grid_positions, keep_sharpest
from basicsr_restore.core.imageio import batch_to_float
from basicsr_restore.data.dpdd_dataset import DualPixelDefocusDataset
from basicsr_restore.data.lmdb_io import decode_value, read_format, read_meta_info, shared_env
from basicsr_restore.data.paired_dataset import PairedRestorationDataset

SIZE = (140, 210)


def views(seed):
    """(target, centre, left, right) 16-bit BGR: defocus blur, the two views shifted apart."""
    sharp = photo(SIZE, seed, np.uint16)
    blur = cv2.GaussianBlur(sharp, (0, 0), 2.0)
    left, right = np.roll(blur, 2, axis=1), np.roll(blur, -2, axis=1)
    return sharp, blur, left, right


def write16(path, img):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    assert cv2.imwrite(path, img)


def make_restormer_dpdd(root, counts=(('train', 2), ('val', 1), ('test', 2))):
    """``{train,val,test}/DPDD/{inputL,inputR,inputC,target}/<name>.png`` plus the test label files."""
    seed = 0
    for split, n in counts:
        for i in range(n):
            seed += 1
            name = f'1P0A{1000 + seed}.png'
            for folder, img in zip(('target', 'inputC', 'inputL', 'inputR'), views(seed)):
                write16(os.path.join(root, split, 'DPDD', folder, name), img)
    np.save(os.path.join(root, 'test', 'DPDD', 'indoor_labels.npy'), np.array([2]))
    np.save(os.path.join(root, 'test', 'DPDD', 'outdoor_labels.npy'), np.array([1]))
    return root


def make_canon_dpdd(root, split='test', sources=('1P0A0917', '1P0A0933'), targets=('1P0A0916', '1P0A0932')):
    """The original release: ``<split>_c/{source,target}``, ``<split>_l/source/<name>_L.png``, ``<split>_r/...``."""
    for i, (src, trg) in enumerate(zip(sources, targets)):
        sharp, blur, left, right = views(40 + i)
        write16(os.path.join(root, f'{split}_c', 'target', f'{trg}.png'), sharp)
        write16(os.path.join(root, f'{split}_c', 'source', f'{src}.png'), blur)
        write16(os.path.join(root, f'{split}_l', 'source', f'{src}_L.png'), left)
        write16(os.path.join(root, f'{split}_r', 'source', f'{src}_R.png'), right)
    return root


def prepared_dpdd(tmp_path_factory):
    def build(base):
        make_restormer_dpdd(str(base / 'raw'))
        assert main(['prepare', 'dpdd', str(base / 'raw'), str(base / 'DPDD'), '--crop', '64', '--step', '26']) == 0
        return base / 'DPDD'

    return prepared_once('dpdd', tmp_path_factory, build)


@pytest.fixture(scope='module')
def dpdd(tmp_path_factory):
    return prepared_dpdd(tmp_path_factory)


def test_grid_and_sharpness_filter_counts(dpdd):
    assert len(grid_positions(140, 64, 26, 0)) * len(grid_positions(210, 64, 26, 0)) == 28
    assert len(grid_positions(1120, 512, 204, 0)) * len(grid_positions(1680, 512, 204, 0)) == 28  # the real size
    assert 350 * (28 - int(0.3 * 28)) == 7000
    keys = {s: [k for k, _ in read_meta_info(str(dpdd / 'train' / f'{s}.lmdb'))] for s in ('gt', 'lqC', 'lqL', 'lqR')}
    assert len(keys['gt']) == 2 * 20
    assert keys['gt'] == keys['lqC'] == keys['lqL'] == keys['lqR']
    assert all(k.startswith('1P0A100') for k in keys['gt'])
    assert [k for k, _ in read_meta_info(str(dpdd / 'test' / 'gt.lmdb'))] == ['1P0A1004', '1P0A1005']
    assert (dpdd / 'test' / 'indoor.txt').read_text() == '1P0A1005\n'
    assert (dpdd / 'test' / 'outdoor.txt').read_text() == '1P0A1004\n'


def test_sixteen_bits_are_kept(dpdd):
    lmdb = str(dpdd / 'test' / 'gt.lmdb')
    with shared_env(lmdb).begin() as txn:  # the datasets of other tests may have it open
        img = decode_value(txn.get(b'1P0A1004'), read_format(lmdb), 'test')
    assert img.dtype == np.uint16 and img.shape == (140, 210, 3)
    assert np.array_equal(img, views(4)[0])


def test_the_filter_drops_the_least_sharp_windows():
    flat = np.full((16, 16, 3), 30000, np.uint16)
    sharp = photo((16, 16), 0, np.uint16)
    crops = [sharp, flat, sharp, flat.copy(), sharp]
    assert keep_sharpest(crops, 0.3) == [0, 2, 3, 4]  # int(1.5) = 1 dropped: the first of the flat ties
    assert keep_sharpest(crops, 0.5) == [0, 2, 4]
    assert keep_sharpest(crops, 0.0) == [0, 1, 2, 3, 4]


def test_single_image_and_dual_pixel_datasets_read_the_same_crops(dpdd):
    root = dpdd / 'train'
    single = PairedRestorationDataset(dict(name='c', phase='val', dataroot_gt=str(root / 'gt.lmdb'),
                                           dataroot_lq=str(root / 'lqC.lmdb')))
    dual = DualPixelDefocusDataset(dict(name='d', phase='val', dataroot_gt=str(root / 'gt.lmdb'),
                                        dataroot_lqL=str(root / 'lqL.lmdb'), dataroot_lqR=str(root / 'lqR.lmdb')))
    assert len(single) == len(dual) == 40
    a, b = single[3], dual[3]
    assert b['lq'].shape == (6, 64, 64) and torch.equal(a['gt'], b['gt'])
    assert len(torch.unique(a['gt'])) > 256  # 16-bit levels
    eight = PairedRestorationDataset(dict(name='c8', phase='val', dataroot_gt=str(root / 'gt.lmdb'),
                                          dataroot_lq=str(root / 'lqC.lmdb'), bit_depth=8))
    assert len(torch.unique(eight[3]['gt'])) <= 256  # the 8-bit convention of the single-image numbers
    assert torch.allclose(eight[3]['gt'], a['gt'], atol=1 / 255)


def test_dual_pixel_training_crops_augment_all_views_alike(dpdd, tmp_path):
    """Folders (disk backend) where left = target and right = inverted target: after random crops, flips and
    rotations the three must still match exactly."""
    gt = photo((48, 40), 3, np.uint16)
    for folder, img in (('gt', gt), ('lqL', gt), ('lqR', 65535 - gt)):
        write16(str(tmp_path / folder / 'scene.png'), img)
    ds = DualPixelDefocusDataset(dict(name='d', phase='train', gt_size=24, use_hflip=True, use_rot=True,
                                      dataroot_gt=str(tmp_path / 'gt'), dataroot_lqL=str(tmp_path / 'lqL'),
                                      dataroot_lqR=str(tmp_path / 'lqR'), io_backend={'type': 'disk'}))
    seen = set()
    for _ in range(12):
        item = ds[0]
        assert item['lq'].dtype == item['gt'].dtype == torch.uint16  # training batches: 16-bit integers
        lq, gt = (batch_to_float(item[k], 'cpu') for k in ('lq', 'gt'))
        assert lq.shape == (6, 24, 24) and gt.shape == (3, 24, 24)
        assert torch.equal(lq[:3], gt)
        assert torch.allclose(lq[3:], 1 - gt, atol=1e-6)
        seen.add(round(float(gt[0, 0, 0]), 6))
    assert len(seen) > 3  # the crops and augmentations did vary
    test = DualPixelDefocusDataset(dict(name='t', phase='val', dataroot_gt=str(dpdd / 'test' / 'gt.lmdb'),
                                        dataroot_lqL=str(dpdd / 'test' / 'lqL.lmdb'),
                                        dataroot_lqR=str(dpdd / 'test' / 'lqR.lmdb'), val_crop_size=64,
                                        meta_info_file=str(dpdd / 'test' / 'indoor.txt')))
    assert test.keys == ['1P0A1005'] and test[0]['lq'].shape == (6, 64, 64)
    sharp, _, left, _ = views(5)
    got = np.round(test[0]['lq'][:3].numpy().transpose(1, 2, 0)[:, :, ::-1] * 65535).astype(np.uint16)
    assert np.array_equal(got, left[38:102, 73:137])  # the centre crop at ((140-64)//2, (210-64)//2), 16 bits


def test_original_release_pairs_in_sorted_order_and_records_it(tmp_path, capsys):
    make_canon_dpdd(str(tmp_path / 'dd_dp_dataset_png'))
    assert main(['prepare', 'dpdd', str(tmp_path), str(tmp_path / 'out'), '--split', 'test']) == 0
    assert [k for k, _ in read_meta_info(str(tmp_path / 'out' / 'test' / 'lqL.lmdb'))] == ['1P0A0917', '1P0A0933']
    record = (tmp_path / 'out' / 'test' / 'pairs.txt').read_text().splitlines()
    assert record[1] == '1P0A0917 1P0A0916.png 1P0A0917.png 1P0A0917_L.png 1P0A0917_R.png'
    os.remove(tmp_path / 'dd_dp_dataset_png' / 'test_r' / 'source' / '1P0A0933_R.png')
    assert main(['prepare', 'dpdd', str(tmp_path), str(tmp_path / 'out2'), '--split', 'test']) == 2
    err = capsys.readouterr().err
    assert 'same (non-zero) number of images' in err and 'test_r' in err
    assert main(['prepare', 'dpdd', str(tmp_path), str(tmp_path / 'out2'), '--split', 'train']) == 2
    assert "{train,val,test}/{inputL,inputR,inputC,target}" in capsys.readouterr().err


def test_dual_pixel_dataset_errors(dpdd, tmp_path):
    root = dpdd / 'train'
    with pytest.raises(ValueError, match='option dataroot_lqR is missing'):
        DualPixelDefocusDataset(dict(name='d', phase='val', dataroot_gt=str(root / 'gt.lmdb'),
                                     dataroot_lqL=str(root / 'lqL.lmdb')))
    with pytest.raises(ValueError, match='the GT and lqR LMDBs hold different keys'):
        DualPixelDefocusDataset(dict(name='d', phase='val', dataroot_gt=str(root / 'gt.lmdb'),
                                     dataroot_lqL=str(root / 'lqL.lmdb'), dataroot_lqR=str(dpdd / 'test' / 'lqR.lmdb')))
