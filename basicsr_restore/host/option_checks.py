"""Every key and value of an option file is honoured or rejected, before anything runs or any folder is made.

BasicSR reads the keys it knows and ignores the rest, so a misspelt ``emma_decay`` trains without EMA and a
misspelt ``test_y_chanel`` scores on RGB. For runs of this package's models (those that declare
``OPTION_KEYS``), :func:`check_options` compares the whole option tree with what is actually read:

* the top level, ``logger``, ``dist_params`` and every dataset's loader keys (what basicsr's runner reads);
* ``train``, ``val`` and ``path`` (the model's ``OPTION_KEYS``; ``train.<name>_opt`` entries are losses);
* ``network_g``, every loss, metric, optimizer and scheduler: the type must be registered and every other key
  must be an argument of that class or function;
* every dataset of this package (its ``OPTION_KEYS``) and basicsr's ``PairedImageDataset``;
* ``speed``: the switches of :mod:`basicsr_restore.core.speed`, keys and values (or the word ``best``).

Values follow their rules (:mod:`basicsr_restore.core.option_rules`: the keys' tables here and in ``OPTION_KEYS``, the
signatures of the named classes); the optimizer, the scheduler and the network check their own arguments (built on a
probe, on the meta device); values that must agree are compared (warm-up and schedule against ``total_iter``,
``gt_size`` against the network's size rule, batches against its BatchNorm); files and folders must exist.

All problems are reported together, one line each, unknown keys with the closest valid name. ``allow_unknown_keys:
true`` at the top of the option file turns the unknown-*key* checks off (type names are still checked); a list such as
``allow_unknown_keys: [train.my_key, datasets.train.extra]`` allows just those keys (and what is below them).
"""
from basicsr_restore.core.errors import OptionError
from basicsr_restore.core.option_problems import ALLOW, Problems, closest, optional, own_check
from basicsr_restore.core.option_rules import (
    Anything,
    Bool,
    Choice,
    Either,
    Int,
    Items,
    Mapping,
    Number,
    Path,
    Text,
    signature_rules,
)

#: keys basicsr's runners write into the parsed options (any value)
RUNNER_WRITTEN = {'dist', 'rank', 'world_size', 'auto_resume', 'is_train', 'root_path'}
#: top-level keys basicsr's runners read (or write into the parsed options), and what they take
TOP_LEVEL = {'name': Text(), 'model_type': Text(), 'scale': Int(1), 'num_gpu': Either(Int(0), Choice('auto')),
             'manual_seed': Int(null=True), 'datasets': Mapping(), 'network_g': Mapping(), 'path': Mapping(),
             'train': Mapping(null=True), 'val': Mapping(null=True), 'logger': Mapping(),
             'dist_params': Mapping(null=True), 'find_unused_parameters': Bool(),
             'speed': Either(Mapping(), Choice('best'), null=True), ALLOW: Either(Bool(), Items(Text())),
             **{key: Anything() for key in RUNNER_WRITTEN}}
LOGGER = {'print_freq': Int(1), 'save_checkpoint_freq': Int(1), 'use_tb_logger': Bool(), 'wandb': Mapping(null=True),
          'save_format': Choice('pth', 'safetensors')}
WANDB = {'project': Text(null=True), 'resume_id': Text(null=True)}
DIST_PARAMS = {'backend': Choice('nccl', 'gloo', 'mpi', 'ucc'), 'port': Int(1, 65535)}
#: folders parse_options adds under ``path``
RUNNER_PATHS = {'experiments_root', 'results_root', 'models', 'training_states', 'log', 'visualization'}
#: keys of any dataset section read by basicsr's runner and dataloader (``optional``: by this package's test runs)
LOADER = {'name': Text(), 'type': Text(), 'phase': Anything(), 'scale': Anything(),
          'batch_size_per_gpu': Int(1), 'num_worker_per_gpu': Int(0), 'dataset_enlarge_ratio': Int(1),
          'prefetch_mode': Choice('cpu', 'cuda', None), 'num_prefetch_queue': Int(1), 'pin_memory': Bool(),
          'persistent_workers': Bool(), 'optional': Bool(), 'use_shuffle': Bool()}
#: the phases basicsr's runner builds datasets for (the part of a ``datasets`` key before ``_``)
PHASES = ('train', 'val', 'test')
#: basicsr's own dataset that people combine with this package's model: its keys and their values
HOST_DATASETS = {'PairedImageDataset': {
    'dataroot_gt': Path('folder'), 'dataroot_lq': Path('folder'), 'meta_info_file': Path('file', null=True),
    'filename_tmpl': Text(), 'io_backend': Mapping(), 'gt_size': Int(1), 'use_hflip': Bool(), 'use_rot': Bool(),
    'use_flip': Bool(),  # the forks' name of use_hflip (adopt_fork_keys renames it)
    'color': Choice('y', None), 'mean': Items(Number(), null=True), 'std': Items(Number(), null=True)}}
#: ``io_backend.type`` of basicsr's datasets (its FileClient)
HOST_BACKENDS = ('disk', 'lmdb', 'memcached')
#: what a metric spec may hold besides the function's arguments
METRIC_EXTRA = {'type': Text(), 'better': Choice('higher', 'lower')}
#: placeholder tensor for optimizers and schedulers built to let them check their own values
_PROBE = []


def _probe_parameters():
    if not _PROBE:
        import torch
        _PROBE.append(torch.nn.Parameter(torch.zeros(1)))
    return _PROBE


# ------------------------------------------------------------------------------------------------ sections
def _speed(opt, problems):
    from basicsr_restore.core import speed  # torch: `schema --help` imports this module
    block = opt.get('speed')
    if isinstance(block, dict):
        problems.keys(block, set(speed.KEYS), 'speed', 'the speed switches (docs/speed.md)')
        block = {k: v for k, v in block.items() if k in speed.KEYS}
    try:
        speed.parse(block)
    except OptionError as exc:
        problems.items.append(str(exc))


def _network(opt, problems):
    """``network_g``: a registered type, its arguments and their values; returns (card, size rule) of this
    package's networks when the arguments are right, else None."""
    from basicsr.utils.registry import ARCH_REGISTRY

    from basicsr_restore.archs.card import card_of, constructor_arguments  # torch: `schema --help` imports this module
    spec = opt.get('network_g')
    cls = problems.type_name(spec, ARCH_REGISTRY, 'network_g', 'network')
    if cls is None or not problems.arguments(spec, cls, 'network_g', f'{cls.__name__}()'):
        return None
    card = card_of(cls)
    if card is None:
        return None
    kwargs = {k: v for k, v in spec.items() if k != 'type'}
    try:  # the network's own checks of its arguments, on the meta device (no memory, no weights)
        import torch
        with torch.device('meta'):
            cls(**kwargs)
    except (TypeError, ValueError, AssertionError, RuntimeError) as exc:
        problems.add('network_g', f'{cls.__name__} refuses these arguments: {exc}')
        return None
    return card, card.size(**constructor_arguments(cls, kwargs))


def _patch_sizes(spec, where, network, problems):
    """Training patches the network can take: ``gt_size``/``gt_sizes`` on its size rule, batches its BatchNorm
    can take."""
    if network is None or not isinstance(spec, dict):
        return
    card, rule = network
    sizes = [(f'{where}.gt_size', spec.get('gt_size'))]
    sizes += [(f'{where}.gt_sizes[{i}]', v) for i, v in enumerate(spec.get('gt_sizes') or [])]
    for path, size in sizes:
        if not isinstance(size, int) or isinstance(size, bool):
            continue
        if size % rule.multiple or size < rule.min_size:
            fit = rule.fit(size)
            lower = max(fit - rule.multiple, rule.min_size)
            choices = f'{lower} or {fit}' if lower < size else f'{fit}'
            problems.add(path, f'{size} does not fit {card.name}: patches must be multiples of {rule.multiple}'
                         f'{f" and at least {rule.min_size}" if rule.min_size else ""} ({rule.why}); use {choices}')
    if card.batch_rule:
        batches = [(f'{where}.batch_size_per_gpu', spec.get('batch_size_per_gpu'))]
        batches += [(f'{where}.mini_batch_sizes[{i}]', v) for i, v in enumerate(spec.get('mini_batch_sizes') or [])]
        for path, batch in batches:
            if isinstance(batch, int) and batch == 1:
                problems.add(path, f'1 is too small for {card.name}: {card.batch_rule} needs at least 2 images per '
                             'GPU; use 2 or more')


def _datasets(opt, problems, network):
    from basicsr.utils.registry import DATASET_REGISTRY
    datasets = opt.get('datasets')
    if not isinstance(datasets, dict):
        problems.add('datasets', 'missing; a run needs a mapping of datasets (train, val_1, test_1, ...)')
        return
    if opt.get('is_train') and not any(str(k).split('_')[0] == 'train' for k in datasets):
        problems.add('datasets.train', 'missing; a training run needs a training set')
    tolerant = not opt.get('is_train') and len(datasets) > 1  # basicsr.test goes on past a set it cannot read
    for key, spec in datasets.items():
        where = f'datasets.{key}'
        if str(key).split('_')[0] not in PHASES:
            problems.add(where, f"basicsr builds datasets named {', '.join(PHASES)} or <phase>_<anything>; "
                         'rename the key (e.g. val_1)')
        cls = problems.type_name(spec, DATASET_REGISTRY, where, 'dataset')
        if cls is None:
            continue
        rules = getattr(cls, 'OPTION_KEYS', None) or HOST_DATASETS.get(cls.__name__)
        if rules is None:
            problems.values(spec, LOADER, where)
            continue
        if tolerant or spec.get('optional'):
            problems.skip_paths.update(f'{where}.{k}' for k in rules
                                       if k.startswith('dataroot') or k == 'meta_info_file')
        problems.values(spec, {**rules, **LOADER}, where, f'{cls.__name__} or the dataloader')
        backends = getattr(cls, 'BACKENDS', HOST_BACKENDS)
        backend = (spec.get('io_backend') or {}) if isinstance(spec.get('io_backend') or {}, dict) else {}
        if 'type' in backend and backend['type'] not in backends:
            problems.add(f'{where}.io_backend.type', f"{backend['type']!r} is not allowed: expected "
                         f"{' or '.join(backends)}")
        if spec.get('use_shuffle', True) is not True:
            problems.add(f'{where}.use_shuffle', 'false is not supported (basicsr always shuffles the training set); '
                         'remove it')
        if str(key).split('_')[0] == 'train':
            if getattr(cls, 'OPTION_KEYS', None) is not None and spec.get('gt_size') is None:
                problems.add(f'{where}.gt_size', 'missing; the side of the training patches')
            _patch_sizes(spec, where, network, problems)


def _losses(train, problems):
    from basicsr.utils.registry import LOSS_REGISTRY
    for key, spec in train.items():
        if str(key).endswith('_opt'):
            cls = problems.type_name(spec, LOSS_REGISTRY, f'train.{key}', 'loss')
            if cls is not None and problems.arguments(spec, cls, f'train.{key}', f'{cls.__name__}()') \
                    and problems.paths:
                own_check(problems, cls, spec, f'train.{key}')


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
    if problems.arguments(spec, cls, 'train.optim_g', f'torch.optim.{cls.__name__}()', skip=('params',)):
        try:  # the optimizer's own checks of its values (ranges of lr, betas, eps, weight_decay, ...)
            cls(_probe_parameters(), **{k: v for k, v in spec.items() if k != 'type'})
        except (ValueError, TypeError, RuntimeError) as exc:
            problems.add('train.optim_g', f'torch.optim.{cls.__name__} refuses these values: {exc}')


def _scheduler(train, problems):
    import torch

    # torch: `schema --help` imports this module
    from basicsr_restore.models.lr_scheduler import SCHEDULERS, schedule_problems
    spec = train.get('scheduler')
    if not isinstance(spec, dict):
        return  # basicsr's runner needs none; the model says so if it does
    cls = SCHEDULERS.get(spec.get('type'))
    if cls is None:
        problems.items.append(f"train.scheduler.type: {spec.get('type')!r} is not supported; "
                              f"{closest(spec.get('type'), SCHEDULERS)}valid: {', '.join(SCHEDULERS)}.")
        return
    filled = getattr(cls, 'FILLED_FROM_TRAIN', ())
    rules = {**signature_rules(cls, ('optimizer', 'last_epoch')), 'type': Text()}
    for key in filled:
        rules[key] = optional(rules[key])
    if not problems.values(spec, rules, 'train.scheduler', spec['type']):
        return
    total = train.get('total_iter')
    if not isinstance(total, (int, float)) or isinstance(total, bool) or total < 1:
        return  # reported with train.total_iter
    for where, text in schedule_problems(cls, spec, train):
        problems.add(where, text)
    if problems.items:
        return
    try:  # the scheduler's own checks
        args = {k: v for k, v in spec.items() if k != 'type'}
        args.update({k: train[k] for k in filled if k not in args})
        cls(torch.optim.SGD(_probe_parameters(), lr=1.0), **args)
    except (ValueError, TypeError, AssertionError, IndexError) as exc:
        problems.add('train.scheduler', f"{spec['type']} refuses these values: {exc or type(exc).__name__}")


def _training(train, problems):
    total, warmup = train.get('total_iter'), train.get('warmup_iter', -1)
    if 'total_iter' not in train:
        problems.add('train.total_iter', 'missing; the number of training iterations')
    numbers = all(isinstance(v, int) and not isinstance(v, bool) for v in (total, warmup))
    if numbers and total >= 1 and warmup >= total:
        problems.add('train.warmup_iter', f'{warmup} is not below train.total_iter ({total}): the warm-up would '
                     'never end; lower it or use -1 for none')


def _metrics(val, problems):
    from basicsr.utils.registry import METRIC_REGISTRY
    for key, spec in (val.get('metrics') or {}).items():
        fn = problems.type_name(spec, METRIC_REGISTRY, f'val.metrics.{key}', 'metric')
        if fn is not None:  # metrics swallow **kwargs, so a typo would be ignored: check the named arguments
            problems.arguments(spec, fn, f'val.metrics.{key}', f'{fn.__name__}()', skip=('img', 'img2'),
                               extra=METRIC_EXTRA, strict=True)


def _validation(val, problems):
    if val.get('grids') is True and not val.get('crop_size'):
        problems.add('val.grids', 'true needs val.crop_size (the side of the crops the image is restored in)')
    if 'use_image' in val and 'metric_input' in val and \
            val['metric_input'] != ('uint8' if val['use_image'] else 'float'):
        problems.add('val.use_image', f"{val['use_image']} and val.metric_input: {val['metric_input']} contradict "
                     'each other: keep one')


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


def check_options(opt, source='the option file', paths=True):
    """Raise one :class:`OptionError` listing every problem of ``opt`` (parsed options of a run): unknown keys,
    values their rules refuse, values that disagree with each other, files and folders that do not exist
    (``paths``). Nothing is built but a throw-away optimizer and scheduler on one number."""
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
    problems = Problems(opt.get(ALLOW), paths)
    problems.values(opt, TOP_LEVEL, '', 'basicsr or this package')
    problems.values(opt.get('logger'), LOGGER, 'logger', "basicsr's runner")
    problems.values((opt.get('logger') or {}).get('wandb'), WANDB, 'logger.wandb', "basicsr's runner")
    problems.values(opt.get('dist_params'), DIST_PARAMS, 'dist_params', 'the launcher')
    _speed(opt, problems)
    path_rules = {**schema['path'], **{k: Anything() for k in RUNNER_PATHS}}
    problems.values(opt.get('path'), path_rules, 'path', model_type)
    network = _network(opt, problems)
    train = opt.get('train')
    if opt.get('is_train') and not isinstance(train, dict):
        problems.add('train', 'missing; a training run needs train.total_iter, train.optim_g and a loss')
    _datasets(opt, problems, network if opt.get('is_train') else None)
    if opt.get('is_train') and isinstance(train, dict):
        plain = {k: v for k, v in train.items() if not str(k).endswith('_opt')}
        problems.values(plain, schema['train'], 'train', f'{model_type} (losses are train.<name>_opt)')
        _training(train, problems)
        _losses(train, problems)
        _optimizer(train, problems)
        _scheduler(train, problems)
    val = opt.get('val')
    if isinstance(val, dict):
        if problems.values(val, schema['val'], 'val', model_type):
            _validation(val, problems)
        _metrics(val, problems)
    if len(problems.items) == 1 and not problems.unknown_keys:
        raise OptionError(f'{source}: {problems.items[0]}')
    if problems.items:
        lines = '\n  - '.join(problems.items)
        hint = (f'\nTo pass keys that your own extensions read, put `{ALLOW}: true` (or a list such as '
                '[train.my_key]) at the top of the file.') if problems.unknown_keys else ''
        raise OptionError(f'{source}: {len(problems.items)} problem(s)\n  - {lines}{hint}')
