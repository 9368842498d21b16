"""LMDB round trips (our writer, basicsr's make_lmdb_from_imgs, 16-bit) and every bad input of the dataset."""
import os

import cv2
import lmdb
import numpy as np
import pytest
from basicsr.data.paired_image_dataset import PairedImageDataset
from basicsr.utils.lmdb_util import make_lmdb_from_imgs
from conftest import noisy, photo, run, write_folder

import basicsr_restore  # noqa: F401
from basicsr_restore.commands.prepare.store import write_pairs
from basicsr_restore.core.errors import DataError
from basicsr_restore.data.lmdb_io import LmdbWriter, read_meta_info
from basicsr_restore.data.paired_dataset import PairedRestorationDataset


def dataset(gt, lq, phase='val', **opt):
    return PairedRestorationDataset(dict(name='t', phase=phase, dataroot_gt=str(gt), dataroot_lq=str(lq), **opt))


def as_uint(tensor, top):
    """Dataset tensor (RGB CHW float) back to BGR HWC integers."""
    return np.round(tensor.numpy().transpose(1, 2, 0)[:, :, ::-1] * top).astype(np.int64)


@pytest.mark.parametrize('dtype,top', [(np.uint8, 255), (np.uint16, 65535)])
def test_our_writer_round_trip_keeps_every_bit(tmp_path, dtype, top):
    gt = {f'p{i}.x.png': photo((40, 48), i, dtype) for i in range(3)}  # dotted names: keys must be made safe
    lq = {name: noisy(img, i) for i, (name, img) in enumerate(gt.items())}
    write_folder(tmp_path / 'gt', gt)
    write_folder(tmp_path / 'lq', lq)
    pairs = [(n[:-4], str(tmp_path / 'gt' / n), str(tmp_path / 'lq' / n)) for n in gt]
    summary = write_pairs(pairs, str(tmp_path / 'out'), crop=32, step=16)
    assert summary['pairs'] == 3 and summary['sub_images'] == 3 * 2 * 2  # rows at 0, 8 (border); columns 0, 16
    keys = [k for k, _ in read_meta_info(str(tmp_path / 'out' / 'gt.lmdb'))]
    assert keys[:2] == ['p0_x_s001', 'p0_x_s002'] and all('.' not in k for k in keys)
    ds = dataset(tmp_path / 'out' / 'gt.lmdb', tmp_path / 'out' / 'lq.lmdb')
    item = ds[ds.keys.index('p1_x_s002')]
    assert np.array_equal(as_uint(item['gt'], top), gt['p1.x.png'][:32, 16:48])
    assert np.array_equal(as_uint(item['lq'], top), lq['p1.x.png'][:32, 16:48])
    if dtype == np.uint16:
        assert len(np.unique(as_uint(item['gt'], top))) > 256


def test_basicsr_reads_our_lmdb(tmp_path):
    imgs = {f'a.{i}.png': photo((32, 32), i) for i in range(2)}
    write_pairs([(n[:-4], img, noisy(img)) for n, img in imgs.items()], str(tmp_path))
    stock = PairedImageDataset(dict(phase='val', scale=1, dataroot_gt=str(tmp_path / 'gt.lmdb'),
                                    dataroot_lq=str(tmp_path / 'lq.lmdb'), io_backend={'type': 'lmdb'}))
    assert len(stock) == 2
    assert stock[0]['gt'].shape == (3, 32, 32)


def test_we_read_lmdbs_written_by_basicsr(tmp_path):
    imgs = {f'im{i}.png': photo((36, 40), i) for i in range(3)}
    for kind, images in (('gt', imgs), ('lq', {n: noisy(v) for n, v in imgs.items()})):
        write_folder(tmp_path / kind, images)
        make_lmdb_from_imgs(str(tmp_path / kind), str(tmp_path / f'{kind}.lmdb'), sorted(images),
                            [n[:-4] for n in sorted(images)], map_size=1 << 24)
    ds = dataset(tmp_path / 'gt.lmdb', tmp_path / 'lq.lmdb', phase='train', gt_size=32, use_hflip=True, use_rot=True)
    assert len(ds) == 3
    item = ds[1]
    assert item['gt'].shape == (3, 32, 32) and item['lq_path'] == 'im1'


def test_disk_folders_and_filename_template(tmp_path):
    write_folder(tmp_path / 'gt', {'x_gt.png': photo((33, 35))})
    write_folder(tmp_path / 'lq', {'x.png': noisy(photo((33, 35)))})
    item = dataset(tmp_path / 'gt', tmp_path / 'lq', filename_tmpl='{}_gt')[0]
    assert item['gt'].shape == (3, 33, 35) and item['lq_path'].endswith('x.png')


def test_map_grows_and_an_interrupted_write_never_looks_complete(tmp_path):
    path = str(tmp_path / 'x.lmdb')
    with LmdbWriter(path, map_size=1 << 14, commit_every=2) as w:  # 16 KB: far too small for 6 images
        for i in range(6):
            w.put(f'k{i}', photo((64, 64), i))
    assert len(read_meta_info(path)) == 6
    with pytest.raises(FileExistsError, match='left untouched'):
        LmdbWriter(path)
    with pytest.raises(RuntimeError):
        with LmdbWriter(str(tmp_path / 'y.lmdb')) as w:
            w.put('k0', photo())
            raise RuntimeError('interrupted')
    assert not os.path.exists(tmp_path / 'y.lmdb') and os.path.exists(tmp_path / 'y.lmdb.partial')
    with LmdbWriter(path, overwrite=True) as w:
        w.put('only', photo())
    assert [k for k, _ in read_meta_info(path)] == ['only']


def test_prepare_paired_cli(tmp_path):
    write_folder(tmp_path / 'gt' / 'scene1', {'000001.png': photo((70, 50), 1)})
    write_folder(tmp_path / 'gt' / 'scene2', {'000001.png': photo((70, 50), 2)})
    write_folder(tmp_path / 'lq' / 'scene1', {'000001.png': photo((70, 50), 3)})
    write_folder(tmp_path / 'lq' / 'scene2', {'000001.png': photo((70, 50), 4)})
    args = ['basicsr-restore', 'prepare', 'paired', '--gt', 'gt', '--lq', 'lq', '--out', 'out', '--crop', '32',
            '--step', '16', '--thresh-size', '4']
    proc = run(args, cwd=tmp_path)
    # rows 0,16,32 (+38: 6 px left > 4), columns 0,16 (+18: 2 px left <= 4 is dropped) -> 4 x 2 per image
    assert 'wrote 16 pairs from 2 images' in proc.stdout
    keys = [k for k, _ in read_meta_info(str(tmp_path / 'out' / 'gt.lmdb'))]
    assert keys[0] == 'scene1/000001_s001' and len(set(keys)) == 16
    again = run(args, cwd=tmp_path, check=False)
    assert again.returncode == 2 and 'already exists; it is left untouched' in again.stderr
    assert len(read_meta_info(str(tmp_path / 'out' / 'gt.lmdb'))) == 16


# ----------------------------------------------------------------------------------- bad inputs
@pytest.fixture
def lmdb_pair(tmp_path):
    imgs = [(f'i{i}', photo((64, 64), i), noisy(photo((64, 64), i))) for i in range(2)]
    write_pairs(imgs, str(tmp_path))
    return tmp_path / 'gt.lmdb', tmp_path / 'lq.lmdb'


def test_missing_root(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"dataset 't' \(val\): dataroot_gt '.*nope' does not exist"):
        dataset(tmp_path / 'nope', tmp_path)


def test_key_in_meta_info_but_not_in_lmdb(lmdb_pair):
    for root in lmdb_pair:  # both meta files name a key the LMDBs do not hold
        meta = root / 'meta_info.txt'
        meta.write_text(meta.read_text().replace('i1.png', 'ghost.png'))
    ds = dataset(*lmdb_pair)
    with pytest.raises(DataError, match=r"dataset 't' \(val\): gt image 'ghost' is listed in .*meta_info.txt but not"):
        ds[ds.keys.index('ghost')]


def test_incomplete_lmdb(lmdb_pair):
    for root in lmdb_pair:
        meta = root / 'meta_info.txt'
        meta.write_text(meta.read_text() + 'extra.png (64,64,3) 1\n')
    with pytest.raises(ValueError, match='lists 3 images but the LMDB holds 2'):
        dataset(*lmdb_pair)


def test_undecodable_bytes(lmdb_pair):
    env = lmdb.open(str(lmdb_pair[1]), map_size=1 << 24)
    with env.begin(write=True) as txn:
        txn.put(b'i0', b'not an image')
    env.close()
    with pytest.raises(ValueError, match=r"lq image 'i0' in .*lq.lmdb: the stored bytes are not a decodable image"):
        dataset(*lmdb_pair)[0]


def test_gt_lq_size_mismatch(tmp_path):
    write_folder(tmp_path / 'gt', {'a.png': photo((40, 40))})
    write_folder(tmp_path / 'lq', {'a.png': photo((40, 36))})
    with pytest.raises(ValueError, match=r"image 'a': GT is 40x40 but LQ is 40x36"):
        dataset(tmp_path / 'gt', tmp_path / 'lq')[0]


def test_patch_larger_than_image(lmdb_pair):
    ds = dataset(*lmdb_pair, phase='train', gt_size=96)
    with pytest.raises(ValueError,
                       match=r"dataset 't' \(train\): image 'i0' in .*gt.lmdb is 64x64, smaller than gt_size 96"):
        ds[0]


def test_wrong_channel_count(tmp_path):
    gray = cv2.cvtColor(photo((32, 32)), cv2.COLOR_BGR2GRAY)
    write_folder(tmp_path / 'gt', {'g.png': gray})
    write_folder(tmp_path / 'lq', {'g.png': gray})
    message = r"gt image '.*g.png' has 1 channels, the dataset expects 3 \(option channels\)"
    with pytest.raises(ValueError, match=message):
        dataset(tmp_path / 'gt', tmp_path / 'lq')[0]
    assert dataset(tmp_path / 'gt', tmp_path / 'lq', channels=1)[0]['gt'].shape == (1, 32, 32)


def test_missing_gt_size_in_training(lmdb_pair):
    with pytest.raises(ValueError, match='option gt_size'):
        dataset(*lmdb_pair, phase='train')


@pytest.mark.parametrize('bits', [8, 16])
def test_patches_cut_before_the_float_conversion_are_bit_identical_to_converting_first(tmp_path, bits):
    """The pipeline crops and flips integer pixels and converts only the patch; a sample must hold exactly the
    numbers of the straightforward order (convert the whole image, then crop, flip and rotate)."""
    import random

    import torch
    from basicsr.data.transforms import augment
    from basicsr.utils import img2tensor

    from basicsr_restore.core.imageio import batch_to_float, decode, to_float
    top = 255 if bits == 8 else 65535
    dtype = np.uint8 if bits == 8 else np.uint16
    gts = {f'p{i}.png': photo((40, 52), seed=i, dtype=dtype) for i in range(3)}
    write_folder(tmp_path / 'gt', gts)
    write_folder(tmp_path / 'lq', {k: (v.astype(np.int64) * 7 // 8).astype(dtype) for k, v in gts.items()})
    ds = dataset(tmp_path / 'gt', tmp_path / 'lq', phase='train', gt_size=24, use_hflip=True, use_rot=True)

    def converted_first(index):
        key = ds.keys[index]
        gt, lq = (to_float(decode(ds.paths[key][s], s), s) for s in ('gt', 'lq'))
        size = ds.gt_size
        top, left = random.randint(0, gt.shape[0] - size), random.randint(0, gt.shape[1] - size)
        gt, lq = (img[top:top + size, left:left + size] for img in (gt, lq))
        return img2tensor(augment([gt, lq], ds.hflip, ds.rot), bgr2rgb=True, float32=True)

    for seed in range(12):
        random.seed(seed)
        sample = ds[seed % 3]
        assert sample['gt'].dtype == (torch.uint8 if bits == 8 else torch.uint16)  # training batches: integers
        random.seed(seed)
        gt, lq = converted_first(seed % 3)
        # the model's device-side conversion gives exactly the numbers of converting first on the CPU
        assert torch.equal(batch_to_float(sample['gt'][None], 'cpu')[0], gt)
        assert torch.equal(batch_to_float(sample['lq'][None], 'cpu')[0], lq)
        assert gt.dtype == torch.float32 and gt.max() <= 1.0
    assert as_uint(ds[0]['gt'], top).max() <= top
