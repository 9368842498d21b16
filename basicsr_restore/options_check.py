"""Every key of an option file is honoured or rejected, before anything runs.

BasicSR reads the keys it knows and ignores the rest, so a misspelt ``emma_decay`` trains without EMA and a
misspelt ``test_y_chanel`` scores on RGB. For runs of this package's models (those that declare
``OPTION_KEYS``), :func:`check_options` compares the whole option tree with what is actually read:

* the top level, ``logger``, ``dist_params`` and every dataset's loader keys (what basicsr's runner reads);
* ``train``, ``val`` and ``path`` (the model's ``OPTION_KEYS``; ``train.<name>_opt`` entries are losses);
* ``network_g``, every loss, metric, optimizer and scheduler: the type must be registered and every other key
  must be an argument of that class or function;
* every dataset of this package (its ``OPTION_KEYS``) and basicsr's ``PairedImageDataset``;
* ``speed``: the switches of :mod:`basicsr_restore.speed`, keys and values (or the word ``best``).

All problems are reported together, each with the closest valid name. ``allow_unknown_keys: true`` at the
top of the option file turns the unknown-*key* checks off (type names are still checked); a list such as
``allow_unknown_keys: [train.my_key, datasets.train.extra]`` allows just those keys (and what is below them).
"""
import difflib
import inspect

from basicsr_restore.errors import OptionError

ALLOW = 'allow_unknown_keys'
#: top-level keys basicsr's runners read, or write into the parsed options
TOP_LEVEL = {'name', 'model_type', 'scale', 'num_gpu', 'manual_seed', 'datasets', 'network_g', 'path', 'train', 'val',
             'logger', 'dist_params', 'find_unused_parameters', 'speed', ALLOW,
             'dist', 'rank', 'world_size', 'auto_resume', 'is_train', 'root_path'}
LOGGER = {'print_freq', 'save_checkpoint_freq', 'use_tb_logger', 'wandb'}
WANDB = {'project', 'resume_id'}
DIST_PARAMS = {'backend', 'port'}
#: folders parse_options adds under ``path``
RUNNER_PATHS = {'experiments_root', 'results_root', 'models', 'training_states', 'log', 'visualization'}
#: keys of any dataset section read by basicsr's runner and dataloader (``optional``: by this package's test runs)
LOADER = {'name', 'type', 'phase', 'scale', 'batch_size_per_gpu', 'num_worker_per_gpu', 'dataset_enlarge_ratio',
          'prefetch_mode', 'num_prefetch_queue', 'pin_memory', 'persistent_workers', 'optional', 'use_shuffle'}
#: basicsr's own dataset that people combine with this package's model
HOST_DATASETS = {'PairedImageDataset': {'dataroot_gt', 'dataroot_lq', 'meta_info_file', 'filename_tmpl', 'io_backend',
                                        'gt_size', 'use_hflip', 'use_rot', 'color', 'mean', 'std'}}
#: what a metric spec may hold besides the function's arguments
METRIC_EXTRA = {'type', 'better'}


def read_option_file(path, what='-opt'):
    """An option file as a dict, with one clear error for a missing file, bad YAML or a file that is no mapping."""
    import os

    import yaml
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} '{path}' does not exist.")
    with open(path, encoding='utf-8') as f:
        try:
            opt = yaml.safe_load(f)
        except yaml.YAMLError as exc:
            raise ValueError(f"{what} '{path}' is not valid YAML: {str(exc).strip().splitlines()[0]}") from None
    if not isinstance(opt, dict):
        raise ValueError(f"{what} '{path}' does not hold options (a YAML mapping such as `name: ...`).")
    return opt


def closest(name, candidates):
    match = difflib.get_close_matches(str(name), sorted(map(str, candidates)), n=1, cutoff=0.6)
    return f"did you mean '{match[0]}'? " if match else ''


def accepted_names(fn, skip=(), strict=False):
    """Keyword arguments ``fn`` (a function or class) takes, or None when it takes ``**kwargs`` and not
    ``strict`` (then any key may be meant for it)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    names = set()
    for p in params:
        if p.kind is p.VAR_KEYWORD and not strict:
            return None
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            names.add(p.name)
    return names - set(skip)


class Problems:
    """Collects the problems of one option tree; ``allow`` is the value of ``allow_unknown_keys``."""

    def __init__(self, allow):
        if allow not in (None, True, False) and not isinstance(allow, (list, tuple)):
            raise OptionError(f'{ALLOW} must be true, false or a list of keys such as [train.my_key], got {allow!r}.')
        self.allow_all = allow is True
        self.allowed = [str(a) for a in allow] if isinstance(allow, (list, tuple)) else []
        self.items = []
        self.unknown_keys = 0

    def allows(self, where):
        return self.allow_all or any(where == a or where.startswith(a + '.') for a in self.allowed)

    def keys(self, section, known, where, owner):
        """Report every key of ``section`` not in ``known`` (``owner``: who reads that section)."""
        if not isinstance(section, dict):
            if section is not None:
                self.items.append(f'{where}: expected a mapping of options, got {section!r}.')
            return
        for key in section:
            path = f'{where}.{key}' if where else str(key)
            if key not in known and not self.allows(path):
                self.unknown_keys += 1
                self.items.append(f"{path}: unknown key, not read by {owner}; {closest(key, known)}"
                                  f"valid: {', '.join(sorted(map(str, known))) or 'none in this version'}.")

    def type_name(self, spec, registry, where, what):
        """The class/function named by ``spec['type']`` in ``registry``, or None (problem recorded)."""
        name = spec.get('type') if isinstance(spec, dict) else None
        if name is None:
            self.items.append(f'{where}.type: missing; name the {what} (e.g. {sorted(registry.keys())[:3]}).')
            return None
        if name in registry:
            return registry.get(name)
        self.items.append(f"{where}.type: {name!r} is not a registered {what}; {closest(name, registry.keys())}"
                          f"registered: {', '.join(sorted(registry.keys()))}.")
        return None

    def arguments(self, spec, fn, where, owner, skip=(), extra=('type',), strict=False):
        known = accepted_names(fn, skip, strict)
        if known is not None:
            self.keys(spec, known | set(extra), where, owner)


# ------------------------------------------------------------------------------------------------ sections
def _speed(opt, problems):
    from basicsr_restore import speed
    block = opt.get('speed')
    if isinstance(block, dict):
        problems.keys(block, set(speed.KEYS), 'speed', 'the speed switches (docs/speed.md)')
        block = {k: v for k, v in block.items() if k in speed.KEYS}
    try:
        speed.parse(block)
    except OptionError as exc:
        problems.items.append(str(exc))


def _network(opt, problems):
    from basicsr.utils.registry import ARCH_REGISTRY
    spec = opt.get('network_g')
    cls = problems.type_name(spec, ARCH_REGISTRY, 'network_g', 'network')
    if cls is not None:
        problems.arguments(spec, cls, 'network_g', f'{cls.__name__}()')


def _datasets(opt, problems):
    from basicsr.utils.registry import DATASET_REGISTRY
    for key, spec in (opt.get('datasets') or {}).items():
        where = f'datasets.{key}'
        cls = problems.type_name(spec, DATASET_REGISTRY, where, 'dataset')
        if cls is None:
            continue
        known = getattr(cls, 'OPTION_KEYS', None) or HOST_DATASETS.get(cls.__name__)
        if known is not None:
            problems.keys(spec, set(known) | LOADER, where, f'{cls.__name__} or the dataloader')
        if isinstance(spec, dict) and spec.get('use_shuffle', True) is not True:
            problems.items.append(f'{where}.use_shuffle: false is not supported (basicsr always shuffles the training '
                                  'set); remove it.')


def _losses(train, problems):
    from basicsr.utils.registry import LOSS_REGISTRY
    for key, spec in train.items():
        if str(key).endswith('_opt'):
            cls = problems.type_name(spec, LOSS_REGISTRY, f'train.{key}', 'loss')
            if cls is not None:
                problems.arguments(spec, cls, f'train.{key}', f'{cls.__name__}()')


def _optimizer(train, problems):
    import torch
    spec = train.get('optim_g')
    if not isinstance(spec, dict):
        problems.items.append('train.optim_g: missing; e.g. optim_g: {type: AdamW, lr: 2.0e-4}.')
        return
    cls = getattr(torch.optim, str(spec.get('type')), None)
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        names = [n for n in dir(torch.optim) if isinstance(getattr(torch.optim, n), type)
                 and issubclass(getattr(torch.optim, n), torch.optim.Optimizer) and n != 'Optimizer']
        problems.items.append(f"train.optim_g.type: {spec.get('type')!r} is not an optimizer of torch.optim; "
                              f"{closest(spec.get('type'), names)}valid: {', '.join(sorted(names))}.")
        return
    problems.arguments(spec, cls, 'train.optim_g', f'torch.optim.{cls.__name__}()', skip=('params',))


def _scheduler(train, problems):
    from basicsr_restore.models.lr_scheduler import SCHEDULERS
    spec = train.get('scheduler')
    if not isinstance(spec, dict):
        return  # basicsr's runner needs none; the model says so if it does
    cls = SCHEDULERS.get(spec.get('type'))
    if cls is None:
        problems.items.append(f"train.scheduler.type: {spec.get('type')!r} is not supported; "
                              f"{closest(spec.get('type'), SCHEDULERS)}valid: {', '.join(SCHEDULERS)}.")
        return
    problems.arguments(spec, cls, 'train.scheduler', spec['type'], skip=('optimizer', 'last_epoch'))


def _metrics(val, problems):
    from basicsr.utils.registry import METRIC_REGISTRY
    for key, spec in (val.get('metrics') or {}).items():
        fn = problems.type_name(spec, METRIC_REGISTRY, f'val.metrics.{key}', 'metric')
        if fn is not None:  # metrics swallow **kwargs, so a typo would be ignored: check the named arguments
            problems.arguments(spec, fn, f'val.metrics.{key}', f'{fn.__name__}()', skip=('img', 'img2'),
                               extra=METRIC_EXTRA, strict=True)


def adopt_fork_keys(opt):
    """The one fork key that needs rewriting: the forks' ``PairedImageDataset`` reads ``use_flip`` where basicsr's
    reads ``use_hflip`` (basicsr would stop at the first batch with ``KeyError: 'use_hflip'``). Every other fork key
    is read under its own name (the model, the datasets) or rejected by :func:`check_options`."""
    for key, spec in (opt.get('datasets') or {}).items():
        if isinstance(spec, dict) and spec.get('type') == 'PairedImageDataset' and 'use_flip' in spec:
            if 'use_hflip' in spec:
                raise OptionError(f'datasets.{key}: use_flip and use_hflip mean the same; keep one.')
            spec['use_hflip'] = spec.pop('use_flip')


def float_batches_for(opt):
    """A model that is not this package's reads float batches: this package's datasets send it float32 (their
    ``integer_batches`` default is for this package's models, which convert on the device)."""
    from basicsr.utils.registry import DATASET_REGISTRY
    for spec in (opt.get('datasets') or {}).values():
        kind = spec.get('type') if isinstance(spec, dict) else None
        if kind in DATASET_REGISTRY and 'integer_batches' in getattr(DATASET_REGISTRY.get(kind), 'OPTION_KEYS', ()):
            spec.setdefault('integer_batches', False)


def check_options(opt, source='the option file'):
    """Raise one :class:`OptionError` listing every problem of ``opt`` (parsed options of a run)."""
    from basicsr.utils.registry import MODEL_REGISTRY
    model_type = opt.get('model_type')
    if model_type not in MODEL_REGISTRY:
        raise OptionError(f"{source}: model_type {model_type!r} is not a registered model; "
                          f"{closest(model_type, MODEL_REGISTRY.keys())}registered: "
                          f"{', '.join(sorted(MODEL_REGISTRY.keys()))}.")
    model = MODEL_REGISTRY.get(model_type)
    schema = getattr(model, 'OPTION_KEYS', None)
    if schema is None:
        float_batches_for(opt)
        return  # a model of basicsr or of another plugin: its keys are its business
    adopt_fork_keys(opt)
    problems = Problems(opt.get(ALLOW))
    problems.keys(opt, TOP_LEVEL, '', 'basicsr or this package')
    problems.keys(opt.get('logger'), LOGGER, 'logger', "basicsr's runner")
    problems.keys((opt.get('logger') or {}).get('wandb'), WANDB, 'logger.wandb', "basicsr's runner")
    problems.keys(opt.get('dist_params'), DIST_PARAMS, 'dist_params', 'the launcher')
    _speed(opt, problems)
    problems.keys(opt.get('path'), set(schema['path']) | RUNNER_PATHS, 'path', model_type)
    _network(opt, problems)
    _datasets(opt, problems)
    train = opt.get('train')
    if opt.get('is_train') and isinstance(train, dict):
        problems.keys({k: v for k, v in train.items() if not str(k).endswith('_opt')}, schema['train'], 'train',
                      f'{model_type} (losses are train.<name>_opt)')
        _losses(train, problems)
        _optimizer(train, problems)
        _scheduler(train, problems)
    val = opt.get('val')
    if isinstance(val, dict):
        problems.keys(val, schema['val'], 'val', model_type)
        _metrics(val, problems)
    if problems.items:
        lines = '\n  - '.join(problems.items)
        hint = (f'\nTo pass keys that your own extensions read, put `{ALLOW}: true` (or a list such as '
                '[train.my_key]) at the top of the file.') if problems.unknown_keys else ''
        raise OptionError(f'{source}: {len(problems.items)} problem(s)\n  - {lines}{hint}')
