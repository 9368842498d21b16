"""RestorationModel: basicsr's SRModel for restoration networks with one or several outputs.

What it adds to SRModel (option keys under ``train`` unless said otherwise; :attr:`RestorationModel.OPTION_KEYS`
lists every key it reads, and any other key is an error before the run starts, see ``option_checks``):

* every ``<name>_opt`` entry with a ``type`` is a loss (``pixel_opt``, ``fft_opt``, ``cr_opt``, ...), applied
  to **every output** of a multi-output network against the ground truth resized (bilinear) to that
  output's size, and summed; losses that declare ``needs_lq`` also get the degraded input;
* ``optim_g.type``: any optimizer of ``torch.optim`` (``Adam``, ``AdamW``, ``SGD``, ...);
* ``scheduler.type``: basicsr's ``MultiStepLR``/``MultiStepRestartLR``/``CosineAnnealingRestartLR``,
  ``WarmupCosineLR`` (linear warm-up, then cosine to ``eta_min``) and the forks' ``TrueCosineAnnealingLR`` and
  ``CosineAnnealingRestartCyclicLR``;
* ``grad_clip``: max norm of the gradients (``clip_grad_norm_``), off when absent; ``use_grad_clip``: the forks'
  switch (max-norm 0.01), whose default the forks' model names set (``fork_model.py``);
* the BasicSR forks' recipe keys: Restormer's progressive batches/patches and ``mixing_augs``
  (:mod:`~basicsr_restore.models.fork_recipe`), validation by ``val.grids``/``crop_size`` (``max_minibatch``),
  ``val.window_size`` padding, ``val.use_image`` (= ``metric_input``);
* ``clamp_output``: clamp the outputs to [0, 1] before the losses (MIRNet's recipe), off by default;
* **NaN-safe steps** (``step_guard``): a non-finite loss term or gradient leaves the network, its BatchNorm
  statistics, the EMA and the optimizer as they were, decided together by every DDP rank;
  ``max_skipped_steps`` (default 10) bad steps in a row may be skipped, the next one stops the run; weights
  with NaN/Inf are never written to a checkpoint;
* **exact resume**: training states also hold the data position and every rank's random state (``resume``);
* EMA (``ema_decay``) that also follows buffers, so BatchNorm statistics of ``net_g_ema`` are right;
* **speed switches** (top-level ``speed:``, see :mod:`basicsr_restore.core.speed`): bf16/fp16 autocast (fp16 with a
  GradScaler whose state is resumed), channels_last, ``torch.compile`` of the training step and of restoring,
  activation checkpointing; checkpoints stay plain float32 state dicts with the official keys;
* test-time padding to the network's size rule (its card; reflect, bottom/right) and crop back; the last
  output is the result;
* validation scored with the dataset's protocol (``val.metric_input``, ``val.save_bit_depth``, per-image tables at
  the end of ``basicsr.test`` runs), **sharded over DDP ranks** and gathered (equal to one process);
* checkpoints and training states written atomically (a crash never leaves a truncated file), and
  ``path.pretrain_network_g`` files checked up front, with clear messages;
* ``logger.save_format: safetensors`` writes the network checkpoints as ``net_g_<iter>.safetensors`` (no pickle;
  the ``network_g`` record in the metadata); training states stay ``<iter>.state`` torch files (optimizer state).
"""
import copy
import math
import os
import time
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F
from basicsr.losses import build_loss
from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger
from basicsr.utils.dist_util import master_only
from torch.utils.data import default_collate

from basicsr_restore.archs.card import size_rule
from basicsr_restore.core import checkpoints, distributed, resume, speed
from basicsr_restore.core.checkpoints import official_key, read_checkpoint
from basicsr_restore.core.errors import TestSetsMissing, TrainingStopped
from basicsr_restore.core.imageio import atomic_path, batch_to_float
from basicsr_restore.core.inference import final_output, grid_average, restore_any_size
from basicsr_restore.core.option_rules import Bool, Choice, Int, Items, Mapping, Number, Path, Text
from basicsr_restore.core.registry import register
from basicsr_restore.core.state_dicts import (
    CheckpointError,
    check_finite,
    find_state_dict,
    fit_summary,
    load_into,
    non_finite_keys,
)
from basicsr_restore.models import fork_recipe
from basicsr_restore.models.lr_scheduler import SCHEDULERS, schedule_problems
from basicsr_restore.models.step_guard import StepGuard

#: version of the extra entries this model writes into training states
STATE_FORMAT = 1


def as_list(outputs):
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


def resize_like(img, ref):
    """``img`` resized (bilinear, no antialias) to the spatial size of ``ref``; unchanged if equal."""
    if img.shape[-2:] == ref.shape[-2:]:
        return img
    return F.interpolate(img, size=ref.shape[-2:], mode='bilinear', align_corners=False)


def loss_specs(train_opt):
    """``{key: spec}`` of every ``train.<name>_opt`` with a ``type``: the recipe's losses."""
    return {key: spec for key, spec in train_opt.items()
            if key.endswith('_opt') and isinstance(spec, dict) and 'type' in spec}


def build_losses(train_opt, device):
    """``{'l_<name>': loss}`` of the recipe's losses (:func:`loss_specs`)."""
    return OrderedDict((f'l_{key[:-4]}', build_loss(copy.deepcopy(spec)).to(device))
                       for key, spec in loss_specs(train_opt).items())


def ema_update(ema, net, decay):
    """``ema <- decay * ema + (1 - decay) * net`` for parameters and floating-point buffers (BatchNorm statistics);
    integer buffers are copied."""
    ema_state = ema.state_dict()
    with torch.no_grad():
        for key, value in net.state_dict().items():
            target = ema_state[key]
            if target.dtype.is_floating_point:
                target.mul_(decay).add_(value.detach(), alpha=1 - decay)
            else:
                target.copy_(value)


def compute_losses(losses, outputs, gt, lq):
    """``(total, {term: value})`` of every loss over every output, against ``gt`` (and ``lq`` for the losses that
    declare ``needs_lq``) resized to each output's size."""
    total = 0
    loss_dict = OrderedDict()
    for name, criterion in losses.items():
        value = 0
        for out in outputs:
            args = [out, resize_like(gt, out)]
            if getattr(criterion, 'needs_lq', False):
                args.append(resize_like(lq, out))
            result = criterion(*args)
            if isinstance(result, tuple):  # PerceptualLoss returns (perceptual, style), either may be None
                result = sum(r for r in result if r is not None)
            value = value + result
        loss_dict[name] = value
        total = total + value
    return total, loss_dict


class MissingTestSet(torch.utils.data.Dataset):
    """Stands in for a test set whose files are missing, so ``basicsr.test`` scores the others."""

    def __init__(self, opt, reason):
        self.opt, self.reason = opt, reason

    def __len__(self):
        return 0

    def __getitem__(self, index):
        raise IndexError(index)


@register('model')
class RestorationModel(SRModel):
    """SRModel for single- and multi-output restoration networks (see the module docstring)."""

    #: every key this model reads per section (losses: ``train.<name>_opt``); see ``option_checks``
    #: every key the model reads, with what it takes (``option_rules``): the option check and the editor schema
    OPTION_KEYS = {
        'train': {'ema_decay': Number(0, below=1), 'optim_g': Mapping(), 'scheduler': Mapping(null=True),
                  'total_iter': Int(1, hint='the number of training iterations'),
                  'warmup_iter': Int(-1, hint="basicsr's linear warm-up in iterations; -1 turns it off"),
                  'grad_clip': Number(above=0, null=True, hint='a max-norm such as 0.01, or ~ for none'),
                  'clamp_output': Bool(), 'max_skipped_steps': Int(0), 'use_grad_clip': Bool(),
                  'mixing_augs': Mapping(null=True)},
        'val': {'val_freq': Int(1, hint='validate every this many iterations'), 'save_img': Bool(),
                'suffix': Text(null=True), 'pbar': Bool(), 'metrics': Mapping(null=True),
                'metric_input': Choice('uint8', 'float'), 'save_bit_depth': Choice(8, 16), 'use_image': Bool(),
                'rgb2bgr': Choice(True, hint='scoring channel-swapped images is not supported: remove the key'),
                'grids': Bool(), 'crop_size': Int(1, null=True), 'max_minibatch': Int(1, null=True),
                'window_size': Int(1, null=True)},
        'path': {'pretrain_network_g': Path('file', null=True), 'param_key_g': Text(null=True),
                 'strict_load_g': Bool(), 'resume_state': Path('file', null=True),
                 'ignore_resume_networks': Items(Text(), null=True), 'weights_only_g': Bool(),
                 'allow_partial_load_g': Bool()},
    }

    #: clip the gradients (at ``fork_recipe.FORK_GRAD_CLIP``) when ``train.use_grad_clip`` is absent
    GRAD_CLIP_BY_DEFAULT = False

    def __init__(self, opt):
        if opt.get('val') is not None:
            opt['val'].setdefault('suffix', None)  # basicsr's test-mode image saving needs the key
        self._last_good = None
        self._sets_validated, self._sets_missing = 0, []
        self._speed_request = speed.parse(opt.get('speed'))
        self._speed = None
        self._restorers = {}
        self.scaler = None
        super().__init__(opt)

    @property
    def speed(self):
        """The ``speed`` options as this device honours them (resolved and logged once)."""
        if self._speed is None:
            logger = get_root_logger()
            self._speed = speed.resolve(self._speed_request, self.device, logger.warning)
            speed.apply_backend_flags(self._speed)
            logger.info(f'Speed switches: {self._speed.describe()} on {self.device}.')
        return self._speed

    def model_to_device(self, net):
        """To the device in the memory format of ``speed``, with activation checkpointing when asked (training);
        under DDP wrapped with the GPU of this rank, or without ``device_ids`` on the CPU."""
        net = net.to(self.device, memory_format=self.speed.memory_format)
        if self.opt['is_train'] and self.speed.checkpoint:
            blocks = speed.enable_checkpointing(net, self.speed.checkpoint)
            get_root_logger().info(f'Activation checkpointing of {len(blocks)} blocks ({", ".join(blocks[:4])}'
                                   f'{", ..." if len(blocks) > 4 else ""}).')
        if self.opt['dist']:
            ids = [torch.cuda.current_device()] if self.device.type == 'cuda' else None
            net = torch.nn.parallel.DistributedDataParallel(
                net, device_ids=ids, find_unused_parameters=self.opt.get('find_unused_parameters', False))
        elif self.opt['num_gpu'] > 1:
            net = torch.nn.DataParallel(net)
        return net

    # ------------------------------------------------------------------------------------ weights
    def load_network(self, net, load_path, strict=True, param_key='params'):
        """basicsr's loader, through the package's one checkpoint rule (``checkpoints.detect_key``): the key named
        by ``path.param_key_g``, else ``params`` for the network being trained and ``params_ema`` for the EMA copy
        and for tests (then the other BasicSR key, the network's official key, the other known keys)."""
        path_opt = self.opt['path']
        ema_copy = param_key == 'params_ema'
        checkpoint = read_checkpoint(load_path, trusted=path_opt.get('weights_only_g', True) is False,
                                     what='path.pretrain_network_g', trust_hint='set path.weights_only_g: false')
        asked = path_opt.get('param_key_g')
        if ema_copy and isinstance(checkpoint, dict) and 'params_ema' in checkpoint:
            asked = 'params_ema'
        where = f"path.pretrain_network_g '{load_path}'"
        bare = self.get_bare_model(net)
        state, info = find_state_dict(checkpoint, asked, official_key(bare),
                                      prefer_ema=ema_copy or not self.opt['is_train'], where=where)
        check_finite(state, where)
        param_key = info['key']
        hint = (' Check network_g and path.param_key_g, or set path.strict_load_g: false to load what fits.'
                if strict else '')
        try:
            missing, unexpected, shapes = load_into(bare, state, where, strict,
                                                    self.opt['path'].get('allow_partial_load_g', False))
        except CheckpointError as exc:
            raise CheckpointError(f'{exc}{hint}') from None
        if missing or unexpected or shapes:
            get_root_logger().warning(f'{where}, non-strict load: {fit_summary(bare, missing, unexpected, shapes)}. '
                                      'The rest keeps its initial values.')
        get_root_logger().info(f'Loaded {type(bare).__name__} from {load_path} [key {param_key!r}]: '
                               f'{len(state) - len(unexpected) - len(shapes)} tensors, {len(missing)} missing, '
                               f'{len(unexpected)} unexpected.')

    def _atomic_save(self, obj, path):
        """``obj`` to ``path`` through a temporary file; ``*.safetensors`` as safetensors, anything else (``.pth``,
        training states) with ``torch.save``."""
        for attempt in range(3):
            try:
                with atomic_path(path) as tmp:
                    checkpoints.dump_weights(obj, tmp, checkpoints.format_of(path), where=path)
                return
            except OSError as exc:
                get_root_logger().warning(f'Saving {path} failed ({exc}); retry {attempt + 1}/3.')
                time.sleep(1)
        raise OSError(f'Could not save {path} after 3 attempts; the previous file (if any) is untouched.')

    def _ensure_finite_weights(self, current_iter):
        """Refuse to save NaN/Inf weights (every rank checks its identical copy, so all stop together)."""
        nets = [('net_g', self.net_g)] + ([('net_g_ema', self.net_g_ema)] if hasattr(self, 'net_g_ema') else [])
        for label, net in nets:
            bad = non_finite_keys(self.get_bare_model(net).state_dict())
            if bad:
                raise TrainingStopped(
                    f'training stopped at iteration {current_iter}: {label} holds NaN/Inf in {len(bad)} tensors (e.g. '
                    f'{bad[:3]}), so it was not saved. Last good checkpoint: {self.last_good_checkpoint()}. Resume '
                    'it with --auto_resume after lowering train.optim_g.lr or setting train.grad_clip.')

    def last_good_checkpoint(self):
        if self._last_good is None:
            return 'none (no checkpoint was saved in this run yet)'
        iteration = self._last_good
        network = os.path.join(self.opt['path']['models'], f'net_g_{iteration}{self.weights_extension()}')
        return (f"{network} with its training state "
                f"{os.path.join(self.opt['path']['training_states'], f'{iteration}.state')}")

    def save(self, epoch, current_iter):
        self._ensure_finite_weights(current_iter)
        self._rng_states = resume.gather_rng() if current_iter != -1 else None  # a collective: every rank
        if hasattr(self, 'net_g_ema'):
            self.save_network([self.net_g, self.net_g_ema], 'net_g', current_iter, param_key=['params', 'params_ema'])
        else:
            self.save_network(self.net_g, 'net_g', current_iter)
        self.save_training_state(epoch, current_iter)
        if current_iter != -1:
            self._last_good = current_iter

    def save_format(self):
        """``logger.save_format``: ``pth`` (basicsr's, the default) or ``safetensors`` (network checkpoints only)."""
        return (self.opt.get('logger') or {}).get('save_format') or 'pth'

    def weights_extension(self):
        return checkpoints.SAVE_FORMATS[self.save_format()]

    @master_only
    def save_network(self, net, net_label, current_iter, param_key='params'):
        label = 'latest' if current_iter == -1 else current_iter
        path = os.path.join(self.opt['path']['models'], f'{net_label}_{label}{self.weights_extension()}')
        nets, keys = (net, param_key) if isinstance(net, list) else ([net], [param_key])
        payload = {}
        for net_, key in zip(nets, keys):
            state = self.get_bare_model(net_).state_dict()
            payload[key] = OrderedDict((k[7:] if k.startswith('module.') else k, v.cpu()) for k, v in state.items())
        record = checkpoints.record_of(self.opt.get('network_g') or {}) if net_label == 'net_g' else None
        if record and 'type' in record:  # the file names its network: infer, export and load need no --arch
            payload[checkpoints.NETWORK_KEY] = record
        self._atomic_save(payload, path)

    @master_only
    def save_training_state(self, epoch, current_iter):
        if current_iter == -1:
            return
        state = {'epoch': epoch, 'iter': current_iter,
                 'optimizers': [o.state_dict() for o in self.optimizers],
                 'schedulers': [s.state_dict() for s in self.schedulers],
                 'restore_format': STATE_FORMAT, 'rng': getattr(self, '_rng_states', None),
                 'guard': self.guard.state_dict() if hasattr(self, 'guard') else None,
                 'scaler': self.scaler.state_dict() if self.scaler is not None else None}
        sampler = resume.active_sampler()
        if sampler is not None:
            state['progress'] = sampler.describe()
        self._atomic_save(state, os.path.join(self.opt['path']['training_states'], f'{current_iter}.state'))

    def resume_training(self, resume_state):
        super().resume_training(resume_state)
        self._last_good = resume_state['iter']
        if resume_state.get('guard') and hasattr(self, 'guard'):
            self.guard.load_state_dict(resume_state['guard'])
        if resume_state.get('scaler') and self.scaler is not None:
            self.scaler.load_state_dict(resume_state['scaler'])
        rng = resume_state.get('rng')
        rank, world = distributed.rank_and_world()
        if rng and len(rng) == world:
            resume.restore_rng(rng[rank])
        elif rng:
            get_root_logger().warning(f'The training state holds the random state of {len(rng)} rank(s), this run has '
                                      f'{world}: random streams restart from the seed.')

    # ----------------------------------------------------------------------------------- training
    def init_training_settings(self):
        self.net_g.train()
        train_opt = self.opt['train']
        self.ema_decay = train_opt.get('ema_decay', 0)
        if self.ema_decay > 0:
            get_root_logger().info(f'Use Exponential Moving Average (parameters and buffers), decay {self.ema_decay}')
            self.net_g_ema = copy.deepcopy(self.get_bare_model(self.net_g)).to(self.device)
            load_path = self.opt['path'].get('pretrain_network_g')
            if load_path is not None:
                self.load_network(self.net_g_ema, load_path, self.opt['path'].get('strict_load_g', True), 'params_ema')
            self.net_g_ema.eval()
            for p in self.net_g_ema.parameters():
                p.requires_grad_(False)

        self.losses = build_losses(train_opt, self.device)
        if not self.losses:
            raise ValueError('train: no loss is configured. Add e.g. `pixel_opt: {type: L1Loss, loss_weight: 1.0}` '
                             '(every train.<name>_opt with a type is a loss).')
        self.clamp_output = bool(train_opt.get('clamp_output', False))
        self.grad_clip = fork_recipe.grad_clip(train_opt, self.GRAD_CLIP_BY_DEFAULT)
        self.progressive = fork_recipe.Progressive.from_options(self.opt)
        self.mixup = fork_recipe.Mixup.from_options(train_opt)
        logger = get_root_logger()
        logger.info(f"Gradient clipping: {f'max-norm {self.grad_clip}' if self.grad_clip else 'off'}.")
        if self.progressive:
            logger.info(f'Progressive training: batch {self.progressive.batch_sizes}, patch '
                        f'{self.progressive.patch_sizes} until iterations {self.progressive.ends}.')
        self.guard = StepGuard(self.get_bare_model(self.net_g), train_opt.get('max_skipped_steps', 10))
        self.scaler = speed.grad_scaler(self.speed, self.device)
        self._train_net = speed.compiled(self.net_g, self.speed, training=True)
        self.setup_optimizers()
        self.setup_schedulers()

    def setup_optimizers(self):
        optim_opt = copy.deepcopy(self.opt['train']['optim_g'])
        optim_type = optim_opt.pop('type')
        self.trainable = [p for p in self.net_g.parameters() if p.requires_grad]
        self.optimizer_g = self.get_optimizer(optim_type, self.trainable, **optim_opt)
        self.optimizers.append(self.optimizer_g)

    def get_optimizer(self, optim_type, params, lr, **kwargs):
        cls = getattr(torch.optim, optim_type, None)
        if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
            raise ValueError(f'train.optim_g.type: {optim_type!r} is not an optimizer of torch.optim '
                             '(e.g. Adam, AdamW, SGD).')
        if 'betas' in kwargs:
            kwargs['betas'] = tuple(kwargs['betas'])
        return cls(params, lr, **kwargs)

    def setup_schedulers(self):
        train_opt = self.opt['train']
        sched_opt = copy.deepcopy(train_opt['scheduler'])
        sched_type = sched_opt.pop('type')
        make = SCHEDULERS.get(sched_type)
        if make is None:
            raise ValueError(f'train.scheduler.type: {sched_type!r} is not supported; use '
                             f"{', '.join(SCHEDULERS)}.")
        problems = schedule_problems(make, train_opt['scheduler'], train_opt)
        if problems:
            raise ValueError('; '.join(f'{where}: {text}' for where, text in problems) + '.')
        for key in getattr(make, 'FILLED_FROM_TRAIN', ()):
            sched_opt.setdefault(key, train_opt[key])
        for optimizer in self.optimizers:
            self.schedulers.append(make(optimizer, **sched_opt))

    def model_ema(self, decay=0.999):
        """EMA of the parameters and of floating-point buffers (:func:`ema_update`)."""
        ema_update(self.net_g_ema, self.get_bare_model(self.net_g), decay)

    def feed_data(self, data):
        """The batch on the model's device as float32 in [0, 1]: integer batches (the datasets' ``integer_batches``,
        uint8/uint16 pixels) travel as integers and become float there, bit-identical to converting on the CPU."""
        self.lq = batch_to_float(data['lq'], self.device)
        if 'gt' in data:
            self.gt = batch_to_float(data['gt'], self.device)

    def compute_losses(self, outputs):
        """``(total, {term: value})`` of every loss over every output (:func:`compute_losses`)."""
        return compute_losses(self.losses, outputs, self.gt, self.lq)

    def optimize_parameters(self, current_iter):
        if self.progressive:
            self.lq, self.gt = self.progressive(current_iter, self.lq, self.gt, int(self.opt.get('scale') or 1))
        if self.mixup:
            self.gt, self.lq = self.mixup(self.gt, self.lq)
        self.guard.snapshot()  # BatchNorm statistics as before this step
        self.optimizer_g.zero_grad(set_to_none=True)
        with speed.autocast(self.speed, self.device):
            outputs = [out.float() for out in as_list(self._train_net(speed.to_memory_format(self.lq, self.speed)))]
            if self.clamp_output:
                outputs = [out.clamp(0, 1) for out in outputs]
            self.output = final_output(outputs)
            total, loss_dict = self.compute_losses(outputs)
        # backward on every rank, also for a NaN loss: DDP's gradient all-reduce must stay matched
        if self.scaler is not None:
            self.scaler.scale(total).backward()
            self.scaler.unscale_(self.optimizer_g)
        else:
            total.backward()
        if self.grad_clip:
            norm = torch.nn.utils.clip_grad_norm_(self.trainable, float(self.grad_clip))
        else:
            norm = self.guard.grad_norm(self.trainable)
        # fp16: overflowing gradients are the GradScaler's business (it skips the step and lowers its scale)
        verdict = self.guard.verdict(loss_dict, norm if self.scaler is None else torch.zeros((), device=norm.device))
        if verdict.ok:
            stepped = self._optimizer_step()
            if stepped:
                self.guard.accepted()
                if self.ema_decay > 0:
                    self.model_ema(decay=self.ema_decay)
        else:
            self.optimizer_g.zero_grad(set_to_none=True)
            if self.scaler is not None:
                self.scaler.update()
            self.guard.rejected(verdict, current_iter, get_root_logger(), self.last_good_checkpoint())
        self.log_dict = self.reduce_loss_dict(loss_dict)
        sampler = resume.active_sampler()
        if sampler is not None:
            sampler.batch_trained()

    def _optimizer_step(self):
        """Step the optimizer; with fp16 through the GradScaler. False when the scaler skipped the step."""
        if self.scaler is None:
            self.optimizer_g.step()
            return True
        scale = self.scaler.get_scale()
        self.scaler.step(self.optimizer_g)
        self.scaler.update()
        return self.scaler.get_scale() >= scale

    # ---------------------------------------------------------------------------------- inference
    def restorer(self, bare):
        """``bare`` as restoring runs it: compiled once per network when ``speed.compile`` is on."""
        key = id(bare)
        if key not in self._restorers:
            self._restorers[key] = speed.compiled(bare, self.speed, training=False)
        return self._restorers[key]

    def test(self):
        net = self.net_g_ema if hasattr(self, 'net_g_ema') else self.net_g
        bare = self.get_bare_model(net)
        was_training = net.training
        net.eval()
        val_opt = self.opt.get('val') or {}
        rule = size_rule(bare)
        if val_opt.get('window_size'):  # Restormer's test-time padding to a multiple of window_size
            rule = rule._replace(multiple=math.lcm(rule.multiple, int(val_opt['window_size'])))
        with torch.no_grad(), speed.autocast(self.speed, self.device):
            lq = speed.to_memory_format(self.lq, self.speed)
            if val_opt.get('grids'):
                self.output = grid_average(lambda x: restore_any_size(self.restorer(bare), x, rule), lq,
                                           int(val_opt['crop_size']), val_opt.get('max_minibatch')).float()
            else:
                self.output = restore_any_size(self.restorer(bare), lq, rule).float()
        if was_training:
            net.train()

    # --------------------------------------------------------------------------------- validation
    def validation(self, dataloader, current_iter, tb_logger, save_img=False):
        """basicsr's dispatch, plus: a test set whose files are missing is reported and the others go on;
        after the last test set of a ``basicsr.test`` run, missing ones end it with an error."""
        dataset = dataloader.dataset
        if isinstance(dataset, MissingTestSet):
            self._report_missing_set(dataset)
        elif self.opt['dist']:
            self.dist_validation(dataloader, current_iter, tb_logger, save_img)
        else:
            self.nondist_validation(dataloader, current_iter, tb_logger, save_img)
        if not self.opt['is_train']:
            self._sets_validated += 1
            if self._sets_validated == len(self.opt['datasets']) and self._sets_missing:
                missing = '; '.join(self._sets_missing)
                raise TestSetsMissing(f'{len(self._sets_missing)} of {len(self.opt["datasets"])} test sets could not '
                                      f"be read: {missing}. The others were scored ({self.opt['path']['log']}).")

    def _report_missing_set(self, dataset):
        name = dataset.opt.get('name', '?')
        if dataset.opt.get('optional'):
            get_root_logger().warning(f"Test set '{name}' skipped (optional: true): {dataset.reason}.")
            return
        get_root_logger().error(f"Test set '{name}' cannot be read: {dataset.reason}. Going on with the others.")
        self._sets_missing.append(f"'{name}' ({dataset.reason})")

    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img):
        """BasicSR's validation loop, scored with the dataset's protocol. Options under ``val``:

        * ``metric_input``: ``uint8`` (default, BasicSR's behaviour: the result rounded to 8 bits, what a saved
          PNG holds) or ``float`` (the output clamped to [0, 1] and the ground truth as read, unrounded, on the
          0-255 scale: SIDD as NAFNet/DRCNet score it, DPDD with its 16-bit targets divided by 65535);
        * ``save_bit_depth``: 8 (default) or 16, the PNGs written by ``save_img``;
        * metrics as in BasicSR (``calculate_psnr``, ``calculate_ssim``, and this package's
          ``calculate_psnr_matlab_y``, ``calculate_ssim_matlab_y``, ``calculate_ssim_skimage``, ``calculate_mae``).

        At the end of a test run (``python -m basicsr.test``) the per-image scores and their mean are written to
        ``results/<name>/<dataset>_metrics.csv`` and ``.md``.
        """
        self._validate(dataloader.dataset, current_iter, tb_logger, save_img, 0, 1)

    def dist_validation(self, dataloader, current_iter, tb_logger, save_img):
        """Every rank restores images ``rank, rank + world, ...``; the scores are gathered, so the metrics, the
        best-metric records and the tables equal a one-process validation (basicsr validates on rank 0 alone
        while the other ranks wait in their next collective)."""
        rank, world = distributed.rank_and_world()
        self._validate(dataloader.dataset, current_iter, tb_logger, save_img, rank, world)

    def _validation_options(self):
        val_opt = self.opt['val']
        metric_input = val_opt.get('metric_input', 'uint8')
        if 'use_image' in val_opt:  # the forks' name: metrics on the rounded images (true) or on the outputs (false)
            implied = 'uint8' if val_opt['use_image'] else 'float'
            if 'metric_input' in val_opt and metric_input != implied:
                raise ValueError(f"val.use_image: {val_opt['use_image']} and val.metric_input: {metric_input} "
                                 'contradict each other: keep one.')
            metric_input = implied
        if val_opt.get('rgb2bgr', True) is not True:
            raise ValueError('val.rgb2bgr: false (scoring and saving channel-swapped images) is not supported; remove '
                             'it (metrics and saved images use BGR files of RGB outputs, as rgb2bgr: true).')
        if val_opt.get('grids') and not val_opt.get('crop_size'):
            raise ValueError('val.grids: true needs val.crop_size (the side of the crops the image is restored in).')
        if metric_input not in ('uint8', 'float'):
            raise ValueError(f"val.metric_input must be 'uint8' (BasicSR's rounded images) or 'float' (unrounded "
                             f'outputs, for SIDD and DPDD), got {metric_input!r}.')
        save_depth = int(val_opt.get('save_bit_depth', 8))
        if save_depth not in (8, 16):
            raise ValueError(f'val.save_bit_depth must be 8 or 16, got {save_depth!r}.')
        return metric_input, save_depth, val_opt.get('metrics') or {}

    def _validate(self, dataset, current_iter, tb_logger, save_img, rank, world):
        from tqdm import tqdm
        metric_input, save_depth, metrics = self._validation_options()
        dataset_name = dataset.opt['name']
        if self.opt['val'].get('grids'):
            get_root_logger().info(f"Validating {dataset_name} in {self.opt['val']['crop_size']}-pixel grid crops "
                                   '(val.grids), averaged where they overlap.')
        mine = range(rank, len(dataset), world)
        pbar = tqdm(total=len(mine), unit='image') if self.opt['val'].get('pbar', False) else None
        rows = []
        for idx in mine:
            row = self._validate_one(dataset[idx], idx, dataset_name, current_iter, save_img, metric_input,
                                     save_depth, metrics)
            if row is not None:
                rows.append(row)
            if pbar:
                pbar.update(1)
                pbar.set_description(f"Test {row['image'] if row else idx}")
        if pbar:
            pbar.close()
        if world > 1:
            rows = [row for part in distributed.gather_objects(rows) for row in part]
        rows.sort(key=lambda r: r['_index'])
        if metrics and rows:
            self._record_metrics(rows, metrics, dataset_name, current_iter, tb_logger, metric_input)

    def _validate_one(self, item, idx, dataset_name, current_iter, save_img, metric_input, save_depth, metrics):
        """Restore one image; returns its score row (``_index`` for ordering) or None without ground truth."""
        from basicsr.metrics import calculate_metric
        from basicsr.utils import imwrite
        val_data = default_collate([item])
        img_name = os.path.splitext(os.path.basename(val_data['lq_path'][0]))[0]
        self.feed_data(val_data)
        self.test()
        result = self.output.detach()[0].float().cpu().clamp_(0, 1)
        gt = self.gt.detach()[0].float().cpu() if hasattr(self, 'gt') else None
        del self.lq, self.output
        if hasattr(self, 'gt'):
            del self.gt
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if save_img:
            imwrite(self._image_to_save(result, save_depth), self._save_path(img_name, dataset_name, current_iter))
        if not metrics or gt is None:
            return None
        data = {'img': self._metric_image(result, metric_input), 'img2': self._metric_image(gt, metric_input)}
        row = {'_index': idx, 'image': img_name}
        for name, metric_opt in metrics.items():
            row[name] = float(calculate_metric(data, metric_opt))
        return row

    def _record_metrics(self, rows, metrics, dataset_name, current_iter, tb_logger, metric_input):
        if not hasattr(self, 'metric_results'):
            self.metric_results = {name: 0 for name in metrics}
        self._initialize_best_metric_results(dataset_name)
        self.metric_results = {name: 0 for name in self.metric_results}
        for row in rows:  # in image order, so every world size adds the same numbers in the same order
            for name in self.metric_results:
                self.metric_results[name] += row[name]
        for name in self.metric_results:
            self.metric_results[name] /= len(rows)
            self._update_best_metric_result(dataset_name, name, self.metric_results[name], current_iter)
        if self.opt['rank'] == 0:
            self._log_validation_metric_values(current_iter, dataset_name, tb_logger)
            if not self.opt['is_train']:
                self._write_metric_tables([{k: v for k, v in r.items() if k != '_index'} for r in rows],
                                          dataset_name, metric_input)

    @staticmethod
    def _metric_image(tensor, metric_input):
        """A (C, H, W) RGB tensor in [0, 1] as BasicSR's metrics take it: HxWxC BGR on the 0-255 scale, rounded
        to uint8 (``tensor2img``) or unrounded float64."""
        from basicsr.utils import tensor2img
        if metric_input == 'uint8':
            return tensor2img([tensor])
        img = tensor.clamp(0, 1).numpy().astype(np.float64).transpose(1, 2, 0) * 255.0
        return img[:, :, ::-1].copy() if img.shape[2] == 3 else img[:, :, 0]

    @staticmethod
    def _image_to_save(tensor, bit_depth):
        from basicsr.utils import tensor2img
        if bit_depth == 8:
            return tensor2img([tensor])
        img = np.round(tensor.clamp(0, 1).numpy().transpose(1, 2, 0) * 65535.0).astype(np.uint16)
        return img[:, :, ::-1].copy() if img.shape[2] == 3 else img[:, :, 0]

    def _save_path(self, img_name, dataset_name, current_iter):
        """Where BasicSR saves validation images (training: per image and iteration; test: per dataset)."""
        folder = self.opt['path']['visualization']
        if self.opt['is_train']:
            return os.path.join(folder, img_name, f'{img_name}_{current_iter}.png')
        suffix = self.opt['val'].get('suffix') or self.opt['name']
        return os.path.join(folder, dataset_name, f'{img_name}_{suffix}.png')

    def _write_metric_tables(self, rows, dataset_name, metric_input):
        from basicsr_restore.metrics.tables import write_tables
        folder = self.opt['path'].get('results_root') or self.opt['path']['visualization']
        title = f"{self.opt['name']} on {dataset_name} (scored on {metric_input} outputs)"
        paths = write_tables(rows, folder, f'{dataset_name}_metrics', title=title)
        get_root_logger().info(f'Per-image scores of {dataset_name}: {paths[0]} and {paths[1]}')
