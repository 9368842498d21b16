"""Raw LMDB values: the same samples as PNG bit for bit, converted both ways, written the same by any number of
workers, read by basicsr's own dataset, and every damaged value named in one line."""
import os
import random

import basicsr.data  # noqa: F401  (basicsr first: the registration imports the datasets once)
import lmdb
import numpy as np
import pytest
import torch
from conftest import cli, noisy, photo

import basicsr_restore  # noqa: F401
from basicsr_restore.commands.prepare.store import Cut, WriteOptions, write_pairs, write_streams
from basicsr_restore.core.imageio import batch_to_float, to_float
from basicsr_restore.data.dpdd_dataset import DualPixelDefocusDataset
from basicsr_restore.data.lmdb_io import FORMAT_NAME, RawImage, read_format
from basicsr_restore.data.paired_dataset import PairedRestorationDataset


def frames(dtype, n=3, size=(44, 60)):
    gts = [photo(size, seed=i, dtype=dtype) for i in range(n)]
    return [(f'f{i}', gt, noisy(gt, seed=10 + i)) for i, gt in enumerate(gts)]


def pair(folder, fmt, pairs, crop=None, workers=1):
    write_pairs(pairs, str(folder), crop=crop, step=crop, write=WriteOptions(fmt=fmt, workers=workers))
    return str(folder / 'gt.lmdb'), str(folder / 'lq.lmdb')


def dataset(roots, phase='train', cls=PairedRestorationDataset, **opt):
    keys = ('dataroot_gt', 'dataroot_lq') if cls is PairedRestorationDataset else ('dataroot_gt', 'dataroot_lqL',
                                                                                 'dataroot_lqR')
    return cls(dict(name='r', phase=phase, **dict(zip(keys, roots)), **opt))


def contents(path):
    env = lmdb.open(path, readonly=True, lock=False)
    with env.begin() as txn:
        items = list(txn.cursor())
    env.close()
    return items


@pytest.mark.parametrize('dtype', [np.uint8, np.uint16])
def test_raw_and_png_give_bit_identical_samples(tmp_path, dtype):
    """Whole frames stored both ways: random patches with flips and rotations, validation crops and whole images are
    the same numbers, as integers and after the device-side float conversion."""
    pairs = frames(dtype)
    png, raw = pair(tmp_path / 'png', 'png', pairs), pair(tmp_path / 'raw', 'raw', pairs)
    assert (read_format(png[0]), read_format(raw[0])) == ('png', 'raw')
    assert open(os.path.join(png[0], 'meta_info.txt')).read() == open(os.path.join(raw[0], 'meta_info.txt')).read()
    opts = dict(gt_size=24, use_hflip=True, use_rot=True)
    a, b = dataset(png, **opts), dataset(raw, **opts)
    for seed in range(16):
        random.seed(seed)
        x = a[seed % 3]
        random.seed(seed)
        y = b[seed % 3]
        assert x['gt'].dtype == y['gt'].dtype == (torch.uint8 if dtype == np.uint8 else torch.uint16)
        for k in ('gt', 'lq'):
            assert torch.equal(x[k], y[k])
            assert torch.equal(batch_to_float(x[k], 'cpu'), batch_to_float(y[k], 'cpu'))
    for opt in ({'val_crop_size': 32}, {}):
        a, b = dataset(png, 'val', **opt), dataset(raw, 'val', **opt)
        for i in range(3):
            assert a[i]['gt'].dtype == torch.float32 and torch.equal(a[i]['gt'], b[i]['gt'])
            assert torch.equal(a[i]['lq'], b[i]['lq'])
    whole = dataset(raw, 'val')[0]['gt'].numpy().transpose(1, 2, 0)[:, :, ::-1]
    assert np.array_equal(whole, to_float(pairs[0][1]))  # exactly the frame that was stored


def test_dual_pixel_and_fork_datasets_read_raw(tmp_path):
    views = {f's{i}': {'gt': photo((40, 48), i, np.uint16), 'lqL': photo((40, 48), 10 + i, np.uint16),
                       'lqR': photo((40, 48), 20 + i, np.uint16)} for i in range(2)}
    streams = ('gt', 'lqL', 'lqR')
    for fmt in ('png', 'raw'):
        write_streams(list(views.items()), str(tmp_path / fmt), Cut(streams), WriteOptions(fmt=fmt))
    roots = {fmt: [str(tmp_path / fmt / f'{s}.lmdb') for s in streams] for fmt in ('png', 'raw')}
    a, b = (dataset(roots[f], cls=DualPixelDefocusDataset, gt_size=16, use_rot=True) for f in ('png', 'raw'))
    random.seed(3)
    x = a[1]
    random.seed(3)
    assert torch.equal(x['lq'], b[1]['lq']) and x['lq'].shape == (6, 16, 16)
    from basicsr.utils.registry import DATASET_REGISTRY
    pairs = pair(tmp_path / 'fork', 'raw', frames(np.uint8, 2))
    for name in ('PairedImageDataset_SIDD', 'Dataset_PairedImage'):
        ds = DATASET_REGISTRY.get(name)(dict(name='f', phase='train', gt_size=16, dataroot_gt=pairs[0],
                                             dataroot_lq=pairs[1]))
        assert ds[0]['gt'].shape == (3, 16, 16)


def test_basicsr_own_dataset_reads_raw_as_png(tmp_path):
    from basicsr.data.paired_image_dataset import PairedImageDataset
    pairs = frames(np.uint8, 2)
    roots = {fmt: pair(tmp_path / fmt, fmt, pairs) for fmt in ('png', 'raw')}
    stock = {fmt: PairedImageDataset(dict(phase='val', scale=1, dataroot_gt=r[0], dataroot_lq=r[1],
                                          io_backend={'type': 'lmdb'})) for fmt, r in roots.items()}
    for i in range(2):
        assert torch.equal(stock['png'][i]['gt'], stock['raw'][i]['gt'])
        assert torch.equal(stock['png'][i]['lq'], stock['raw'][i]['lq'])


def test_prepare_writes_the_same_bytes_with_any_number_of_workers(tmp_path):
    pairs = frames(np.uint8, n=5, size=(48, 64))
    for fmt in ('png', 'raw'):
        one = pair(tmp_path / f'{fmt}1', fmt, pairs, crop=32, workers=1)
        two = pair(tmp_path / f'{fmt}2', fmt, pairs, crop=32, workers=2)
        for x, y in zip(one, two):
            assert contents(x) == contents(y) and len(contents(x)) == 5 * 4
            for name in ('meta_info.txt', FORMAT_NAME):
                assert open(os.path.join(x, name)).read() == open(os.path.join(y, name)).read()


def test_lmdb_format_converts_both_ways_keeping_keys_and_meta_info(tmp_path, capsys):
    pairs = frames(np.uint16)
    src = tmp_path / 'set' / 'train'
    png = pair(src, 'png', pairs)
    (src / 'indoor.txt').write_text('f1\n')
    raw = pair(tmp_path / 'direct', 'raw', pairs)
    rc, out, _ = cli(capsys, 'prepare', 'lmdb-format', tmp_path / 'set', tmp_path / 'raw', '--format', 'raw',
                     '--workers', '2')
    assert rc == 0 and 'train' in out
    for stream, direct in zip(('gt', 'lq'), raw):
        converted = str(tmp_path / 'raw' / 'train' / f'{stream}.lmdb')
        assert read_format(converted) == 'raw' and contents(converted) == contents(direct)
        assert open(os.path.join(converted, 'meta_info.txt')).read() == open(
            os.path.join(str(src / f'{stream}.lmdb'), 'meta_info.txt')).read()
    assert (tmp_path / 'raw' / 'train' / 'indoor.txt').read_text() == 'f1\n'
    rc, _, err = cli(capsys, 'prepare', 'lmdb-format', tmp_path / 'raw', tmp_path / 'raw', '--format', 'png')
    assert rc != 0 and '--overwrite' in err  # in place only when asked
    rc, _, _ = cli(capsys, 'prepare', 'lmdb-format', tmp_path / 'raw', tmp_path / 'raw', '--format', 'png',
                   '--overwrite')
    back = str(tmp_path / 'raw' / 'train' / 'gt.lmdb')
    assert rc == 0 and read_format(back) == 'png' and contents(back) == contents(png[0])
    rc, _, err = cli(capsys, 'prepare', 'lmdb-format', tmp_path / 'set', tmp_path / 'raw', '--format', 'jpeg')
    assert rc != 0 and "--format 'jpeg': use one of png, raw." in err


def damage(path, key, value):
    env = lmdb.open(path, map_size=1 << 26)
    with env.begin(write=True) as txn:
        txn.put(key.encode(), value(txn.get(key.encode())))
    env.close()


def test_damaged_raw_values_are_named_in_one_line(tmp_path):
    roots = pair(tmp_path / 'a', 'raw', frames(np.uint8, 2))
    damage(roots[1], 'f0', lambda v: v[:-7])
    header = RawImage.HEADER.pack(RawImage.MAGIC, 1, 0, 3, 30, 88).ljust(RawImage.SIZE, b'\0')
    damage(roots[0], 'f1', lambda v: header + v[RawImage.SIZE:])  # a consistent value of another shape
    with pytest.raises(ValueError, match=r"lq image 'f0' in .*lq.lmdb: the raw value holds .* bytes but its header "
                                         r'says 44x60x3 uint8 .*truncated'):
        dataset(roots, 'val')[0]
    with pytest.raises(ValueError, match=r"gt image 'f1' in .*: the raw value is 30x88x3 but meta_info.txt says "
                                         '44x60x3'):
        dataset(roots, 'val')[1]
    roots = pair(tmp_path / 'b', 'raw', frames(np.uint8, 2))
    os.remove(os.path.join(roots[0], FORMAT_NAME))
    with pytest.raises(ValueError,
                       match=f"gt image 'f0' in .*gt.lmdb is a raw value but the LMDB has no {FORMAT_NAME}"):
        dataset(roots, 'val')[0]
    roots = pair(tmp_path / 'c', 'raw', frames(np.uint8, 2))
    with pytest.raises(ValueError, match="image 'f0' in .*gt.lmdb is 44x60, smaller than gt_size 48"):
        dataset(roots, gt_size=48)[0]
    with pytest.raises(ValueError, match=r"--format 'tiff': use one of png, raw"):
        WriteOptions.from_args(type('A', (), {'format': 'tiff'})())


def test_models_that_are_not_ours_get_float_batches():
    from basicsr_restore.host.option_checks import check_options
    opt = {'model_type': 'SRModel', 'datasets': {'train': {'type': 'PairedRestorationDataset'},
                                                 'other': {'type': 'PairedImageDataset'}}}
    check_options(opt)
    assert opt['datasets']['train']['integer_batches'] is False and 'integer_batches' not in opt['datasets']['other']
    ours = {'model_type': 'RestorationModel', 'datasets': {'train': {'type': 'PairedRestorationDataset'}}}
    try:
        check_options(ours)
    except Exception:  # noqa: BLE001 (an incomplete option tree; only the default matters here)
        pass
    assert 'integer_batches' not in ours['datasets']['train']  # ours convert on the device


def test_the_model_sees_the_same_floats_from_integer_and_float_batches(tmp_path, small_pairs):
    """A training batch as the loader gives it (uint8) and the same batch converted on the CPU first (the float path
    of before) reach the network as the same tensor."""
    from conftest import built
    from torch.utils.data import default_collate
    model = built(tmp_path, small_pairs)
    roots = [str(small_pairs / 'train' / f'{s}.lmdb') for s in ('gt', 'lq')]
    seen = {}
    for integer in (True, False):
        ds = dataset(roots, gt_size=16, use_rot=True, use_hflip=True, integer_batches=integer)
        random.seed(5)
        batch = default_collate([ds[0], ds[1]])
        assert batch['lq'].dtype == (torch.uint8 if integer else torch.float32)
        model.feed_data(batch)
        seen[integer] = (model.lq, model.gt)
    assert seen[True][0].dtype == torch.float32
    assert torch.equal(seen[True][0], seen[False][0]) and torch.equal(seen[True][1], seen[False][1])


def test_training_batches_come_in_one_shared_buffer_with_default_collate_numbers(tmp_path):
    from torch.utils.data import DataLoader, default_collate

    from basicsr_restore.data.paired_dataset import collate_one_buffer
    roots = pair(tmp_path, 'raw', frames(np.uint8, 4))
    ds = dataset(roots, gt_size=16, use_hflip=True)
    items = [ds[i] for i in range(3)]
    ours, plain = collate_one_buffer(items), default_collate(items)
    assert ours.keys() == plain.keys() and ours['lq_path'] == plain['lq_path']
    for k in ('lq', 'gt'):
        assert torch.equal(ours[k], plain[k]) and ours[k].dtype == torch.uint8
    assert ours['lq'].untyped_storage().data_ptr() == ours['gt'].untyped_storage().data_ptr()
    val = [dataset(roots, 'val')[i] for i in range(2)]  # float batches: default_collate's
    floats = collate_one_buffer(val)
    assert floats['gt'].dtype == torch.float32 and torch.equal(floats['gt'], default_collate(val)['gt'])
    random.seed(0)
    loader = DataLoader(ds, batch_size=2, num_workers=2, collate_fn=collate_one_buffer)
    batches = list(loader)  # through worker processes and shared memory
    assert len(batches) == 2 and batches[0]['gt'].shape == (2, 3, 16, 16) and batches[1]['lq'].dtype == torch.uint8
