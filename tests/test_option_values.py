"""Bad option values stop a run before anything is created, with one line each naming the option, the value, what is
allowed and what to do; the JSON Schema written by ``basicsr-restore schema`` says the same.

Every case of the issue runs the stock ``python -m basicsr.train``; the ten more of our own run together in one stock
run (the check reports every problem at once). Each case is also checked against the schema where a schema can say it
(files that must exist, values that depend on each other and YAML syntax are the run's alone)."""
import copy
import glob
import json
import os

import jsonschema
import pytest
import yaml
from conftest import ROOT, cli, run, tiny_train_options, write_options
from test_forks import drcnet_style, nafnet_style, restormer_style

import basicsr_restore  # noqa: F401
from basicsr_restore.core.errors import OptionError
from basicsr_restore.core.option_files import check_yaml
from basicsr_restore.host.option_checks import check_options
from basicsr_restore.host.registration import register_all

register_all()
FOLDERS = ('experiments', 'results', 'tb_logger')


@pytest.fixture(scope='module')
def validator(tmp_path_factory):
    path = tmp_path_factory.mktemp('schema') / 'basicsr-restore.schema.json'
    from basicsr_restore.commands.cli import main
    assert main(['schema', '-o', str(path)]) == 0
    schema = json.loads(path.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def schema_errors(validator, opt):
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(opt)]


def with_value(opt, dotted, value):
    """A copy of ``opt`` with the option ``a.b.c`` set to ``value`` (``DELETE`` removes it)."""
    opt = copy.deepcopy(opt)
    *parents, last = dotted.split('.')
    node = opt
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return opt


def good(small_pairs, name='ok'):
    opt = tiny_train_options(small_pairs, name, 4)
    opt['train']['scheduler'] = {'type': 'MultiStepLR', 'milestones': [2], 'gamma': 0.5}
    return opt


def stock_run(tmp_path, opt=None, text=None, fresh=False):
    """``python -m basicsr.train -opt bad.yml`` in an empty folder: (exit status, stderr lines, folders made)."""
    path = tmp_path / 'bad.yml'
    if text is not None:
        path.write_text(text)
    else:
        write_options(path, opt)
    proc = run(['python', '-m', 'basicsr.train', '-opt', str(path)], cwd=tmp_path, check=False, timeout=120,
               fresh=fresh)
    return proc.returncode, proc.stderr.strip().splitlines(), [f for f in FOLDERS if (tmp_path / f).exists()]


# ------------------------------------------------------------------------------------------- the issue's cases
ISSUE_CASES = [  # option, bad value, words the one line must hold
    ('train.total_iter', -5, ['train.total_iter', '-5', 'whole number >= 1']),
    ('train.optim_g.lr', 'abc', ['train.optim_g.lr', "'abc'", 'a number']),
    ('datasets.train.batch_size_per_gpu', 'four', ['datasets.train.batch_size_per_gpu', "'four'", 'whole number']),
    ('datasets.train.gt_size', 18, ['datasets.train.gt_size', '18', 'multiples of 4', 'use 16 or 20']),
    ('train.warmup_iter', 4, ['train.warmup_iter', 'not below train.total_iter (4)']),
    ('datasets.train.dataroot_gt', 'no/such/gt.lmdb', ['datasets.train.dataroot_gt', "'no/such/gt.lmdb'",
                                                      'does not exist', 'prepare']),
]
#: what a JSON Schema cannot say (paths on disk, one value against another): the run alone refuses these
RUN_ONLY = {'train.warmup_iter', 'datasets.train.dataroot_gt'}


@pytest.mark.parametrize('option,value,words', ISSUE_CASES, ids=[c[0] for c in ISSUE_CASES])
def test_a_bad_value_stops_the_stock_runner_with_one_line_and_no_folder(option, value, words, small_pairs, tmp_path,
                                                                        validator):
    opt = with_value(good(small_pairs), option, value)
    rc, lines, made = stock_run(tmp_path, opt, fresh=option == 'train.total_iter')  # one in a new interpreter
    assert rc != 0 and not made, (rc, made, lines)
    assert not any('Traceback' in line for line in lines), lines
    assert lines[-1].startswith("basicsr-restore: -opt '") and all(w in lines[-1] for w in words), lines[-1]
    if option not in RUN_ONLY:
        assert any(e.startswith(option) for e in schema_errors(validator, opt)), schema_errors(validator, opt)


def test_a_yaml_syntax_error_is_one_line_with_file_line_and_column(tmp_path):
    text = 'name: x\nmodel_type: RestorationModel\ntrain:\n  total_iter: 4\n   optim_g: {type: Adam}\n'
    rc, lines, made = stock_run(tmp_path, text=text)
    assert rc != 0 and not made
    assert len(lines) == 1 and lines[0].startswith("basicsr-restore: -opt '") and 'bad.yml' in lines[0], lines
    assert 'line 5, column 11' in lines[0] and 'not valid YAML' in lines[0], lines[0]


def test_a_key_written_twice_is_refused_rather_than_dropped(tmp_path):
    """PyYAML keeps the last of two equal keys and drops the first in silence."""
    text = 'name: x\nmodel_type: RestorationModel\ntrain:\n  total_iter: 4\n  ema_decay: 0.9\n  total_iter: 8\n'
    rc, lines, made = stock_run(tmp_path, text=text)
    assert rc != 0 and not made and len(lines) == 1, lines
    assert "line 6, column 3: key 'total_iter' is written twice in one block (first on line 4)" in lines[0], lines[0]
    for path in glob.glob(os.path.join(ROOT, 'options', '**', '*.yml'), recursive=True):
        check_yaml(path)  # none of ours does it


def test_a_bad_test_run_creates_no_results_folder(small_pairs, tmp_path):
    opt = good(small_pairs)
    test = {'name': 't', 'model_type': 'RestorationModel', 'num_gpu': 0, 'network_g': opt['network_g'],
            'datasets': {'test_1': dict(opt['datasets']['val'])}, 'val': {'save_img': False, 'metric_input': 'int'},
            'path': {'pretrain_network_g': 'missing/net_g.pth'}}
    path = write_options(tmp_path / 't.yml', test)
    proc = run(['python', '-m', 'basicsr.test', '-opt', path], cwd=tmp_path, check=False, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and 'Traceback' not in proc.stderr and not (tmp_path / 'results').exists()
    assert lines[-3].endswith('2 problem(s)') and lines[-2].startswith('  - path.pretrain_network_g: '
                                                                       "'missing/net_g.pth' does not exist"), lines
    assert lines[-1] == "  - val.metric_input: 'int' is not allowed: expected uint8 or float.", lines


# ------------------------------------------------------------------------------------------- ten more, one run
OWN_CASES = [
    ('logger.save_checkpoint_freq', 0, 'whole number >= 1'),             # basicsr: ZeroDivisionError mid-run
    ('datasets.train.num_worker_per_gpu', -1, 'whole number >= 0'),
    ('datasets.train.io_backend', {'type': 'redis'}, 'lmdb or disk'),
    ('datasets.train.prefetch_mode', 'gpu', 'cpu or cuda'),
    ('dist_params.port', 70000, '<= 65535'),
    ('train.ema_decay', 1.5, '< 1'),
    ('train.optim_g.betas', [0.9, 1.5], 'Invalid beta parameter'),      # torch.optim.Adam's own check
    ('val.metric_input', 'float16', 'uint8 or float'),
    ('network_g.n_RRG', 'two', 'a whole number'),
    ('path.pretrain_network_g', 'nowhere/net_g.pth', 'does not exist'),
    ('speed.amp', 'fp8', 'bf16, fp16'),
    ('train.pixel_opt.loss_weight', '1e-1', 'write 1.0e-4 or !!float 1e-4'),  # YAML 1.1 reads 1e-1 as text
]
OWN_RUN_ONLY = {'train.optim_g.betas', 'path.pretrain_network_g'}


def test_every_bad_value_of_a_file_is_reported_together_one_line_each(small_pairs, tmp_path, validator):
    opt = good(small_pairs)
    for option, value, _ in OWN_CASES:
        opt = with_value(opt, option, value)
    rc, lines, made = stock_run(tmp_path, opt)
    assert rc != 0 and not made and not any('Traceback' in line for line in lines)
    head = next(i for i, line in enumerate(lines) if line.startswith('basicsr-restore: '))
    assert lines[head].endswith(f'{len(OWN_CASES)} problem(s)'), lines[head:]
    reported = lines[head + 1:]
    assert len(reported) == len(OWN_CASES), reported
    for option, _, words in OWN_CASES:
        line = next((r for r in reported if r.startswith(f'  - {option}') or r.startswith(f'  - {option}:')), None)
        if option == 'train.optim_g.betas':  # torch's check names the optimizer's section
            line = next(r for r in reported if r.startswith('  - train.optim_g: torch.optim.Adam refuses'))
        assert line is not None and words in line, (option, reported)
    errors = schema_errors(validator, opt)
    for option, _, _ in OWN_CASES:
        if option not in OWN_RUN_ONLY:
            assert any(e.startswith(option) or e.startswith(option.rsplit('.', 1)[0] + ':') for e in errors), \
                (option, errors)


def test_cross_field_rules(small_pairs):
    """Values that disagree with each other, each a line (in-process: the same check the runner makes)."""
    base = dict(good(small_pairs), is_train=True)
    cases = [
        (with_value(base, 'train.scheduler', {'type': 'CosineAnnealingRestartLR', 'periods': [2, 1],
                                              'restart_weights': [1, 1]}), 'add up to 3, less than train.total_iter'),
        (with_value(base, 'train.scheduler', {'type': 'CosineAnnealingRestartCyclicLR', 'periods': [2, 2],
                                              'restart_weights': [1], 'eta_mins': [0, 0]}), 'has 1 values for 2'),
        (with_value(base, 'train.scheduler', {'type': 'MultiStepLR', 'milestones': [3, 2]}), 'ascending order'),
        (with_value(base, 'train.scheduler', {'type': 'TrueCosineAnnealingLR', 'T_max': 2}), 'rise again'),
        (with_value(base, 'train.scheduler', {'type': 'WarmupCosineLR', 'warmup_iter': 9}), 'never end'),
        (with_value(with_value(with_value(base, 'network_g', {'type': 'IRNeXt', 'num_res': 1, 'base_channel': 8}),
                               'datasets.train.batch_size_per_gpu', 1), 'datasets.train.gt_size', 64),
         'needs at least 2 images per GPU'),
        (with_value(base, 'network_g.in_channels', 4), 'MIRNet refuses these arguments'),
        (with_value(base, 'val.grids', True), 'needs val.crop_size'),
        (with_value(base, 'datasets.training', base['datasets']['train']), "rename the key"),
    ]
    for opt, words in cases:
        with pytest.raises(OptionError) as err:
            check_options(opt, 'x.yml')
        assert words in str(err.value) and len(str(err.value).splitlines()) == 1, (words, str(err.value))


# ------------------------------------------------------------------------------------------- the schema
OPTION_FILES = sorted(glob.glob(os.path.join(ROOT, 'options', '**', '*.yml'), recursive=True))


def test_every_shipped_option_file_and_fork_format_passes_the_check_and_the_schema(small_pairs, validator):
    forks = {'nafnet': nafnet_style(small_pairs), 'restormer': restormer_style(small_pairs),
             'drcnet': drcnet_style(small_pairs)}
    files = {os.path.relpath(p, ROOT): yaml.safe_load(open(p, encoding='utf-8')) for p in OPTION_FILES}
    assert len(files) >= 20
    for name, opt in {**files, **forks}.items():
        assert schema_errors(validator, opt) == [], name
        check_options(dict(copy.deepcopy(opt), is_train=os.sep + 'test' + os.sep not in name), name, paths=False)


def test_the_schema_knows_every_network_and_its_arguments(validator):
    strict = validator.schema['definitions']['strict']
    network = strict['properties']['network_g']
    assert {'MIRNet', 'ChaIR', 'IRNeXt', 'DRCNet', 'EIRN'} <= set(network['properties']['type']['enum'])
    irnext = next(c['then'] for c in network['allOf'] if c['if']['properties']['type']['const'] == 'IRNeXt')
    assert irnext['properties']['low_pass'] == {'enum': ['global', 'local']}
    assert irnext['additionalProperties'] is False
    opt = {'name': 'x', 'model_type': 'RestorationModel', 'network_g': {'type': 'IRNeXt', 'low_pass': 'mid'},
           'datasets': {}}
    assert any(e.startswith('network_g.low_pass') for e in schema_errors(validator, opt))
    # a model that is not this package's: its keys are its business (the run checks none either)
    assert schema_errors(validator, dict(opt, model_type='SRModel', extra_key=1)) == []


def test_schema_command_prints_or_writes(capsys, tmp_path):
    rc, out, _ = cli(capsys, 'schema')
    assert rc == 0 and json.loads(out)['title'] == 'basicsr-restore option file'
    readme = open(os.path.join(ROOT, 'README.md'), encoding='utf-8').read()
    assert '# yaml-language-server: $schema=' in readme and 'basicsr-restore schema -o' in readme
