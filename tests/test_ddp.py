"""DDP on the CPU with gloo, through the stock ``basicsr`` runners.

Training (torchrun): two ranks on one node and two one-rank "nodes" joined by torchrun's c10d rendezvous train
the same steps as one process with the same global batch; a NaN injected on one rank only makes every rank
skip that step (no hang). Testing (``--launcher slurm``, Slurm's variables set by hand): the test set is
restored in shards and gathered, equal to one process.
"""
import csv
import os
import socket
import subprocess
import sys

import pytest
import torch
from conftest import BIN, run, tb_scalars, tiny_train_options, write_options

TOTAL = 6
#: the loss is NaN at iteration 2 on rank 1 only, at 3 on rank 0 only (one process: both on its only rank); its
#: gradient stays finite, so only the all-reduced verdict keeps the other rank from stepping alone
NAN_DDP = [[2, 1], [3, 0]]
NAN_ONE = [[2, 0], [3, 0]]


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def options(data, work, batch, nan_at, name='ddp'):
    opt = tiny_train_options(data, name, TOTAL, batch=batch, fault_opt={'type': 'NaNAtLoss', 'nan_at': nan_at})
    opt['val']['val_freq'] = TOTAL
    return write_options(work / f'{name}.yml', opt)


def torchrun(*args):
    return [os.path.join(BIN, 'torchrun'), *args]


@pytest.fixture(scope='module')
def one_process(small_pairs, fault_env, tmp_path_factory):
    work = tmp_path_factory.mktemp('one')
    run(['python', '-m', 'basicsr.train', '-opt', options(small_pairs, work, 4, NAN_ONE)], cwd=work, env=fault_env)
    return work


def assert_same_training(work, reference, tolerance=1e-6):
    ref = tb_scalars(reference / 'tb_logger' / 'ddp', 'losses/l_pixel')
    got = tb_scalars(work / 'tb_logger' / 'ddp', 'losses/l_pixel')
    assert sorted(got) == sorted(ref) == list(range(1, TOTAL + 1))
    for step in ref:
        assert abs(got[step] - ref[step]) <= tolerance * abs(ref[step]), (step, got[step], ref[step])
    a = torch.load(reference / 'experiments' / 'ddp' / 'models' / 'net_g_latest.pth', weights_only=True)['params']
    b = torch.load(work / 'experiments' / 'ddp' / 'models' / 'net_g_latest.pth', weights_only=True)['params']
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst <= 1e-6 and all(torch.isfinite(v).all() for v in b.values())
    return worst


def skipped_lines(work):
    log = '\n'.join(open(os.path.join(work, 'experiments', 'ddp', f)).read()
                    for f in os.listdir(work / 'experiments' / 'ddp') if f.endswith('.log'))
    return [line for line in log.splitlines() if 'step skipped' in line]


def test_two_ranks_on_one_node_train_as_one_process_and_skip_nan_together(one_process, small_pairs, fault_env,
                                                                         tmp_path):
    opt = options(small_pairs, tmp_path, 2, NAN_DDP)
    proc = run(torchrun('--nproc_per_node=2', '--master_port', str(free_port()), '-m', 'basicsr.train', '-opt', opt,
                        '--launcher', 'pytorch'), cwd=tmp_path, env=dict(fault_env, OMP_NUM_THREADS='1'), timeout=240)
    assert 'ZeroDivisionError' not in proc.stderr and 'unpredictable' not in proc.stderr
    lines = skipped_lines(tmp_path)
    assert len(lines) == 2
    assert 'iter 2: step skipped, non-finite l_fault on rank 1;' in lines[0]
    assert 'iter 3: step skipped, non-finite l_fault on rank 0;' in lines[1]
    assert len(skipped_lines(one_process)) == 2
    assert_same_training(tmp_path, one_process)


def test_two_nodes_through_c10d_rendezvous_train_as_one_process(one_process, small_pairs, fault_env, tmp_path):
    opt = options(small_pairs, tmp_path, 2, NAN_DDP)
    endpoint = f'127.0.0.1:{free_port()}'
    env = dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1', **fault_env)
    env.pop('BASICSR_RESTORE_NO_AUTOLOAD', None)
    nodes = [subprocess.Popen(torchrun('--nnodes=2', '--nproc_per_node=1', '--rdzv-backend=c10d',
                                       f'--rdzv-endpoint={endpoint}', '--rdzv-id=basicsr-restore-test', '-m',
                                       'basicsr.train', '-opt', opt, '--launcher', 'pytorch'),
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [node.communicate(timeout=240) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], [o[1][-2000:] for o in outputs]
    assert len(skipped_lines(tmp_path)) == 2
    assert_same_training(tmp_path, one_process)


def sharded_test_options(data, work, name):
    opt = {'name': name, 'model_type': 'RestorationModel', 'num_gpu': 0, 'manual_seed': 0,
           'datasets': {'test_1': {'name': 'small_val', 'type': 'PairedRestorationDataset',
                                   'dataroot_gt': str(data / 'val' / 'gt'), 'dataroot_lq': str(data / 'val' / 'lq')}},
           'network_g': {'type': 'MIRNet', 'n_feat': 8, 'n_RRG': 1, 'n_MSRB': 1},
           'path': {'pretrain_network_g': str(work / 'weights.pth'), 'strict_load_g': True},
           'val': {'save_img': True, 'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 0},
                                                'ssim': {'type': 'calculate_ssim', 'crop_border': 0}}}}
    return write_options(work / f'{name}.yml', opt)


def read_table(path):
    with open(path, newline='') as f:
        return list(csv.reader(f))


def test_sharded_validation_under_slurm_equals_one_process(small_pairs, tmp_path):
    """``basicsr.test`` with ``--launcher slurm`` (two tasks, Slurm's variables, gloo): every image is restored
    once, by the rank that owns it, and the gathered per-image table equals the one-process table."""
    torch.manual_seed(3)
    from basicsr_restore.archs.mirnet_arch import MIRNet
    torch.save({'params': MIRNet(n_feat=8, n_RRG=1, n_MSRB=1).state_dict()}, tmp_path / 'weights.pth')
    run(['python', '-m', 'basicsr.test', '-opt', sharded_test_options(small_pairs, tmp_path, 'one')], cwd=tmp_path)
    opt = sharded_test_options(small_pairs, tmp_path, 'two')
    env = dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1', SLURM_NTASKS='2', SLURM_NODELIST='localhost',
               MASTER_ADDR='127.0.0.1', MASTER_PORT=str(free_port()))
    env.pop('BASICSR_RESTORE_NO_AUTOLOAD', None)
    procs = [subprocess.Popen([sys.executable, '-m', 'basicsr.test', '-opt', opt, '--launcher', 'slurm'], cwd=tmp_path,
                              env=dict(env, SLURM_PROCID=str(r), SLURM_LOCALID=str(r)), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for r in range(2)]
    outputs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outputs]
    one = read_table(tmp_path / 'results' / 'one' / 'small_val_metrics.csv')
    two = read_table(tmp_path / 'results' / 'two' / 'small_val_metrics.csv')
    assert [row[0] for row in one[1:]] == ['v0', 'v1', 'v2', 'mean']
    assert two == one  # every image, and the mean, to the last digit written
    for name in ('v0', 'v1', 'v2'):
        assert (tmp_path / 'results' / 'two' / 'visualization' / 'small_val' / f'{name}_two.png').is_file()
