"""Exact resume through the stock runner: a run SIGKILLed after (or while) saving a state and restarted with
``--auto_resume`` reproduces the uninterrupted run bit for bit, with 0 and with 2 DataLoader workers."""
import glob

import pytest
import torch
from conftest import run, tb_scalars, tiny_train_options, write_options

TOTAL = 10  # 10 pairs, batch 2: 5 iterations per epoch, so the runs cross an epoch boundary


def train(work, data, env, workers, extra_args=(), **fault):
    opt = write_options(work / 'opt.yml', tiny_train_options(data, 'exact', TOTAL, workers=workers))
    return run(['python', '-m', 'basicsr.train', '-opt', opt, *extra_args], cwd=work, env=dict(env, **fault),
               check=False)


def final_weights(work):
    return torch.load(work / 'experiments' / 'exact' / 'models' / 'net_g_latest.pth', weights_only=True)


def losses(work):
    return tb_scalars(work / 'tb_logger' / 'exact', 'losses/l_pixel')


@pytest.fixture(scope='module')
def reference(small_pairs, fault_env, tmp_path_factory):
    work = tmp_path_factory.mktemp('reference')
    proc = train(work, small_pairs, fault_env, workers=0)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return work


def assert_same_run(work, reference):
    ref, got = losses(reference), losses(work)
    assert sorted(ref) == list(range(1, TOTAL + 1))
    assert got == ref, {k: (ref[k], got.get(k)) for k in ref if got.get(k) != ref[k]}
    a, b = final_weights(reference), final_weights(work)
    for key in ('params', 'params_ema'):
        assert a[key].keys() == b[key].keys()
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key]), f'{key} differ from the uninterrupted run'


def test_killed_after_a_state_resumes_bit_exactly(reference, small_pairs, fault_env, tmp_path):
    killed = train(tmp_path, small_pairs, fault_env, workers=0, FAULT_KILL_AFTER_STATE='6')
    assert killed.returncode == -9, 'the fault plugin should have killed the run'
    assert not (tmp_path / 'experiments' / 'exact' / 'models' / 'net_g_latest.pth').exists()
    resumed = train(tmp_path, small_pairs, fault_env, workers=0, extra_args=['--auto_resume'])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    log = '\n'.join(open(p).read() for p in glob.glob(str(tmp_path / 'experiments' / 'exact' / '*.log')))
    assert 'Resuming training from epoch: 1, iter: 6.' in log
    assert 'its first 1 batches were trained already and are skipped' in log
    assert 'runpy' not in resumed.stderr and 'unpredictable' not in resumed.stderr
    assert_same_run(tmp_path, reference)


def test_two_workers_killed_mid_save_with_a_damaged_state_resume_bit_exactly(reference, small_pairs, fault_env,
                                                                               tmp_path):
    killed = train(tmp_path, small_pairs, fault_env, workers=2, FAULT_KILL_IN_SAVE='8')
    assert killed.returncode == -9
    states = tmp_path / 'experiments' / 'exact' / 'training_states'
    leftovers = glob.glob(str(states / '8.state.tmp*'))
    assert len(leftovers) == 1 and not (states / '8.state').exists()
    damaged = states / '6.state'
    damaged.write_bytes(damaged.read_bytes()[:len(damaged.read_bytes()) // 2])  # truncated, as by a full disk
    resumed = train(tmp_path, small_pairs, fault_env, workers=2, extra_args=['--auto_resume'])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert 'training state ' + str(damaged) in resumed.stderr and 'cannot be used' in resumed.stderr
    assert 'Removed 1 file(s) left by interrupted saves' in resumed.stdout + resumed.stderr
    assert not glob.glob(str(states / '*.tmp*'))
    log = '\n'.join(open(p).read() for p in glob.glob(str(tmp_path / 'experiments' / 'exact' / '*.log')))
    assert 'Resuming training from epoch: 0, iter: 4.' in log
    assert_same_run(tmp_path, reference)  # 2 workers give the very batches of the 0-worker reference
