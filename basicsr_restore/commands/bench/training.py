"""``bench``'s training measurement: iterations per second of training's own step (the recipe's model, built by
basicsr's ``build_model``: ``feed_data`` + ``optimize_parameters``), with and without the NaN guard, on random
batches as the DataLoader delivers them. Nothing of the step is copied here."""
import contextlib
import copy
import itertools
import logging
import os
import statistics
import tempfile

import torch

from basicsr_restore.commands.bench.forward import Timer, peak_memory, spread
from basicsr_restore.core.option_files import read_option_file
from basicsr_restore.host.registration import register_all
from basicsr_restore.losses.intra_cr_loss import find_vgg_weights
from basicsr_restore.models.step_guard import NoGuard, StepGuard
from basicsr_restore.models.training import loss_specs

#: the shipped training recipe whose losses ``bench`` uses for a network given without an option file
RECIPES = {'IRNeXt': 'options/train/GoPro/IRNeXt.yml', 'ChaIR': 'options/train/GoPro/ChaIR.yml',
           'DRCNet': 'options/train/GoPro/DRCNet.yml', 'EIRN': 'options/train/GoPro/EIRN.yml',
           'MIRNet': 'options/train/SIDD/MIRNet.yml'}
#: the dtype of the random training batches: uint8 pixels, as the datasets' integer batches travel to
#: ``RestorationModel.feed_data``, which makes them float32 in [0, 1] on the device (``torch.float32``: float batches)
TRAIN_BATCH_DTYPE = torch.uint8
#: the recipe of a network without one: L1 on every output, Adam, no EMA
FALLBACK_TRAIN = {'optim_g': {'type': 'Adam', 'lr': 1e-4}, 'total_iter': 10 ** 9,
                  'scheduler': {'type': 'MultiStepLR', 'milestones': [10 ** 9]},
                  'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0}}


def training_recipe(opt_path, name):
    """``(options, path, notes)``: the option file whose ``train`` block trains the network (``-opt``, else the
    network's shipped recipe, :data:`RECIPES`), with IntraCR's VGG19 file replaced by an untrained VGG19 of the same
    cost when it is not here; ``path`` None and :data:`FALLBACK_TRAIN` when there is no recipe."""
    for path in (opt_path, RECIPES.get(name)):
        if path and os.path.isfile(path):
            opt = read_option_file(path)
            if loss_specs(opt.get('train') or {}):
                break
    else:
        missing = [f'no recipe found: {RECIPES[name]} is relative to the project folder'] if name in RECIPES else []
        return {'model_type': 'RestorationModel', 'train': copy.deepcopy(FALLBACK_TRAIN)}, None, missing
    opt = dict(opt, train=dict(opt['train']))
    notes = []
    for key, spec in opt['train'].items():
        if isinstance(spec, dict) and spec.get('type') == 'IntraCRLoss' and spec.get('vgg_weights') != 'random':
            try:
                find_vgg_weights(spec.get('vgg_weights'))
            except FileNotFoundError:
                opt['train'][key] = dict(spec, vgg_weights='random')
                notes.append(f'{key}: untrained VGG19 (no VGG19 file found; same cost)')
    return opt, path, notes


def training_options(recipe, name, kwargs, chosen, device, folder):
    """The options RestorationModel (or the recipe's ``model_type``) is built from: the recipe's ``model_type``,
    ``scale`` and ``train`` block, the benched network as ``network_g``, the mode's switches as ``speed``, no
    datasets, no pretrained file, every ``path`` in ``folder``."""
    paths = {key: os.path.join(folder, key) for key in ('models', 'training_states', 'log', 'visualization')}
    return {'name': 'bench', 'model_type': recipe.get('model_type') or 'RestorationModel',
            'scale': recipe.get('scale') or 1, 'num_gpu': 1 if device.type == 'cuda' else 0, 'manual_seed': 0,
            'is_train': True, 'dist': False, 'rank': 0, 'world_size': 1, 'auto_resume': False, 'root_path': folder,
            'network_g': {'type': name, **kwargs}, 'speed': chosen.as_options(),
            'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None,
                     'experiments_root': folder, **paths},
            'train': copy.deepcopy(recipe['train'])}


def random_batch(batch, patch, dtype, pin):
    """A training batch as the DataLoader hands it to ``feed_data``: ``lq`` and ``gt`` of shape (batch, 3, *patch)
    on the CPU (pinned for a GPU), random pixels of ``dtype`` (integers over their range, floats in [0, 1])."""
    def one():
        shape = (batch, 3, *patch)
        x = (torch.rand(shape, dtype=dtype) if dtype.is_floating_point else
             torch.randint(0, int(torch.iinfo(dtype).max) + 1, shape, dtype=dtype))
        return x.pin_memory() if pin else x
    return {'lq': one(), 'gt': one()}


@contextlib.contextmanager
def quiet_basicsr_log():
    """basicsr's logger at ERROR (building a model logs the network's whole structure and its settings)."""
    from basicsr.utils import get_root_logger
    logger = get_root_logger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def measure_training(model, data, device, warmup, runs):
    """Training steps of ``model`` as training takes them: ``feed_data(data)`` then ``optimize_parameters(i)`` (its
    loss terms, NaN guard, gradient clipping, GradScaler, optimizer and EMA). Between the timed steps the same step is
    timed with a :class:`~basicsr_restore.models.step_guard.NoGuard` in ``model.guard``; ``nan_guard_cost_pct`` is
    what the guard costs (median step time with / without). ``warmup`` untimed pairs first."""
    timer = Timer(device)
    guard = getattr(model, 'guard', None)
    compare = isinstance(guard, StepGuard)
    plain = NoGuard() if compare else None
    iteration = itertools.count(1)

    def step(guarded):
        if compare:
            model.guard = guard if guarded else plain

        def once():
            model.feed_data(data)
            model.optimize_parameters(next(iteration))

        return timer(once)

    def timed():
        return [(step(True), step(False) if compare else None) for _ in range(runs)]

    try:
        for _ in range(warmup):
            step(True)
            if compare:
                step(False)
        pairs, peak = peak_memory(device, timed)
    finally:
        if compare:
            model.guard = guard
    with_guard = [p[0] for p in pairs]
    record = {'it_per_s': 1000.0 * len(with_guard) / sum(with_guard), 'step_ms': spread(with_guard),
              'peak_memory_mb': peak}
    if compare:
        without = [p[1] for p in pairs]
        record.update(it_per_s_without_nan_guard=1000.0 * len(without) / sum(without),
                      step_ms_without_nan_guard=spread(without),
                      nan_guard_cost_pct=100.0 * (statistics.median(with_guard) / statistics.median(without) - 1.0))
    return record


def bench_training(name, kwargs, opt_path, chosen, batch, patch, device, warmup, runs):
    """The ``train`` record: the recipe's own model (basicsr's ``build_model``) built for the benched network,
    trained on random batches (:data:`TRAIN_BATCH_DTYPE`) by :func:`measure_training`."""
    from basicsr.models import build_model
    register_all()
    recipe, path, notes = training_recipe(opt_path, name)
    train = recipe['train']
    if path:
        loss = (' + '.join(spec['type'] for spec in loss_specs(train).values()) + f' on every output ({path})'
                + ''.join(f'; {note}' for note in notes))
    else:
        loss = 'L1 on every output' + ''.join(f' ({note})' for note in notes)
    where = torch.cuda.device(device) if device.type == 'cuda' else contextlib.nullcontext()
    with tempfile.TemporaryDirectory(prefix='basicsr-restore-bench-') as folder, where:
        opt = training_options(recipe, name, kwargs, chosen, device, folder)
        torch.manual_seed(0)
        with quiet_basicsr_log():
            model = build_model(opt)
        data = random_batch(batch, patch, TRAIN_BATCH_DTYPE, pin=device.type == 'cuda')
        record = {'batch': batch, 'patch': list(patch)}
        record.update(measure_training(model, data, device, warmup, runs))
        grad_clip = getattr(model, 'grad_clip', None)
        del model
    record.update(loss=loss, optimizer=(train.get('optim_g') or {}).get('type'),
                  ema=float(train.get('ema_decay') or 0) > 0, grad_clip=grad_clip, model=opt['model_type'],
                  recipe=path, batch_dtype=str(TRAIN_BATCH_DTYPE).replace('torch.', ''), speed=chosen.describe())
    return record
