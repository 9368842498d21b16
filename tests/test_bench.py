"""``basicsr-restore bench``: MACs against the published anchors, every JSON field, modes and comparisons."""
import ast
import importlib
import inspect
import json
import os
import pkgutil
import subprocess
import sys

import pytest
import torch
import yaml
from conftest import THREADS

import basicsr_restore  # noqa: F401
from basicsr_restore.commands import bench
from basicsr_restore.commands.bench import count_macs
from basicsr_restore.commands.cli import main
from basicsr_restore.core import speed
from basicsr_restore.core.registry import network_names

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = ['ChaIR', 'DRCNet', 'EIRN', 'IRNeXt', 'MIRNet']

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
    assert name in network_names()
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
    # the recipe's settings, as its model applies them: Adam, no EMA (ema_decay 0), max-norm 0.001
    assert train['optimizer'] == 'Adam' and train['ema'] is False and train['grad_clip'] == 0.001
    assert train['model'] == 'RestorationModel' and train['recipe'] == 'options/train/GoPro/IRNeXt.yml'
    assert train['batch_dtype'] == 'uint8' and train['speed'] == 'fp32'
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
    assert tried == bench.candidates(torch.device('cpu')) and tried[-2:] == ['channels_last', 'fp32']
    assert tried[0] == bench.speed_mode(speed.preset('cpu'))  # speed: best's rule comes first
    assert r['mode'] == f"best={r['mode'][5:]}" and r['mode'][5:] in tried
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
    assert '| PairedRestorationDataset | raw | 2 | 0 |' in out
    patch = yaml.safe_load(open(opt))['datasets']['train']['gt_size']
    assert (r['value_format'], r['batch_dtype']) == ('raw', 'uint8')
    assert r['bytes_per_batch'] == 2 * 2 * 3 * patch * patch  # lq and gt of 2 samples, one byte a value
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


# ------------------------------------------------------------------------------- training: the real step
def counting(monkeypatch, cls, name, calls):
    original = getattr(cls, name)

    def wrapper(self, *args, **kwargs):
        calls.append((self, args))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, name, wrapper)


def test_training_is_the_models_own_step_with_the_recipes_clipping(tmp_path, capsys, monkeypatch):
    """bench times RestorationModel.optimize_parameters itself: warmup + runs steps, each also without the guard;
    the recipe's gradient clipping (IRNeXt: max-norm 0.001) is applied in every one of them."""
    from basicsr_restore.models.restoration_model import RestorationModel
    from basicsr_restore.models.step_guard import NoGuard, StepGuard
    steps, feeds, clips = [], [], []
    counting(monkeypatch, RestorationModel, 'optimize_parameters', steps)
    counting(monkeypatch, RestorationModel, 'feed_data', feeds)
    clip = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, 'clip_grad_norm_', lambda params, max_norm, *a, **k: clips.append(max_norm)
                        or clip(params, max_norm, *a, **k))
    rc, out, err = cli(capsys, 'bench', '--json', tmp_path / 't.json', *TINY)  # --warmup 1 --runs 2
    assert rc == 0, err
    warmup, runs = 1, 2
    assert len(steps) == len(feeds) == 2 * (warmup + runs)  # each step timed with the guard and without it
    assert [i for _, (i,) in steps] == list(range(1, 2 * (warmup + runs) + 1))
    model = steps[0][0]
    assert type(model).__name__ == 'RestorationModel' and all(m is model for m, _ in steps)
    assert all(batch['lq'].dtype == bench.TRAIN_BATCH_DTYPE for _, (batch,) in feeds)  # as the DataLoader sends
    assert clips == [0.001] * len(steps)
    assert isinstance(model.guard, StepGuard) and not isinstance(model.guard, NoGuard)  # put back afterwards
    train = json.loads((tmp_path / 't.json').read_text())['records'][0]['train']
    assert train['grad_clip'] == 0.001 and train['step_ms']['runs'] == runs


def test_no_copy_of_the_training_step_is_left_in_bench():
    used = set()
    for info in pkgutil.iter_modules(bench.__path__):  # every module of the bench package, and its __init__
        module = importlib.import_module(f'{bench.__name__}.{info.name}')
        for tree in (ast.parse(inspect.getsource(module)), ast.parse(inspect.getsource(bench))):
            used |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
            used |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    assert len(list(pkgutil.iter_modules(bench.__path__))) >= 3
    step_parts = {'backward', 'zero_grad', 'compute_losses', 'build_losses', 'ema_update', 'model_ema',
                  'clip_grad_norm_', 'grad_scaler', 'GradScaler', 'autocast', 'verdict', 'snapshot', 'unscale_'}
    assert not used & (step_parts - {'autocast'})
    # autocast is the forward measurement's; the training measurement reaches the step only through the model
    source = inspect.getsource(bench.measure_training) + inspect.getsource(bench.bench_training)
    assert 'autocast' not in source and 'optimize_parameters' in source and 'feed_data' in source


def test_a_fork_recipe_trains_with_its_model_and_defaults(tmp_path, capsys, monkeypatch):
    """-opt with a fork's model name: ImageRestorationModel clips at 0.01 by default; the EMA, optimizer and
    losses are the file's."""
    import yaml

    from basicsr_restore.models.fork_model import ImageRestorationModel
    steps, clips = [], []
    counting(monkeypatch, ImageRestorationModel, 'optimize_parameters', steps)
    clip = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, 'clip_grad_norm_', lambda params, max_norm, *a, **k: clips.append(max_norm)
                        or clip(params, max_norm, *a, **k))
    opt = {'name': 'fork', 'model_type': 'ImageRestorationModel', 'num_gpu': 0,
           'network_g': {'type': 'MIRNet', 'n_feat': 8, 'n_RRG': 1, 'n_MSRB': 1},
           'datasets': {'train': {'name': 'x', 'type': 'PairedRestorationDataset', 'dataroot_gt': 'nowhere'}},
           'path': {'pretrain_network_g': 'no/such/file.pth'},
           'train': {'ema_decay': 0.9, 'optim_g': {'type': 'AdamW', 'lr': 1e-4},
                     'scheduler': {'type': 'WarmupCosineLR', 'warmup_iter': 2}, 'total_iter': 100,
                     'pixel_opt': {'type': 'CharbonnierLoss', 'loss_weight': 1.0}}}
    path = tmp_path / 'fork.yml'
    path.write_text(yaml.safe_dump(opt))
    rc, out, err = cli(capsys, 'bench', '-opt', path, '--size', '32', '--warmup', '0', '--runs', '1', '--json',
                       tmp_path / 'f.json')
    assert rc == 0, err
    train = json.loads((tmp_path / 'f.json').read_text())['records'][0]['train']
    assert (train['model'], train['optimizer'], train['ema'], train['grad_clip']) == (
        'ImageRestorationModel', 'AdamW', True, 0.01)
    assert train['loss'] == f'CharbonnierLoss on every output ({path})'
    assert len(steps) == 2 and clips == [0.01, 0.01]
    assert type(steps[0][0]).__name__ == 'ImageRestorationModel' and hasattr(steps[0][0], 'net_g_ema')
    assert not os.path.exists(tmp_path / 'experiments') and not os.path.exists(os.path.join(ROOT, 'experiments',
                                                                                            'bench'))


def test_the_model_runs_with_a_guard_that_does_nothing(tmp_path):
    """NoGuard (bench's comparison steps) in model.guard: the step is taken, nothing is snapshotted or checked."""
    from basicsr.models import build_model

    from basicsr_restore.models.step_guard import NoGuard
    recipe, _, _ = bench.training_recipe(None, 'NoSuchRecipe')
    opt = bench.training_options(recipe, 'MIRNet', {'n_feat': 8, 'n_RRG': 1, 'n_MSRB': 1}, speed.Speed(),
                                 torch.device('cpu'), str(tmp_path))
    model = build_model(opt)
    model.guard = NoGuard()
    before = [p.detach().clone() for p in model.net_g.parameters()]
    for i in range(2):
        model.feed_data(bench.random_batch(2, (32, 32), torch.uint8, pin=False))
        model.optimize_parameters(i + 1)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.net_g.parameters()))
    assert model.guard.buffers == [] and model.guard.skipped == 0 and model.guard.verdict({}, None).ok
    assert os.listdir(tmp_path) == []  # nothing written


# ------------------------------------------------------------------------------------- every network
def test_bench_without_arch_measures_every_network_as_a_user_runs_it():
    """The console script in a fresh process (``import basicsr_restore`` is light: the registry fills on demand)."""
    env = dict(os.environ, OMP_NUM_THREADS=THREADS)
    env.pop('BASICSR_RESTORE_NO_AUTOLOAD', None)
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), 'basicsr-restore'), 'bench', '--no-train',
                           '--size', '32', '--warmup', '0', '--runs', '1'], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line.split(' | ')[0].lstrip('| ') for line in proc.stdout.splitlines() if line.startswith('| ')]
    assert set(SHIPPED) <= set(rows), proc.stdout
    assert set(SHIPPED) <= set(network_names())


def test_tables_of_nothing_and_one_sided_comparisons_do_not_crash(tmp_path, capsys):
    assert bench.format_table([]).count('\n') == 1  # the header
    record = {'network': 'IRNeXt', 'config': {}, 'latency_ms': {'median': 2.0}, 'train': None,
              'peak_memory_mb': None}
    only_base = bench.format_ratios([record], [], 'fp32', 'bf16')
    only_other = bench.format_ratios([], [record], 'fp32', 'bf16')
    assert '| IRNeXt | (not in bf16) |' in only_base and '| IRNeXt | (not in fp32) |' in only_other
    assert bench.format_ratios([], [], 'fp32', 'bf16').startswith('**bf16 vs fp32**')
    a, empty = tmp_path / 'a.json', tmp_path / 'empty.json'
    bench.save_results(str(empty), [], overwrite=False)
    assert cli(capsys, 'bench', '--no-train', '--json', a, *TINY)[0] == 0
    for first, second in ((a, empty), (empty, a), (empty, empty)):
        rc, out, err = cli(capsys, 'bench', '--load', first, '--vs', second)
        assert rc == 0, err
        assert 'vs' in out
