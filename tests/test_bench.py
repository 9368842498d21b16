"""``basicsr-restore bench``: MACs against the published anchors, every JSON field, modes and comparisons."""
import json

import pytest

import basicsr_restore  # noqa: F401
from basicsr_restore.bench import count_macs
from basicsr_restore.cli import main
from basicsr_restore.register import OURS

# GMACs at 256 x 256 of the official configurations, counted with FlopCounterMode on the authors' code
ANCHORS = {'IRNeXt': 38.7, 'ChaIR': 136.8, 'MIRNet': 480.0, 'DRCNet': 114.4}

TINY = ['--arch', 'IRNeXt', '--size', '64', '--warmup', '1', '--runs', '2', '--arch-args', 'num_res=1',
        'base_channel=8']
RECORD_FIELDS = {'network', 'config', 'config_text', 'mode', 'device', 'device_name', 'torch', 'threads',
                 'requested_size', 'input_size', 'params', 'macs', 'gmacs', 'macs_by_op', 'macs_method',
                 'latency_ms', 'timer', 'warmup', 'peak_memory_mb', 'memory_method', 'train', 'psnr_vs_fp32_db',
                 'best_search', 'error', 'date'}


def cli(capsys, *args):
    rc = main([str(a) for a in args])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


@pytest.mark.parametrize('name', sorted(ANCHORS))
def test_macs_of_the_official_configurations(name):
    if name not in OURS['arch']:
        pytest.skip(f'{name} is not registered yet')
    macs, by_op, method = count_macs(name, {}, (256, 256))
    assert macs / 1e9 == pytest.approx(ANCHORS[name], rel=0.10)
    assert 'aten.convolution' in by_op and 'meta tensors' in method


def test_one_small_case_has_every_field(tmp_path, capsys):
    path = tmp_path / 'b.json'
    rc, out, err = cli(capsys, 'bench', '--json', path, *TINY)
    assert rc == 0, err
    assert '| IRNeXt | num_res=1, base_channel=8 | fp32 | cpu |' in out
    data = json.loads(path.read_text())
    assert data['format'] == 'basicsr-restore-bench/1' and len(data['records']) == 1
    r = data['records'][0]
    assert set(r) == RECORD_FIELDS and r['error'] is None
    from basicsr_restore.archs.irnext_arch import IRNeXt
    assert r['params'] == sum(p.numel() for p in IRNeXt(num_res=1, base_channel=8).parameters())
    assert r['input_size'] == [64, 64] and r['macs'] > 0 and r['gmacs'] == r['macs'] / 1e9
    assert set(r['latency_ms']) == {'median', 'min', 'max', 'iqr', 'runs', 'times'} and r['latency_ms']['runs'] == 2
    assert 0 < r['latency_ms']['min'] <= r['latency_ms']['median'] <= r['latency_ms']['max']
    assert r['peak_memory_mb'] is None and r['memory_method'].startswith('n/a on CPU')
    assert r['timer'] == 'time.perf_counter'
    train = r['train']
    assert train['batch'] == 2 and train['patch'] == [64, 64] and train['it_per_s'] > 0
    assert train['loss'] == 'L1Loss + FFTLoss on every output (options/train/GoPro/IRNeXt.yml)'  # the recipe's
    assert train['optimizer'] == 'Adam' and train['ema'] is True
    # the NaN guard's cost is measured on the same steps (BatchNorm buffers of IRNeXt are snapshotted)
    assert train['it_per_s_without_nan_guard'] > 0 and train['step_ms_without_nan_guard']['runs'] == 2
    assert train['nan_guard_cost_pct'] == pytest.approx(
        100 * (train['step_ms']['median'] / train['step_ms_without_nan_guard']['median'] - 1))
    assert f"| {train['nan_guard_cost_pct']:+.1f} % |" in out
    # the file is never replaced without --overwrite, and it can be compared with itself
    rc, _, err = cli(capsys, 'bench', '--json', path, *TINY)
    assert rc == 2 and '--overwrite' in err
    rc, out, _ = cli(capsys, 'bench', '--load', path, '--vs', path)
    assert rc == 0 and '| IRNeXt | ' in out and '1.00x' in out


def test_vs_mode_runs_both_and_prints_the_ratio(tmp_path, capsys):
    path = tmp_path / 'vs.json'
    rc, out, err = cli(capsys, 'bench', '--no-train', '--vs', 'bf16+channels_last', '--json', path, *TINY)
    assert rc == 0, err
    assert '**bf16+channels_last vs fp32**' in out and 'forward: x faster than fp32' in out
    modes = [r['mode'] for r in json.loads(path.read_text())['records']]
    assert modes == ['fp32', 'bf16+channels_last']


def test_bad_arguments(capsys):
    assert 'use one of fp32' in cli(capsys, 'bench', '--mode', 'fp64', *TINY)[2]
    assert 'give N or HxW' in cli(capsys, 'bench', *TINY, '--size', 'big')[2]
    rc, _, err = cli(capsys, 'bench', '--arch', 'NoSuchNet')
    assert rc == 2 and 'not registered' in err
    rc, _, err = cli(capsys, 'bench', *TINY[:-2], 'num_res=1', 'no_such_arg=3')
    assert rc == 2 and "unexpected keyword argument 'no_such_arg'" in err


def test_best_mode_keeps_the_accuracy_bar_and_says_what_it_tried(tmp_path, capsys):
    path = tmp_path / 'best.json'
    rc, out, err = cli(capsys, 'bench', '--no-train', '--mode', 'best', '--json', path, *TINY)
    assert rc == 0, err
    r = json.loads(path.read_text())['records'][0]
    tried = [t['mode'] for t in r['best_search']]
    assert tried[-2:] == ['channels_last', 'fp32'] and r['mode'] == f"best={r['mode'][5:]}" and r['mode'][5:] in tried
    assert r['psnr_vs_fp32_db'] >= 45 and all(t['meets_bar'] for t in r['best_search'] if 'error' not in t)
    assert f"| {r['mode']} | cpu |" in out


def test_data_pipeline_of_a_recipe_and_warnings_for_runs_of_different_machines(tmp_path, capsys, small_pairs):
    from conftest import tiny_train_options, write_options
    opt = write_options(tmp_path / 'train.yml', tiny_train_options(small_pairs, 'data', 2))
    path = tmp_path / 'data.json'
    rc, out, err = cli(capsys, 'bench', '--data', '-opt', opt, '--workers', '0', '--batches', '6', '--json', path)
    assert rc == 0, err
    r = json.loads(path.read_text())['data'][0]
    assert (r['batch'], r['workers'], r['batches'], r['samples_in_set']) == (2, 0, 6, 10)
    assert r['samples_per_s'] == pytest.approx(r['batches_per_s'] * 2) and r['samples_per_s'] > 0
    assert 0 < r['in_process']['decode_share_pct'] < 100
    assert '| PairedRestorationDataset | 2 | 0 |' in out
    rc, _, err = cli(capsys, 'bench', '--data', '-opt', tmp_path / 'none.yml')
    assert rc == 2 and 'does not exist' in err
    # two result files from different thread counts: the comparison says so
    a, b = tmp_path / 'a.json', tmp_path / 'b.json'
    assert cli(capsys, 'bench', '--no-train', '--json', a, *TINY)[0] == 0
    data = json.loads(a.read_text())
    data['records'][0]['threads'] += 6
    b.write_text(json.dumps(data))
    rc, _, err = cli(capsys, 'bench', '--load', a, '--vs', b)
    assert rc == 0 and 'differ in threads' in err
