"""Every option file in options/ loads, and its network, losses, schedule and datasets build; one training file per
dataset trains two iterations and validates through the stock ``python -m basicsr.train``, and one test file runs
through ``python -m basicsr.test`` and writes its per-image tables.

Networks are built at full size (construction only, fast); datasets are built against the miniature prepared
fixtures of tests/test_prepare_*.py, with the option file's relative path checked against what the preparer
writes (``datasets/GoPro/train/gt.lmdb`` must exist in the prepared GoPro fixture)."""
import copy
import functools
import glob
import os
import re
import types

import pytest
import torch
import yaml
from basicsr.archs import build_network
from basicsr.data import build_dataset
from basicsr.losses import build_loss
from basicsr.utils.options import ordered_yaml
from basicsr.utils.registry import ARCH_REGISTRY
from conftest import ROOT, cli, run
from test_prepare_dpdd import prepared_dpdd
from test_prepare_gopro import prepared_gopro, prepared_hide
from test_prepare_rain import prepared_rain
from test_prepare_sidd import prepared_sidd

import basicsr_restore  # noqa: F401
from basicsr_restore.models.restoration_model import RestorationModel

OPTION_FILES = sorted(glob.glob(os.path.join(ROOT, 'options', '**', '*.yml'), recursive=True))
RECIPES = sorted(os.path.relpath(p, ROOT) for p in OPTION_FILES if os.sep + 'demo' + os.sep not in p)
PREPARED = {'GoPro': prepared_gopro, 'HIDE': prepared_hide, 'SIDD': prepared_sidd, 'Rain13K': prepared_rain,
            'DPDD': prepared_dpdd}
VGG = 'experiments/pretrained_models/vgg19-dcbb9e9d.pth'


def load(path):
    with open(path, encoding='utf-8') as f:
        return yaml.load(f, Loader=ordered_yaml()[0])


@functools.lru_cache(maxsize=None)
def network_facts(spec):
    """(parameter count, size multiple) of ``network_g`` (a repr'd dict, for caching)."""
    net = build_network(eval(spec))  # noqa: S307 - our own repr
    return sum(p.numel() for p in net.parameters()), net.size_rule.multiple


@pytest.fixture(scope='module')
def fixtures(tmp_path_factory):
    return {name: make(tmp_path_factory) for name, make in PREPARED.items()}


def resolve(value, fixtures, where):
    """A relative ``datasets/<Name>/<rest>`` path of an option file -> the same path in the prepared fixture."""
    m = re.match(r'^datasets/([^/]+)/(.+)$', str(value))
    assert m, f'{where}: {value!r} is not a relative path under datasets/'
    name, rest = m.groups()
    assert name in fixtures, f'{where}: datasets/{name} is not a prepared dataset ({sorted(fixtures)})'
    path = fixtures[name] / rest
    assert path.exists(), f'{where}: {value} does not match what `basicsr-restore prepare` writes ({path} missing)'
    return str(path)


def test_there_is_an_option_file_for_every_network_and_task_of_the_issue():
    wanted = {('GoPro', 'IRNeXt'), ('GoPro', 'ChaIR'), ('DPDD', 'IRNeXt'), ('DPDD', 'ChaIR'), ('SIDD', 'MIRNet'),
              ('GoPro', 'DRCNet'), ('SIDD', 'DRCNet'), ('Rain13K', 'DRCNet'), ('GoPro', 'EIRN'), ('SIDD', 'EIRN'),
              ('Rain13K', 'EIRN')}
    for kind in ('train', 'test'):
        have = {tuple(p.split(os.sep)[2:4]) for p in RECIPES if p.split(os.sep)[1] == kind}
        have = {(d, n[:-4]) for d, n in have}
        assert wanted <= have, f'missing {kind} option files: {sorted(wanted - have)}'


@pytest.mark.parametrize('rel', RECIPES)
def test_option_file_builds(rel, fixtures):
    path = os.path.join(ROOT, rel)
    opt = load(path)
    kind, dataset, stem = rel.split(os.sep)[1], rel.split(os.sep)[2], rel.split(os.sep)[3][:-4]
    net, _, variant = stem.partition('_')  # <Net>.yml, or <Net>_dual.yml: DPDD's dual-pixel setting
    assert variant in ('', 'dual'), f'{rel}: unknown variant {variant!r}'
    assert opt['model_type'] == 'RestorationModel'
    assert opt['network_g']['type'] == net
    spec = dict(opt['network_g'])
    if variant == 'dual':  # left + right views: the official configuration but for the width of the first convs
        assert spec.get('in_channels') == 6, f'{rel}: network_g.in_channels must be 6 (left + right views)'
        spec['in_channels'] = 3
    params, multiple = network_facts(repr(spec))
    official = {p.params for p in ARCH_REGISTRY.get(net).card.presets.values()}  # EIRN-R: this package's presets
    assert params in official, f'{rel}: {params:,} parameters is not an official configuration of {net}'
    for key, ds_opt in opt['datasets'].items():
        ds_opt = dict(ds_opt, phase=key.split('_')[0], scale=1)
        for option in [k for k in ds_opt if k.startswith('dataroot_') or k == 'meta_info_file']:
            ds_opt[option] = resolve(ds_opt[option], fixtures, f'{rel} datasets.{key}.{option}')
        if key == 'train':
            assert ds_opt['gt_size'] % multiple == 0, f'{rel}: gt_size must be a multiple of {multiple}'
            if net in ('IRNeXt', 'ChaIR'):
                assert ds_opt['batch_size_per_gpu'] >= 2, 'BatchNorm needs 2 images per GPU'
            ds_opt['gt_size'] = 32  # the fixtures are tiny
        item = build_dataset(ds_opt)[0]
        assert item['lq'].shape[0] == (6 if variant == 'dual' else 3) and item['gt'].shape[0] == 3
    assert opt['val']['metric_input'] == ('float' if dataset in ('SIDD', 'DPDD') else 'uint8')
    metric_types = {m['type'] for m in opt['val']['metrics'].values()}
    assert metric_types <= {'calculate_psnr', 'calculate_ssim', 'calculate_psnr_matlab_y', 'calculate_ssim_matlab_y',
                            'calculate_ssim_skimage', 'calculate_mae'}
    if dataset == 'Rain13K':
        assert metric_types == {'calculate_psnr_matlab_y', 'calculate_ssim_matlab_y'}
    if kind == 'test':
        train = load(os.path.join(ROOT, 'options', 'train', dataset, f'{stem}.yml'))
        assert opt['network_g'] == train['network_g'], f'{rel}: network_g differs from the train file'
        assert opt['path']['pretrain_network_g'] == f"experiments/{train['name']}/models/net_g_latest.pth"
        return
    assert opt['name'] == f'{net}_{dataset}' + (f'_{variant}' if variant else '')
    train_opt = opt['train']
    losses = [spec for k, spec in train_opt.items() if k.endswith('_opt') and isinstance(spec, dict)]
    assert losses
    for spec in losses:
        spec = copy.deepcopy(dict(spec))
        if spec['type'] == 'IntraCRLoss':
            assert spec['vgg_weights'] == VGG
            spec['vgg_weights'] = 'random'  # the real file is 548 MB; its absence is the loss's own clear error
        build_loss(spec)
    stub = types.SimpleNamespace(opt=opt, optimizers=[], schedulers=[], net_g=torch.nn.Linear(2, 2))
    stub.get_optimizer = functools.partial(RestorationModel.get_optimizer, stub)
    RestorationModel.setup_optimizers(stub)
    RestorationModel.setup_schedulers(stub)
    assert len(stub.schedulers) == 1


@pytest.mark.parametrize('path', [p for p in OPTION_FILES if os.sep + 'demo' + os.sep in p],
                         ids=os.path.basename)
def test_demo_option_file_builds(path, fixtures):
    """The demo files (trained end to end in test_runners.py): network, losses, schedule and datasets, the
    datasets pointed at the GoPro fixture."""
    opt = load(path)
    assert opt['model_type'] == 'RestorationModel'
    build_network(dict(opt['network_g']))
    for spec in [v for k, v in opt['train'].items() if k.endswith('_opt') and isinstance(v, dict)]:
        build_loss(copy.deepcopy(dict(spec)))
    stub = types.SimpleNamespace(opt=opt, optimizers=[], schedulers=[], net_g=torch.nn.Linear(2, 2))
    stub.get_optimizer = functools.partial(RestorationModel.get_optimizer, stub)
    RestorationModel.setup_optimizers(stub)
    RestorationModel.setup_schedulers(stub)
    for key, ds_opt in opt['datasets'].items():
        split = 'train' if key == 'train' else 'test'
        ds_opt = dict(ds_opt, phase=key.split('_')[0], scale=1, io_backend={'type': 'lmdb'}, gt_size=32,
                      dataroot_gt=str(fixtures['GoPro'] / split / 'gt.lmdb'),
                      dataroot_lq=str(fixtures['GoPro'] / split / 'lq.lmdb'))
        assert build_dataset(ds_opt)[0]['gt'].shape[0] == 3


def test_option_files_name_only_relative_paths():
    for path in OPTION_FILES:
        text = open(path, encoding='utf-8').read()
        assert not re.search(r'dataroot_\w+:\s*/', text), f'{path}: absolute data path'
        assert all(len(line) <= 120 for line in text.splitlines()), f'{path}: a line longer than 120 characters'


# ------------------------------------------------------------------------------------ stock runners
def tiny_overrides(net):
    """``--force_yml`` overrides that narrow ``network_g`` to its card's tiny configuration (seconds on a CPU)."""
    return [f'network_g:{k}={v}' for k, v in ARCH_REGISTRY.get(net).card.tiny.items()]


RUNS = [('GoPro', 'IRNeXt', 64), ('SIDD', 'MIRNet', 32), ('Rain13K', 'EIRN', 32), ('DPDD', 'ChaIR', 32)]


def data_overrides(opt, fixtures):
    out = []
    for key, ds_opt in opt['datasets'].items():
        for option in [k for k in ds_opt if k.startswith('dataroot_') or k == 'meta_info_file']:
            out.append(f'datasets:{key}:{option}={resolve(ds_opt[option], fixtures, key)}')
    return out


def logs(folder):
    return '\n'.join(open(p).read() for p in sorted(glob.glob(os.path.join(folder, '*.log'))))


@pytest.fixture(scope='module')
def runs(fixtures, tmp_path_factory):
    work = tmp_path_factory.mktemp('recipes')
    return work, {}


@pytest.mark.parametrize('dataset,net,gt_size', RUNS)
def test_recipe_trains_through_the_stock_runner(dataset, net, gt_size, runs, fixtures):
    work, done = runs
    rel = os.path.join('options', 'train', dataset, f'{net}.yml')
    opt = load(os.path.join(ROOT, rel))
    args = ['python', '-m', 'basicsr.train', '-opt', os.path.join(ROOT, rel), '--force_yml', 'num_gpu=0',
            'train:total_iter=2', 'train:scheduler:warmup_iter=1', 'val:val_freq=2', 'logger:print_freq=1',
            'logger:save_checkpoint_freq=2', 'logger:use_tb_logger=false', f'datasets:train:gt_size={gt_size}',
            'datasets:train:batch_size_per_gpu=2', 'datasets:train:num_worker_per_gpu=1'] + tiny_overrides(net)
    run(args + data_overrides(opt, fixtures), cwd=work)
    text = logs(work / 'experiments' / opt['name'])
    assert f'Network [{net}] is created.' in text and 'Model [RestorationModel] is created.' in text
    for key, ds_opt in opt['datasets'].items():
        if key.startswith('val'):
            block = text.split(f"Validation {ds_opt['name']}")[1]
            for metric in opt['val']['metrics']:
                assert re.search(rf'# {metric}: \d+\.\d+', block), f'{metric} missing for {ds_opt["name"]}'
    assert (work / 'experiments' / opt['name'] / 'models' / 'net_g_2.pth').is_file()
    done[(dataset, net)] = work


def test_test_file_runs_through_the_stock_runner_and_writes_tables(runs, fixtures):
    """DPDD: float metrics, 8-bit convention, and the indoor/outdoor subsets reading the same LMDB."""
    work, done = runs
    if ('DPDD', 'ChaIR') not in done:
        pytest.skip('needs the DPDD/ChaIR training run of this module')
    rel = os.path.join('options', 'test', 'DPDD', 'ChaIR.yml')
    opt = load(os.path.join(ROOT, rel))
    run(['python', '-m', 'basicsr.test', '-opt', os.path.join(ROOT, rel), '--force_yml', 'num_gpu=0']
        + tiny_overrides('ChaIR') + data_overrides(opt, fixtures), cwd=work)
    results = work / 'results' / opt['name']
    combined = (results / 'DPDD_test_metrics.csv').read_text().splitlines()
    assert combined[0] == 'image,psnr,ssim,mae' and len(combined) == 1 + 2 + 1  # header, 2 images, mean
    assert combined[-1].startswith('mean,')
    indoor = (results / 'DPDD_test_indoor_metrics.csv').read_text().splitlines()
    assert len(indoor) == 3 and indoor[1].startswith('1P0A1005,')
    assert '| image | psnr | ssim | mae |' in (results / 'DPDD_test_outdoor_metrics.md').read_text()
    saved = glob.glob(str(results / 'visualization' / 'DPDD_test' / '*.png'))
    assert len(saved) == 2


def test_dpdd_test_file_runs_on_the_original_release_and_a_missing_set_fails_at_the_end(runs, tmp_path, capsys,
                                                                                      monkeypatch):
    """The original DPDD release has no indoor/outdoor labels: the shipped test file scores the combined set
    and skips the optional subsets with a note. A missing set that is not optional is reported, the other
    sets are still scored, and the run exits non-zero at the end."""
    from test_prepare_dpdd import make_canon_dpdd
    work, done = runs
    if ('DPDD', 'ChaIR') not in done:
        pytest.skip('needs the DPDD/ChaIR training run of this module')
    make_canon_dpdd(str(tmp_path / 'dd_dp_dataset_png'))
    monkeypatch.chdir(tmp_path)
    assert cli(capsys, 'prepare', 'dpdd', 'dd_dp_dataset_png', 'datasets/DPDD', '--split', 'test')[0] == 0
    assert not (tmp_path / 'datasets' / 'DPDD' / 'test' / 'indoor.txt').exists()
    rel = os.path.join(ROOT, 'options', 'test', 'DPDD', 'ChaIR.yml')
    weights = work / 'experiments' / load(os.path.join(ROOT, 'options', 'train', 'DPDD', 'ChaIR.yml'))['name']
    args = ['python', '-m', 'basicsr.test', '-opt', rel, '--force_yml', 'num_gpu=0', 'val:save_img=false',
            f"path:pretrain_network_g={weights / 'models' / 'net_g_latest.pth'}"] + tiny_overrides('ChaIR')
    proc = run(args, cwd=tmp_path)
    results = tmp_path / 'results' / load(rel)['name']
    assert len((results / 'DPDD_test_metrics.csv').read_text().splitlines()) == 1 + 2 + 1
    text = logs(results)
    assert "Test set 'DPDD_test_indoor' skipped (optional: true): meta_info_file 'datasets/DPDD/test/indoor.txt' " \
           'does not exist' in text
    assert 'unpredictable' not in proc.stderr
    failed = run(args + ['datasets:test_3:optional=false'], cwd=tmp_path, check=False)
    assert failed.returncode == 1
    assert failed.stderr.strip().splitlines()[-1] == (
        "basicsr-restore: 1 of 3 test sets could not be read: 'DPDD_test_outdoor' (meta_info_file "
        f"'datasets/DPDD/test/outdoor.txt' does not exist). The others were scored ({results}).")
    assert len((results / 'DPDD_test_metrics.csv').read_text().splitlines()) == 4
