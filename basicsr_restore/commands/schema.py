"""``basicsr-restore schema [-o FILE]``: the JSON Schema of option files, for editors.

Generated from the option check's own rules (``option_checks`` and ``option_rules``): the sections and keys it knows,
the values each takes, the registered type names of networks, datasets, losses and metrics, and for every ``type``
the arguments its constructor takes. Editors that speak JSON Schema (VS Code with the YAML extension, JetBrains, Neovim
through yaml-language-server) then complete keys and flag wrong ones while you type, after one line at the top of an
option file::

    # yaml-language-server: $schema=./basicsr-restore.schema.json

What a schema cannot say is left to the run, which checks everything before it creates a folder: files that must
exist, and values that depend on each other (``warmup_iter`` below ``total_iter``, scheduler periods that cover the
run). ``gt_size`` against the network's size rule is in the schema, as conditions on ``network_g.type``.
"""
import copy
import inspect
import json

from basicsr_restore.core.imageio import atomic_path
from basicsr_restore.core.option_problems import accepted_names, optional
from basicsr_restore.core.option_rules import Anything, Choice, Text, signature_rules
from basicsr_restore.core.registry import OURS, registry
from basicsr_restore.host.option_checks import (
    ALLOW,
    DIST_PARAMS,
    HOST_BACKENDS,
    HOST_DATASETS,
    LOADER,
    LOGGER,
    METRIC_EXTRA,
    PHASES,
    RUNNER_PATHS,
    TOP_LEVEL,
    WANDB,
)
from basicsr_restore.host.registration import register_all

DRAFT = 'http://json-schema.org/draft-07/schema#'


def _object(rules, strict=True, required=()):
    body = {'type': 'object', 'properties': {k: r.schema() for k, r in rules.items()}}
    if strict:
        body['additionalProperties'] = False
    if required:
        body['required'] = sorted(required)
    return body


def _by_type(names_to_rules, base=None, strict_names=()):
    """An object whose ``type`` names one of ``names_to_rules``; for each name, its own keys (``then``)."""
    body = {'type': 'object', 'required': ['type'], 'properties': {'type': {'enum': sorted(names_to_rules)}}}
    cases = []
    for name, rules in sorted(names_to_rules.items()):
        if rules is None:
            continue
        rules = {**(base or {}), **rules}
        required = [k for k, r in rules.items() if r.required]
        then = _object(rules, strict=name in strict_names, required=required)
        then['properties']['type'] = {'const': name}
        cases.append({'if': {'properties': {'type': {'const': name}}}, 'then': then})
    if cases:
        body['allOf'] = cases
    return body


def _arguments(registry, skip=(), extra=None):
    """``{name: rules}`` of a registry's classes/functions, and the names whose keys are closed."""
    table, closed = {}, []
    for name in list(registry.keys()):
        fn = registry.get(name)
        table[name] = {**signature_rules(fn, skip), **(extra if extra is not None else {'type': Text()})}
        if accepted_names(fn) is not None:  # no **kwargs: its keys are closed
            closed.append(name)
    return table, closed


def _optimizers():
    import torch
    names = {n: getattr(torch.optim, n) for n in dir(torch.optim) if isinstance(getattr(torch.optim, n), type)
             and issubclass(getattr(torch.optim, n), torch.optim.Optimizer) and n != 'Optimizer'}
    table, closed = _arguments(names, skip=('params',))
    return _by_type(table, strict_names=closed)


def _schedulers():
    from basicsr_restore.models.lr_scheduler import SCHEDULERS  # keeps `schema --help` light (torch)
    table = {}
    for name, cls in SCHEDULERS.items():
        rules = {**signature_rules(cls, ('optimizer', 'last_epoch')), 'type': Text()}
        for key in getattr(cls, 'FILLED_FROM_TRAIN', ()):
            rules[key] = optional(rules[key])
        table[name] = rules
    return _by_type(table, strict_names=list(table))


def _datasets():
    from basicsr.utils.registry import DATASET_REGISTRY

    table, closed = {}, []
    for name in list(DATASET_REGISTRY.keys()):
        cls = DATASET_REGISTRY.get(name)
        rules = getattr(cls, 'OPTION_KEYS', None) or HOST_DATASETS.get(name)
        if rules is None:
            table[name] = {}
            continue
        closed.append(name)
        table[name] = dict(rules)
        backend = {'type': 'object', 'properties': {'type': Choice(*getattr(cls, 'BACKENDS', HOST_BACKENDS)).json()}}
        table[name]['io_backend'] = _Raw(backend)
    return _by_type(table, base=LOADER, strict_names=closed)


class _Raw:
    """A ready JSON Schema where a rule is expected."""
    required = False

    def __init__(self, body):
        self.body = body

    def schema(self):
        return self.body


def _size_conditions():
    """Root-level conditions: for each network of this package, ``gt_size`` (and the progressive ``gt_sizes``) on
    its size rule, ``batch_size_per_gpu`` >= 2 where its BatchNorm needs it."""
    from basicsr_restore.archs.card import card_of, constructor_arguments  # keeps `schema --help` light (torch)
    out = []
    archs = registry('arch')
    for name in OURS['arch']:
        cls = archs.get(name)
        card = card_of(cls)
        if card is None:
            continue
        reads = [p.name for p in inspect.signature(card.size).parameters.values() if p.kind is not p.VAR_KEYWORD]
        defaults = constructor_arguments(cls, {})
        choices = [{}] if not reads else [{reads[0]: v} for v in sorted(
            {defaults.get(reads[0])} | {p.kwargs.get(reads[0], defaults.get(reads[0])) for p in
                                        card.presets.values()} | set(range(1, 9)))]
        for values in choices:
            rule = card.size(**{**defaults, **values})
            size = {'type': 'integer', 'multipleOf': rule.multiple, 'minimum': max(rule.min_size, 1)}
            train = {'gt_size': size, 'gt_sizes': {'type': 'array', 'items': size}}
            if card.batch_rule:
                train['batch_size_per_gpu'] = {'type': 'integer', 'minimum': 2}
                train['mini_batch_sizes'] = {'type': 'array', 'items': {'type': 'integer', 'minimum': 2}}
            network = {'properties': {'type': {'const': name}}, 'required': ['type']}
            for key, value in values.items():
                if value == defaults.get(key):
                    network = {'allOf': [network, {'anyOf': [{'not': {'required': [key]}},
                                                             {'properties': {key: {'const': value}}}]}]}
                else:
                    network = {'allOf': [network, {'properties': {key: {'const': value}}, 'required': [key]}]}
            out.append({'if': {'properties': {'network_g': network}, 'required': ['network_g']},
                        'then': {'properties': {'datasets': {'patternProperties': {
                            '^train(_.*)?$': {'properties': train}}}}}})
    return out


def _lenient(body):
    """``body`` without its closed key lists (``allow_unknown_keys``, or models that are not this package's)."""
    if isinstance(body, dict):
        return {k: _lenient(v) for k, v in body.items() if not (k == 'additionalProperties' and v is False)}
    if isinstance(body, list):
        return [_lenient(v) for v in body]
    return body


def build():
    """The JSON Schema (a dict) of option files of this package's models, for the installed registries."""
    from basicsr.utils.registry import ARCH_REGISTRY, LOSS_REGISTRY, METRIC_REGISTRY, MODEL_REGISTRY

    from basicsr_restore.core import speed  # keeps `schema --help` light (torch)
    register_all()
    ours = sorted(n for n in MODEL_REGISTRY.keys() if getattr(MODEL_REGISTRY.get(n), 'OPTION_KEYS', None) is not None)
    keys = MODEL_REGISTRY.get('RestorationModel').OPTION_KEYS
    networks, closed = _arguments(ARCH_REGISTRY)
    losses, closed_losses = _arguments(LOSS_REGISTRY)
    metrics, _ = _arguments(METRIC_REGISTRY, skip=('img', 'img2'), extra=METRIC_EXTRA)
    train = _object(keys['train'])
    train['properties'].update(optim_g=_optimizers(), scheduler=_schedulers())
    train['patternProperties'] = {'_opt$': _by_type(losses, strict_names=closed_losses)}
    train['required'] = ['total_iter', 'optim_g']
    val = _object(keys['val'])
    val['properties']['metrics'] = {'type': 'object', 'additionalProperties': _by_type(metrics,
                                                                                       strict_names=list(metrics))}
    top = _object(TOP_LEVEL, required=('name', 'model_type', 'network_g', 'datasets'))
    phases = '|'.join(PHASES)
    top['properties'].update(
        model_type={'type': 'string', 'enum': sorted(MODEL_REGISTRY.keys())},
        network_g=_by_type(networks, strict_names=closed),
        datasets={'type': 'object', 'propertyNames': {'pattern': f'^({phases})(_.*)?$'},
                  'additionalProperties': _datasets()},
        train=train, val=val,
        path=_object({**keys['path'], **{k: Anything() for k in RUNNER_PATHS}}),
        logger=_object({**LOGGER, 'wandb': _Raw(_object(WANDB))}),
        dist_params=_object(DIST_PARAMS),
        speed={'anyOf': [_object(speed.RULES), Choice('best').json(), {'type': 'null'}]})
    top['allOf'] = _size_conditions()
    allowed = {'properties': {ALLOW: {'not': {'enum': [False, None]}}}, 'required': [ALLOW]}
    ours_only = {'properties': {'model_type': {'enum': ours}}, 'required': ['model_type']}
    return {'$schema': DRAFT, 'title': 'basicsr-restore option file',
            'description': 'Options of python -m basicsr.train / basicsr.test with this package; generated by '
                           '`basicsr-restore schema` from the checks every run makes.',
            'definitions': {'strict': top, 'lenient': _lenient(copy.deepcopy(top))},
            # the models of this package; another model's keys are its own business (the run checks none either)
            'if': ours_only, 'then': {'if': allowed, 'then': {'$ref': '#/definitions/lenient'},
                                      'else': {'$ref': '#/definitions/strict'}}}


def add_arguments(p):
    p.add_argument('-o', '--output', help='write the schema to this file (default: print it)')


def run(args):
    text = json.dumps(build(), indent=1, sort_keys=False) + '\n'
    if not args.output:
        print(text, end='')
        return 0
    with atomic_path(args.output) as tmp, open(tmp, 'w', encoding='utf-8') as f:
        f.write(text)
    print(f'wrote {args.output}: the JSON Schema of option files. Put this line at the top of an option file (path '
          f'relative to it): # yaml-language-server: $schema={args.output}')
    return 0
