"""A bad sample stops a run with the one line that names it, wherever it was read: in a DataLoader worker of
``basicsr.train``, in the main process (validation, ``basicsr.test``), in a worker process of ``prepare``. The
traceback goes to the run's log file, not to the terminal."""
import glob
import re

import lmdb
import pytest
import torch
from conftest import noisy, photo, run, tiny_train_options, write_folder, write_options
from torch.utils.data import DataLoader

from basicsr_restore.core.errors import DataError

BAD_KEY = 'p02'
#: what the main process and the runners say about the corrupted value (dataset, phase, key, LMDB, problem)
MESSAGE = (r"dataset '{name}' \({phase}\): gt image 'p02' in .*gt\.lmdb: the stored bytes are not a decodable "
           r'image')


@pytest.fixture
def corrupt(tmp_path):
    """Four 32x32 pairs as PNG LMDBs (``train``) with the GT value of ``p02`` replaced by bytes that are no image, and
    one clean pair as folders (``val``)."""
    gts = {f'p{i:02d}.png': photo((32, 32), seed=i) for i in range(4)}
    write_folder(tmp_path / 'src' / 'gt', gts)
    write_folder(tmp_path / 'src' / 'lq', {n: noisy(img, seed=i) for i, (n, img) in enumerate(gts.items())})
    run(['basicsr-restore', 'prepare', 'paired', '--gt', str(tmp_path / 'src' / 'gt'), '--lq',
         str(tmp_path / 'src' / 'lq'), '--out', str(tmp_path / 'train'), '--format', 'png', '--workers', '1'],
        cwd=tmp_path)
    env = lmdb.open(str(tmp_path / 'train' / 'gt.lmdb'), map_size=1 << 24)
    with env.begin(write=True) as txn:
        txn.put(BAD_KEY.encode(), b'not an image at all')
    env.close()
    write_folder(tmp_path / 'val' / 'gt', {'v.png': gts['p00.png']})
    write_folder(tmp_path / 'val' / 'lq', {'v.png': noisy(gts['p00.png'])})
    return tmp_path


def test_a_worker_re_raises_the_main_process_message(corrupt):
    from basicsr_restore.data.paired_dataset import PairedRestorationDataset
    ds = PairedRestorationDataset(dict(name='w', phase='val', dataroot_gt=str(corrupt / 'train' / 'gt.lmdb'),
                                       dataroot_lq=str(corrupt / 'train' / 'lq.lmdb')))
    with pytest.raises(DataError, match=MESSAGE.format(name='w', phase='val')) as here:
        ds[ds.keys.index(BAD_KEY)]
    assert here.value.worker_traceback is None and '\n' not in str(here.value)
    loader = DataLoader(torch.utils.data.Subset(ds, [ds.keys.index(BAD_KEY)]), num_workers=1)
    with pytest.raises(DataError) as there:
        next(iter(loader))
    assert str(there.value) == str(here.value)  # the worker's text turned back into the one line
    assert there.value.worker_traceback.startswith('Caught DataError in DataLoader worker process 0.')
    assert 'Traceback (most recent call last)' in there.value.worker_traceback


def stopped_with_one_line(runner_and_options, folder, name, phase):
    """``python -m RUNNER -opt OPTIONS`` fails with the dataset's one line last on stderr and no traceback there;
    returns that line."""
    runner, options = runner_and_options
    proc = run(['python', '-m', runner, '-opt', options], cwd=folder, check=False)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode != 0 and 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    assert re.fullmatch('basicsr-restore: ' + MESSAGE.format(name=name, phase=phase) + '.*', last), last
    return last


def test_training_stops_with_one_line_when_a_worker_reads_a_corrupt_value(corrupt):
    opt = tiny_train_options(corrupt, 'corrupt', 4, workers=2)
    options = write_options(corrupt / 'train.yml', opt)
    last = stopped_with_one_line(['basicsr.train', options], corrupt, 'small', 'train')
    logs = glob.glob(str(corrupt / 'experiments' / 'corrupt' / 'train_corrupt_*.log'))
    assert len(logs) == 1
    log = open(logs[0], encoding='utf-8').read()
    assert last in log and 'Traceback (most recent call last)' in log
    assert re.search(r'Caught DataError in DataLoader worker process \d\.\nOriginal Traceback', log)


def test_a_test_run_stops_with_one_line_on_a_corrupt_test_set(corrupt):
    from basicsr_restore.archs.mirnet_arch import MIRNet
    network = {'type': 'MIRNet', 'n_feat': 8, 'n_RRG': 1, 'n_MSRB': 1}
    torch.save({'params': MIRNet(n_feat=8, n_RRG=1, n_MSRB=1).state_dict()}, corrupt / 'net_g.pth')
    test = {'name': 'corrupt_test', 'model_type': 'RestorationModel', 'num_gpu': 0, 'network_g': network,
            'datasets': {'test_1': {'name': 'lmdb_test', 'type': 'PairedRestorationDataset',
                                    'dataroot_gt': str(corrupt / 'train' / 'gt.lmdb'),
                                    'dataroot_lq': str(corrupt / 'train' / 'lq.lmdb'), 'io_backend': {'type': 'lmdb'}}},
            'val': {'save_img': False}, 'path': {'pretrain_network_g': str(corrupt / 'net_g.pth')}}
    stopped_with_one_line(['basicsr.test', write_options(corrupt / 'test.yml', test)], corrupt, 'lmdb_test', 'test')
    logs = glob.glob(str(corrupt / 'results' / 'corrupt_test' / 'test_corrupt_test_*.log'))
    assert len(logs) == 1 and 'Traceback (most recent call last)' in open(logs[0], encoding='utf-8').read()


def test_prepare_stops_with_one_line_naming_a_corrupt_source_file(tmp_path):
    gts = {f'p{i}.png': photo((32, 32), seed=i) for i in range(4)}
    write_folder(tmp_path / 'gt', gts)
    write_folder(tmp_path / 'lq', {n: noisy(img) for n, img in gts.items()})
    bad = tmp_path / 'gt' / 'p2.png'
    bad.write_bytes(bad.read_bytes()[:60])  # a truncated PNG
    proc = run(['basicsr-restore', 'prepare', 'paired', '--gt', str(tmp_path / 'gt'), '--lq', str(tmp_path / 'lq'),
                '--out', str(tmp_path / 'out'), '--workers', '2'], cwd=tmp_path, check=False)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode != 0 and 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    assert last == (f"basicsr-restore prepare: error: gt source image '{bad}': not a file OpenCV can decode (PNG, "
                    'TIFF, JPEG, BMP, WebP), or a damaged one.'), last
    assert sorted(p.name for p in (tmp_path / 'out').iterdir()) == ['gt.lmdb.partial', 'lq.lmdb.partial']
