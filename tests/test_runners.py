"""Stock ``python -m basicsr.train`` / ``basicsr.test`` and our wrappers, end to end in subprocesses."""
import glob
import os
import re
import sysconfig

import cv2
import pytest
import torch
import yaml
from basicsr.utils.registry import ARCH_REGISTRY
from conftest import run

import basicsr_restore  # noqa: F401
from basicsr_restore.core.registry import OURS

SITE = sysconfig.get_paths()['purelib']
#: every network this package ships (each has options/demo/<Name>_demo.yml)
SHIPPED = [n for n in OURS['arch'] if ARCH_REGISTRY.get(n).__module__.startswith('basicsr_restore.')]


def train_options(data, name, total_iter, **extra):
    opt = {
        'name': name, 'model_type': 'RestorationModel', 'num_gpu': 0, 'manual_seed': 0,
        'datasets': {
            'train': {'name': 'demo_train', 'type': 'PairedRestorationDataset',
                      'dataroot_gt': str(data / 'train' / 'gt.lmdb'), 'dataroot_lq': str(data / 'train' / 'lq.lmdb'),
                      'io_backend': {'type': 'lmdb'}, 'gt_size': 64, 'use_hflip': True, 'use_rot': True,
                      'num_worker_per_gpu': 1, 'batch_size_per_gpu': 2, 'dataset_enlarge_ratio': 1,
                      'prefetch_mode': None},
            'val': {'name': 'demo_val', 'type': 'PairedRestorationDataset', 'dataroot_gt': str(data / 'val' / 'gt'),
                    'dataroot_lq': str(data / 'val' / 'lq'), 'io_backend': {'type': 'disk'}},
        },
        'network_g': {'type': 'IRNeXt', 'num_res': 1, 'base_channel': 8},
        'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None},
        'train': {'ema_decay': 0.9, 'optim_g': {'type': 'AdamW', 'lr': 1e-3},
                  'scheduler': {'type': 'WarmupCosineLR', 'warmup_iter': 1}, 'total_iter': total_iter,
                  'grad_clip': 0.01, 'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0},
                  'fft_opt': {'type': 'FFTLoss', 'loss_weight': 0.1}},
        'val': {'val_freq': 1000, 'save_img': False,
                'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 0, 'test_y_channel': False}}},
        'logger': {'print_freq': 1, 'save_checkpoint_freq': 2, 'use_tb_logger': True},
    }
    opt.update(extra)
    return opt


def write_yaml(path, opt):
    path.write_text(yaml.safe_dump(opt, sort_keys=False))
    return str(path)


def logs(folder):
    return '\n'.join(open(p).read() for p in sorted(glob.glob(os.path.join(folder, '*.log'))))


@pytest.fixture(scope='module')
def trained(demo_data, tmp_path_factory):
    """Stock runner, started from a directory of its own: 4 iterations in a new interpreter (the other runs of the
    suite start from the warm runner, see conftest.run), then --auto_resume up to 6."""
    work = tmp_path_factory.mktemp('run')
    first = write_yaml(work / 'first.yml', train_options(demo_data, 'tiny', 4))
    proc1 = run(['python', '-m', 'basicsr.train', '-opt', first], cwd=work, fresh=True)  # a new interpreter
    second = write_yaml(work / 'second.yml', train_options(demo_data, 'tiny', 6))
    proc2 = run(['python', '-m', 'basicsr.train', '-opt', second, '--auto_resume'], cwd=work)
    return work, proc1, proc2


def test_stock_train_writes_under_the_current_directory(trained):
    work, proc1, _ = trained
    exp = work / 'experiments' / 'tiny'
    assert (exp / 'models' / 'net_g_4.pth').is_file()
    assert (exp / 'training_states' / '4.state').is_file()
    assert (work / 'tb_logger' / 'tiny').is_dir()
    for folder in ('experiments', 'results', 'tb_logger'):
        assert not os.path.exists(os.path.join(SITE, folder)), f'{folder} written into site-packages'
    text = logs(exp)
    assert 'Model [RestorationModel] is created.' in text
    assert re.search(r'l_pixel: \S+ l_fft: \S+', text)
    assert re.search(r'# psnr: \d+\.\d+', text)
    assert 'RuntimeWarning' not in proc1.stderr and 'unpredictable' not in proc1.stderr  # runpy's double import


def test_auto_resume_continues_where_it_stopped(trained):
    work, _, proc2 = trained
    exp = work / 'experiments' / 'tiny'
    text = logs(exp)
    assert 'Resuming training from epoch: 0, iter: 4.' in text
    assert (exp / 'models' / 'net_g_6.pth').is_file()
    assert not glob.glob(str(work / 'experiments' / 'tiny_archived_*')), 'resume must not archive the run'
    assert not re.search(r'iter:\s+[1-4],', text.split('Resuming training')[1]), 'iterations 1-4 ran again'
    checkpoint = torch.load(exp / 'models' / 'net_g_6.pth', weights_only=True)
    assert set(checkpoint) == {'params', 'params_ema', 'network_g'}
    assert checkpoint['network_g']['type'] == 'IRNeXt'  # the file names its network (infer needs no --arch)
    assert any('bn.running_var' in k for k in checkpoint['params_ema'])


def test_stock_test_runner_pads_and_writes_results(trained, demo_data):
    work, _, _ = trained
    opt = {
        'name': 'tiny_test', 'model_type': 'RestorationModel', 'num_gpu': 0,
        'datasets': {'test_1': {'name': 'demo_val', 'type': 'PairedRestorationDataset',
                                'dataroot_gt': str(demo_data / 'val' / 'gt'),
                                'dataroot_lq': str(demo_data / 'val' / 'lq')}},
        'network_g': {'type': 'IRNeXt', 'num_res': 1, 'base_channel': 8},
        'path': {'pretrain_network_g': str(work / 'experiments' / 'tiny' / 'models' / 'net_g_latest.pth'),
                 'param_key_g': 'params_ema', 'strict_load_g': True},
        'val': {'save_img': True, 'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 0}}},
    }
    proc = run(['python', '-m', 'basicsr.test', '-opt', write_yaml(work / 'test.yml', opt)], cwd=work)
    assert 'RuntimeWarning' not in proc.stderr and 'unpredictable' not in proc.stderr
    # the explicit wrapper, from another directory
    other = work / 'elsewhere'
    other.mkdir()
    # ... with a speed switch from the option file: same scores
    wrapped = write_yaml(work / 'test2.yml', dict(opt, name='wrapped_test', speed={'channels_last': True}))
    run(['python', '-m', 'basicsr_restore.test', '-opt', wrapped], cwd=other)
    scores = []
    for results in (work / 'results' / 'tiny_test', other / 'results' / 'wrapped_test'):
        saved = glob.glob(str(results / 'visualization' / 'demo_val' / '*.png'))
        assert len(saved) == 1
        assert cv2.imread(saved[0]).shape == cv2.imread(str(demo_data / 'val' / 'gt' / 'chelsea.png')).shape
        scores.append(float(re.search(r'# psnr: (\d+\.\d+)', logs(results)).group(1)))
    assert 'Speed switches: channels_last on cpu' in logs(other / 'results' / 'wrapped_test')
    assert abs(scores[0] - scores[1]) < 1e-3


def test_wrapper_runs_train_with_cwd_as_root(demo_data, tmp_path):
    opt = write_yaml(tmp_path / 'w.yml', train_options(demo_data, 'wrapped', 2))
    run(['python', '-m', 'basicsr_restore.train', '-opt', opt], cwd=tmp_path)
    assert (tmp_path / 'experiments' / 'wrapped' / 'models' / 'net_g_latest.pth').is_file()
    opt = write_yaml(tmp_path / 'w2.yml', train_options(demo_data, 'wrapped', 4))
    run(['python', '-m', 'basicsr_restore.train', '-opt', opt, '--auto_resume'], cwd=tmp_path)
    assert 'Resuming training from epoch: 0, iter: 2.' in logs(tmp_path / 'experiments' / 'wrapped')


def test_opt_out_leaves_basicsr_untouched(tmp_path):
    env = {'BASICSR_RESTORE_NO_AUTOLOAD': '1'}
    proc = run(['python', '-c', 'import basicsr'], cwd=tmp_path, env=env, check=False)
    assert proc.returncode != 0 and 'functional_tensor' in proc.stderr
    code = ('import basicsr_restore_autoload as a; a.install_fallbacks(); import basicsr\n'
            'from basicsr.utils.registry import ARCH_REGISTRY; print("IRNeXt" in ARCH_REGISTRY, a.LOADED)')
    assert run(['python', '-c', code], cwd=tmp_path, env=env).stdout.split() == ['False', '[]']
    code = 'import basicsr_restore; from basicsr.utils.registry import ARCH_REGISTRY; print("IRNeXt" in ARCH_REGISTRY)'
    assert run(['python', '-c', code], cwd=tmp_path, env=env).stdout.strip() == 'True'


def test_report_scores_input_and_output_and_writes_strips(trained):
    work, _, _ = trained
    proc = run(['basicsr-restore', 'report', '-opt', str(work / 'second.yml')], cwd=work)
    row = next(line for line in proc.stdout.splitlines() if line.startswith('chelsea'))
    psnr_in, psnr_out = map(float, row.split()[1:3])
    assert 19 < psnr_in < 21.5  # sigma-25 noise
    assert psnr_out != psnr_in
    strip = cv2.imread(str(work / 'results' / 'tiny_report' / 'chelsea_strip.png'))
    assert strip.shape == (300, 3 * 451, 3)
    missing = run(['basicsr-restore', 'report', '-opt', str(work / 'first.yml'), '--weights', 'nope.pth'], cwd=work,
                  check=False)
    assert missing.returncode == 2 and "weights 'nope.pth' not found" in missing.stderr


@pytest.mark.parametrize('network', SHIPPED)
def test_demo_option_file_trains_through_the_stock_runner(network, demo_data, tmp_path):
    """options/demo/<Net>_demo.yml as shipped (relative data paths), cut to 2 iterations and a validation."""
    from conftest import ROOT
    (tmp_path / 'datasets').mkdir()
    os.symlink(demo_data, tmp_path / 'datasets' / 'demo')
    opt = os.path.join(ROOT, 'options', 'demo', f'{network}_demo.yml')
    overrides = ['train:total_iter=2', 'train:scheduler:warmup_iter=1', 'val:val_freq=2',
                 'logger:save_checkpoint_freq=2', 'logger:print_freq=1', 'datasets:train:batch_size_per_gpu=2']
    run(['python', '-m', 'basicsr.train', '-opt', opt, '--force_yml', *overrides], cwd=tmp_path)
    text = logs(tmp_path / 'experiments' / f'{network}_demo')
    assert f'Network [{network}] is created.' in text
    assert re.search(r'# psnr: \d+\.\d+', text)
    assert (tmp_path / 'experiments' / f'{network}_demo' / 'models' / 'net_g_2.pth').is_file()
