"""``basicsr-restore prepare gopro|hide|realblur`` on miniature copies of the distributed layouts.

Frames are 160x96 (1280x720 / 8, rounded to IRNeXt's multiple of 32) cut with crop 64 / step 32, which gives
the same 2 x 4 grid as 512 / 256 on a real frame; one real-size frame checks the default recipe itself.
"""
import os

import cv2
import numpy as np
import pytest
from conftest import photo, prepared_once, write_folder

from basicsr_restore.commands.cli import main
from basicsr_restore.commands.prepare.store import grid_positions
from basicsr_restore.data.lmdb_io import read_meta_info
from basicsr_restore.data.paired_dataset import PairedRestorationDataset

FRAME = (96, 160)  # h, w


def blurred(img):
    return cv2.GaussianBlur(img, (0, 0), 1.5)


def make_gopro_large(root, sequences=None):
    """``GOPRO_Large/{train,test}/<sequence>/{blur,blur_gamma,sharp}/<frame>.png`` with repeated frame names."""
    sequences = sequences or {'train': ['GOPR0372_07_00', 'GOPR0374_11_01'], 'test': ['GOPR0384_11_00']}
    seed = 0
    for split, seqs in sequences.items():
        for seq in seqs:
            for frame in ('000001', '000002'):
                seed += 1
                sharp = photo(FRAME, seed)
                base = os.path.join(root, 'GOPRO_Large', split, seq)
                write_folder(os.path.join(base, 'sharp'), {f'{frame}.png': sharp})
                write_folder(os.path.join(base, 'blur'), {f'{frame}.png': blurred(sharp)})
                write_folder(os.path.join(base, 'blur_gamma'), {f'{frame}.png': blurred(sharp) // 2})
    return root


def any_size_photo(size, seed):
    """``photo`` for any size: larger than the 512x512 source means resized."""
    if max(size) <= 448:
        return photo(size, seed)
    return cv2.resize(photo((448, 448), seed), (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


def make_flattened(root, split, names, lq='input', gt='target', seed=0, size=FRAME):
    for i, name in enumerate(names):
        sharp = any_size_photo(size, seed + i)
        write_folder(os.path.join(root, split, gt), {name: sharp})
        write_folder(os.path.join(root, split, lq), {name: blurred(sharp)})
    return root


def prepared_gopro(tmp_path_factory):
    """The miniature GOPRO_Large prepared into LMDB (shared by the tests of several modules)."""
    def build(base):
        make_gopro_large(str(base / 'raw'))
        assert main(['prepare', 'gopro', str(base / 'raw'), str(base / 'GoPro'), '--crop', '64', '--step', '32']) == 0
        return base / 'GoPro'

    return prepared_once('gopro', tmp_path_factory, build)


def prepared_hide(tmp_path_factory):
    """A miniature flattened HIDE copy (Restormer's ``test/HIDE/{input,target}``) prepared into LMDB."""
    def build(base):
        make_flattened(str(base / 'raw'), 'test/HIDE', ['1fromGOPR0950.png', '2fromGOPR1096.png'], seed=20)
        assert main(['prepare', 'hide', str(base / 'raw'), str(base / 'HIDE')]) == 0
        return base / 'HIDE'

    return prepared_once('hide', tmp_path_factory, build)


@pytest.fixture(scope='module')
def gopro(tmp_path_factory):
    return prepared_gopro(tmp_path_factory)


def test_gopro_large_gives_eight_crops_per_frame_with_sequence_keys(gopro):
    keys = [k for k, _ in read_meta_info(str(gopro / 'train' / 'gt.lmdb'))]
    assert len(keys) == 4 * 8  # 4 frames, the 2 x 4 grid of a 1280x720 frame
    assert keys[:2] == ['GOPR0372_07_00-000001_s001', 'GOPR0372_07_00-000001_s002']
    assert 'GOPR0374_11_01-000001_s008' in keys  # the frame names repeat: the sequence prefix keeps them apart
    meta = read_meta_info(str(gopro / 'train' / 'lq.lmdb'))
    assert {shape for _, shape in meta} == {(64, 64, 3)}
    test = read_meta_info(str(gopro / 'test' / 'gt.lmdb'))
    assert [k for k, _ in test] == ['GOPR0384_11_00-000001', 'GOPR0384_11_00-000002']
    assert test[0][1] == (96, 160, 3)  # test frames stay whole


def test_prepared_crops_hold_the_blur_frames_not_blur_gamma(gopro, tmp_path):
    ds = PairedRestorationDataset(dict(name='g', phase='val', dataroot_gt=str(gopro / 'train' / 'gt.lmdb'),
                                       dataroot_lq=str(gopro / 'train' / 'lq.lmdb')))
    item = ds[ds.keys.index('GOPR0372_07_00-000001_s006')]  # second row (y 32), second column (x 32)
    sharp = photo(FRAME, 1)
    got = np.round(item['gt'].numpy().transpose(1, 2, 0)[:, :, ::-1] * 255).astype(np.uint8)
    assert np.array_equal(got, sharp[32:96, 32:96])
    lq = np.round(item['lq'].numpy().transpose(1, 2, 0)[:, :, ::-1] * 255).astype(np.uint8)
    assert np.array_equal(lq, blurred(sharp)[32:96, 32:96])
    centre = PairedRestorationDataset(dict(name='g', phase='val', dataroot_gt=str(gopro / 'test' / 'gt.lmdb'),
                                           dataroot_lq=str(gopro / 'test' / 'lq.lmdb'), val_crop_size=64))
    assert centre[0]['gt'].shape == (3, 64, 64)
    whole = photo(FRAME, 5)  # first test frame; centre crop at ((96-64)//2, (160-64)//2)
    got = np.round(centre[0]['gt'].numpy().transpose(1, 2, 0)[:, :, ::-1] * 255).astype(np.uint8)
    assert np.array_equal(got, whole[16:80, 48:112])


def test_flattened_copies_give_the_same_keys(tmp_path, capsys):
    make_flattened(str(tmp_path / 'restormer'), 'train', ['GOPR0372_07_00-000001.png'])
    make_flattened(str(tmp_path / 'restormer'), 'test/GoPro', ['GOPR0384_11_00-000001.png'])
    assert main(['prepare', 'gopro', str(tmp_path / 'restormer'), str(tmp_path / 'a'), '--crop', '64',
                 '--step', '32']) == 0
    make_flattened(str(tmp_path / 'mimo'), 'train', ['GOPR0372_07_00_000001.png'], lq='blur', gt='sharp')
    make_flattened(str(tmp_path / 'mimo'), 'test', ['GOPR0384_11_00_000001.png'], lq='blur', gt='sharp')
    assert main(['prepare', 'gopro', str(tmp_path / 'mimo'), str(tmp_path / 'b'), '--crop', '64', '--step', '32']) == 0
    for split in ('train', 'test'):
        a = read_meta_info(str(tmp_path / 'a' / split / 'gt.lmdb'))
        assert a == read_meta_info(str(tmp_path / 'b' / split / 'gt.lmdb'))
    assert a == [('GOPR0384_11_00-000001', (96, 160, 3))]
    out = capsys.readouterr().out
    assert 'train' in out and '16,824 crops' in out  # the summary states what the full download gives


def test_real_size_frame_gives_the_published_grid(tmp_path):
    make_flattened(str(tmp_path / 'raw'), 'train', ['GOPR0372_07_00-000047.png'], size=(720, 1280))
    assert main(['prepare', 'gopro', str(tmp_path / 'raw' / 'train'), str(tmp_path / 'out'), '--split', 'train']) == 0
    meta = read_meta_info(str(tmp_path / 'out' / 'train' / 'gt.lmdb'))
    assert len(meta) == 8 and meta[-1] == ('GOPR0372_07_00-000047_s008', (512, 512, 3))
    assert grid_positions(720, 512, 256, 0) == [0, 208] and grid_positions(1280, 512, 256, 0) == [0, 256, 512, 768]
    assert 2103 * len(grid_positions(720, 512, 256, 0)) * len(grid_positions(1280, 512, 256, 0)) == 16824


def test_wrong_layout_is_one_clear_message(tmp_path, capsys):
    make_flattened(str(tmp_path / 'raw'), 'train', ['a.png'])  # the test split is missing
    assert main(['prepare', 'gopro', str(tmp_path / 'raw'), str(tmp_path / 'out')]) == 2
    err = capsys.readouterr().err
    assert 'GoPro test split' in err and 'GOPRO_Large: {train,test}/<sequence>/{blur,sharp}' in err
    assert "holds train/" in err
    assert not (tmp_path / 'out').exists()  # nothing written before the layout was checked
    write_folder(str(tmp_path / 'raw' / 'test' / 'input'), {'b.png': photo((32, 32))})
    write_folder(str(tmp_path / 'raw' / 'test' / 'target'), {'c.png': photo((32, 32))})
    assert main(['prepare', 'gopro', str(tmp_path / 'raw'), str(tmp_path / 'out')]) == 2
    assert "have no ground truth with the same name" in capsys.readouterr().err


def test_rerun_keeps_complete_splits_and_restarts_interrupted_ones(tmp_path, capsys):
    raw = make_gopro_large(str(tmp_path / 'raw'), {'train': ['GOPR0372_07_00'], 'test': ['GOPR0384_11_00']})
    out = tmp_path / 'out'
    args = ['prepare', 'gopro', raw, str(out), '--crop', '64', '--step', '32']
    assert main(args) == 0
    before = (out / 'train' / 'gt.lmdb' / 'data.mdb').stat().st_mtime_ns
    # an interrupted second split: a .partial folder and no test LMDBs
    os.rename(out / 'test' / 'gt.lmdb', out / 'test' / 'gt.lmdb.partial')
    os.rename(out / 'test' / 'lq.lmdb', out / 'test' / 'lq.lmdb.partial')
    capsys.readouterr()
    assert main(args) == 0
    text = capsys.readouterr().out
    assert 'kept' in text and (out / 'test' / 'gt.lmdb' / 'meta_info.txt').is_file()
    assert not (out / 'test' / 'gt.lmdb.partial').exists()
    assert (out / 'train' / 'gt.lmdb' / 'data.mdb').stat().st_mtime_ns == before  # untouched
    os.rename(out / 'test' / 'lq.lmdb', out / 'test' / 'lq.lmdb.x')  # half a split: refuse without --overwrite
    assert main(args) == 2
    assert 'holds only gt.lmdb' in capsys.readouterr().err
    assert main(args + ['--overwrite']) == 0
    assert len(read_meta_info(str(out / 'test' / 'lq.lmdb'))) == 2


def test_hide_and_realblur_layouts(tmp_path):
    hide = tmp_path / 'HIDE_dataset'
    for subset, names in (('test-close-ups', ['1fromGOPR0950.png']), ('test-long-shot', ['2fromGOPR1096.png'])):
        for i, name in enumerate(names):
            sharp = photo((48, 64), i)
            write_folder(str(hide / 'GT'), {name: sharp})
            write_folder(str(hide / 'test' / subset), {name: blurred(sharp)})
    assert main(['prepare', 'hide', str(tmp_path), str(tmp_path / 'HIDE')]) == 0
    keys = [k for k, _ in read_meta_info(str(tmp_path / 'HIDE' / 'test' / 'lq.lmdb'))]
    assert keys == ['1fromGOPR0950', '2fromGOPR1096']
    rb = tmp_path / 'rb'
    for variant in ('J', 'R'):
        lines = []
        for scene in ('scene230', 'scene231'):
            sharp = photo((40, 56), 7)
            base = f'RealBlur-{variant}_ECC_IMCORR_centroid_itensity_ref/{scene}'
            write_folder(str(rb / base / 'gt'), {'gt_1.png': sharp})
            write_folder(str(rb / base / 'blur'), {'blur_1.png': blurred(sharp)})
            lines.append(f'{base}/gt/gt_1.png {base}/blur/blur_1.png')
        (rb / f'RealBlur_{variant}_test_list.txt').write_text('\n'.join(lines) + '\n')
    assert main(['prepare', 'realblur', str(rb), str(tmp_path / 'RealBlur')]) == 0
    for variant in ('J', 'R'):
        keys = [k for k, _ in read_meta_info(str(tmp_path / 'RealBlur' / 'test' / f'RealBlur_{variant}' / 'gt.lmdb'))]
        assert keys == ['scene230-blur_1', 'scene231-blur_1']
