"""Shared fixtures: subprocess helpers and small data made with the project's own tools."""
import glob
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

BIN = os.path.dirname(sys.executable)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: threads of each process the tests start, and of the test process: under `pytest -n 2` two workers already fill the
#: two cores, and OpenMP threads beyond them spin against each other
THREADS = os.environ.get('BASICSR_RESTORE_TEST_THREADS') or ('1' if os.environ.get('PYTEST_XDIST_WORKER') else '2')
torch.set_num_threads(int(THREADS))


def _base_env():
    env = dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS=THREADS)
    env.pop('BASICSR_RESTORE_NO_AUTOLOAD', None)
    return env


#: the modules whose runs start from the warm runner (tests/warm_runner.py)
WARM_MODULES = ('basicsr.train', 'basicsr.test', 'basicsr_restore.train', 'basicsr_restore.test')
_WARM = {}


def _warm_runner():
    """This worker's warm runner (started at the first run that uses it), or None when it cannot start."""
    proc = _WARM.get('proc')
    if proc is None or proc.poll() is not None:
        proc = subprocess.Popen([sys.executable, os.path.join(ROOT, 'tests', 'warm_runner.py')], cwd=ROOT,
                                env=_base_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        _WARM['proc'] = proc
    return proc


def _warm_run(args, cwd, timeout):
    """``python -m MODULE ARGS`` forked from the warm runner: a CompletedProcess as subprocess.run gives."""
    import json
    import select
    import signal
    import tempfile
    proc = _warm_runner()
    with tempfile.TemporaryDirectory() as tmp:
        job = {'module': args[2], 'args': list(args[3:]), 'cwd': os.path.abspath(str(cwd)),
               'stdout': os.path.join(tmp, 'out'), 'stderr': os.path.join(tmp, 'err')}
        proc.stdin.write(json.dumps(job) + '\n')
        proc.stdin.flush()
        pid = json.loads(proc.stdout.readline())['pid']
        if not select.select([proc.stdout], [], [], timeout)[0]:
            os.kill(pid, signal.SIGKILL)
            proc.stdout.readline()
            raise subprocess.TimeoutExpired(args, timeout)
        code = json.loads(proc.stdout.readline())['returncode']
        with open(job['stdout'], encoding='utf-8', errors='replace') as f, \
                open(job['stderr'], encoding='utf-8', errors='replace') as g:
            return subprocess.CompletedProcess(args, code, f.read(), g.read())


def run(args, cwd, env=None, check=True, timeout=300, fresh=False):
    """Run ``args`` (``python`` means this interpreter; ``basicsr-restore`` its console script).

    ``python -m basicsr.train|basicsr.test`` (and our ``basicsr_restore.train|test``) without ``env`` start from the
    warm runner (tests/warm_runner.py: forked from an interpreter that imported basicsr through the startup hook, so
    the run does not pay torch's and basicsr's import again); ``fresh=True``, any ``env``, or
    ``BASICSR_RESTORE_TEST_FRESH=1`` start a new interpreter."""
    if (args[:2] == ['python', '-m'] and len(args) > 2 and args[2] in WARM_MODULES and not env and not fresh
            and os.environ.get('BASICSR_RESTORE_TEST_FRESH', '') in ('', '0')):
        proc = _warm_run(args, cwd, timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f'{args} failed ({proc.returncode}, warm runner):\n{proc.stdout[-4000:]}\n'
                                 f'{proc.stderr[-4000:]}')
        return proc
    args = [sys.executable if a == 'python' else os.path.join(BIN, a) if a == 'basicsr-restore' else a for a in args]
    full_env = _base_env()
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


def cli(capsys, *args):
    """``basicsr-restore ARGS`` run in this process: ``(exit status, stdout, stderr)``."""
    from basicsr_restore.commands.cli import main
    rc = main([str(a) for a in args])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


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


@pytest.fixture(scope='session')
def fault_env(tmp_path_factory):
    """Environment that loads ``tests/fault_plugin.py`` through a ``basicsr.plugins`` entry point."""
    site = tmp_path_factory.mktemp('fault_site')
    info = site / 'faultplugin-0.1.dist-info'
    info.mkdir()
    (info / 'METADATA').write_text('Metadata-Version: 2.1\nName: faultplugin\nVersion: 0.1\n')
    (info / 'entry_points.txt').write_text('[basicsr.plugins]\nfaults = fault_plugin:register\n')
    return {'PYTHONPATH': os.pathsep.join([str(site), os.path.join(ROOT, 'tests')]
                                          + [p for p in [os.environ.get('PYTHONPATH')] if p])}


@pytest.fixture(scope='session')
def small_pairs(tmp_path_factory):
    """10 noisy/clean 32x32 pairs as LMDB (``train``) and 3 odd-sized pairs as folders (``val``)."""
    base = tmp_path_factory.mktemp('small')
    gts = {f'p{i:02d}.png': photo((32, 32), seed=i) for i in range(10)}
    write_folder(base / 'src' / 'gt', gts)
    write_folder(base / 'src' / 'lq', {name: noisy(img, seed=100 + i) for i, (name, img) in enumerate(gts.items())})
    run(['basicsr-restore', 'prepare', 'paired', '--gt', str(base / 'src' / 'gt'), '--lq', str(base / 'src' / 'lq'),
         '--out', str(base / 'train')], cwd=base)
    vals = {f'v{i}.png': photo((36 + 4 * i, 44 - 4 * i), seed=50 + i) for i in range(3)}
    write_folder(base / 'val' / 'gt', vals)
    write_folder(base / 'val' / 'lq', {name: noisy(img, seed=200 + i) for i, (name, img) in enumerate(vals.items())})
    return base


def tb_scalars(folder, tag):
    """``{step: value}`` of a tensorboard tag over every event file in ``folder`` (the last write of a step wins)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    values = {}
    for path in sorted(glob.glob(os.path.join(str(folder), 'events.out.tfevents.*')), key=os.path.getmtime):
        for event in EventFileLoader(path).Load():
            for value in event.summary.value:
                if value.tag == tag:
                    values[event.step] = value.tensor.float_val[0] if value.HasField('tensor') else value.simple_value
    return values


def tiny_train_options(data, name, total_iter, batch=2, workers=0, **train):
    """A tiny MIRNet (no BatchNorm) trained on :func:`small_pairs`, every loss logged to tensorboard."""
    opt = {
        'name': name, 'model_type': 'RestorationModel', 'num_gpu': 0, 'manual_seed': 7,
        'datasets': {
            'train': {'name': 'small', 'type': 'PairedRestorationDataset',
                      'dataroot_gt': str(data / 'train' / 'gt.lmdb'), 'dataroot_lq': str(data / 'train' / 'lq.lmdb'),
                      'io_backend': {'type': 'lmdb'}, 'gt_size': 16,
                      'use_hflip': True, 'use_rot': True, 'num_worker_per_gpu': workers, 'batch_size_per_gpu': batch,
                      'dataset_enlarge_ratio': 1, 'prefetch_mode': None},
            'val': {'name': 'small_val', 'type': 'PairedRestorationDataset', 'dataroot_gt': str(data / 'val' / 'gt'),
                    'dataroot_lq': str(data / 'val' / 'lq'), 'io_backend': {'type': 'disk'}},
        },
        'network_g': {'type': 'MIRNet', 'n_feat': 8, 'n_RRG': 1, 'n_MSRB': 1},
        'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None},
        'train': {'ema_decay': 0.9, 'optim_g': {'type': 'Adam', 'lr': 2e-3}, 'scheduler': {'type': 'WarmupCosineLR',
                  'warmup_iter': 2}, 'total_iter': total_iter, 'grad_clip': 0.5,
                  'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0}, **train},
        'val': {'val_freq': 10 ** 6, 'save_img': False,
                'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 0, 'test_y_channel': False}}},
        'logger': {'print_freq': 1, 'save_checkpoint_freq': 2, 'use_tb_logger': True},
        'dist_params': {'backend': 'gloo'},
    }
    return opt


def built(tmp_path, data, network=None, speed=None, **train):
    """A RestorationModel for in-process training steps (the tiny MIRNet of :func:`tiny_train_options`)."""
    from basicsr.models import build_model
    opt = tiny_train_options(data, 'guard', 100, **train)
    if network:
        opt['network_g'] = network
    if speed:
        opt['speed'] = speed
    opt['train']['scheduler'] = {'type': 'MultiStepLR', 'milestones': [1000]}
    root = tmp_path / 'experiments' / 'guard'
    opt.update(is_train=True, dist=False, rank=0, world_size=1, auto_resume=False, root_path=str(tmp_path))
    opt['path'].update(experiments_root=str(root), models=str(root / 'models'),
                       training_states=str(root / 'training_states'), log=str(root),
                       visualization=str(root / 'visualization'))
    for key, ds in opt['datasets'].items():
        ds['phase'] = key
    os.makedirs(root / 'models')
    os.makedirs(root / 'training_states')
    return build_model(opt)


def batch(seed=0, nan=False, size=64):
    """A training batch of 2 random pairs (optionally one NaN pixel in the input)."""
    torch.manual_seed(seed)
    gt = torch.rand(2, 3, size, size)
    lq = (gt + 0.1 * torch.randn_like(gt)).clamp(0, 1)
    if nan:
        lq[0, 0, 5, 5] = float('nan')
    return {'lq': lq, 'gt': gt}


def write_options(path, opt):
    import yaml
    path.write_text(yaml.safe_dump(opt, sort_keys=False))
    return str(path)
