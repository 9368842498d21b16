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

Where each part lives (all in ``basicsr_restore/models/``): the loading, saving and resuming of weights in
``weights.py`` (:class:`~basicsr_restore.models.weights.WeightsMixin`); the losses, optimizers, schedulers, EMA and the
training step in ``training.py`` (:class:`~basicsr_restore.models.training.TrainingMixin`); restoring (``test``),
validation and the metric tables in ``validation.py`` (:class:`~basicsr_restore.models.validation.ValidationMixin`,
``MissingTestSet``). This module joins them before basicsr's ``SRModel`` and holds what is the model's own: the option
keys it reads, the speed switches and moving networks to the device.
"""
import torch
from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger

from basicsr_restore.core import speed
from basicsr_restore.core.option_rules import Bool, Choice, Int, Items, Mapping, Number, Path, Text
from basicsr_restore.core.registry import register
from basicsr_restore.models.training import TrainingMixin
from basicsr_restore.models.validation import ValidationMixin
from basicsr_restore.models.weights import WeightsMixin


@register('model')
class RestorationModel(WeightsMixin, TrainingMixin, ValidationMixin, SRModel):
    """SRModel for single- and multi-output restoration networks (see the module docstring). The mixins come before
    ``SRModel``, so their methods replace basicsr's."""

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
