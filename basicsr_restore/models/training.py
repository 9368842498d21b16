"""Training of :class:`~basicsr_restore.models.restoration_model.RestorationModel`: its losses and its one step.

* the loss helpers: every ``train.<name>_opt`` with a ``type`` is a loss (:func:`loss_specs`, :func:`build_losses`),
  applied to every output against the ground truth resized to it (:func:`compute_losses`);
* :class:`TrainingMixin`: the optimizer (any of ``torch.optim``), the schedulers (``lr_scheduler``), the EMA of
  parameters and buffers, ``feed_data`` and ``optimize_parameters``, the training step with the forks' recipe
  (``fork_recipe``), gradient clipping, the speed switches and the NaN-safe guard (``step_guard``).

:class:`TrainingMixin` comes before basicsr's ``SRModel`` in the model's bases, so its methods replace basicsr's.
"""
import copy
from collections import OrderedDict

import torch
import torch.nn.functional as F
from basicsr.losses import build_loss
from basicsr.utils import get_root_logger

from basicsr_restore.core import resume, speed
from basicsr_restore.core.imageio import batch_to_float
from basicsr_restore.core.inference import final_output
from basicsr_restore.models import fork_recipe
from basicsr_restore.models.lr_scheduler import SCHEDULERS, schedule_problems
from basicsr_restore.models.step_guard import StepGuard


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



class TrainingMixin:
    """Optimizers, schedulers, EMA, ``feed_data`` and the training step, for a basicsr model (``opt``, ``device``,
    ``net_g``, ``optimizers``, ``schedulers``, ``speed``; ``scaler`` set in ``__init__``; ``last_good_checkpoint``
    from :class:`~basicsr_restore.models.weights.WeightsMixin`)."""

    #: clip the gradients (at ``fork_recipe.FORK_GRAD_CLIP``) when ``train.use_grad_clip`` is absent
    GRAD_CLIP_BY_DEFAULT = False

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
