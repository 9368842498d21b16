"""RestorationModel: basicsr's SRModel for restoration networks with one or several outputs.

What it adds to SRModel (option keys under ``train`` unless said otherwise):

* every ``<name>_opt`` entry with a ``type`` is a loss (``pixel_opt``, ``fft_opt``, ``cr_opt``, ...), applied
  to **every output** of a multi-output network against the ground truth resized (bilinear) to that
  output's size, and summed; losses that declare ``needs_lq`` also get the degraded input;
* ``optim_g.type``: any optimizer of ``torch.optim`` (``Adam``, ``AdamW``, ``SGD``, ...);
* ``scheduler.type``: basicsr's ``MultiStepLR``/``MultiStepRestartLR``/``CosineAnnealingRestartLR`` and
  ``WarmupCosineLR`` (linear warm-up, then cosine to ``eta_min``);
* ``grad_clip``: max norm of the gradients (``clip_grad_norm_``), off when absent;
* ``clamp_output``: clamp the outputs to [0, 1] before the losses (MIRNet's recipe), off by default;
* EMA (``ema_decay``) that also follows buffers, so BatchNorm statistics of ``net_g_ema`` are right;
* test-time padding to the network's ``pad_multiple`` (reflect, bottom/right) and crop back; the last
  output is the result;
* validation scored with the dataset's protocol: ``val.metric_input: uint8`` (default, BasicSR's rounded
  images) or ``float`` (unrounded outputs: SIDD, DPDD), ``val.save_bit_depth: 16``, and per-image CSV/Markdown
  tables at the end of ``basicsr.test`` runs (see :meth:`RestorationModel.nondist_validation`);
* checkpoints and training states written atomically (a crash never leaves a truncated file), and
  ``path.pretrain_network_g`` files checked up front, with clear messages.
"""
import copy
import os
import time
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F
from basicsr.losses import build_loss
from basicsr.models import lr_scheduler as basicsr_schedulers
from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger
from basicsr.utils.dist_util import master_only

from basicsr_restore.archs.layers import restore_any_size
from basicsr_restore.checkpoints import extract_state_dict
from basicsr_restore.models.lr_scheduler import WarmupCosineLR
from basicsr_restore.register import register



def as_list(outputs):
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


def resize_like(img, ref):
    """``img`` resized (bilinear, no antialias) to the spatial size of ``ref``; unchanged if equal."""
    if img.shape[-2:] == ref.shape[-2:]:
        return img
    return F.interpolate(img, size=ref.shape[-2:], mode='bilinear', align_corners=False)


@register('model')
class RestorationModel(SRModel):
    """SRModel for single- and multi-output restoration networks (see the module docstring)."""

    def __init__(self, opt):
        if opt.get('val') is not None:
            opt['val'].setdefault('suffix', None)  # basicsr's test-mode image saving needs the key
        super().__init__(opt)

    # ------------------------------------------------------------------------------------ weights
    def load_network(self, net, load_path, strict=True, param_key='params'):
        where = f"path.pretrain_network_g '{load_path}'"
        if not os.path.isfile(load_path):
            raise FileNotFoundError(f'{where} does not exist. Put the weights file there or remove the option '
                                    '(pretrained files are never downloaded).')
        weights_only = self.opt['path'].get('weights_only_g', True)
        try:
            checkpoint = torch.load(load_path, map_location='cpu', weights_only=weights_only)
        except Exception as exc:
            raise RuntimeError(f'{where} could not be read as a weights-only checkpoint ({type(exc).__name__}: '
                               f'{exc}). If you trust the file, set path.weights_only_g: false.') from None
        if param_key == 'params_ema' and 'params_ema' not in checkpoint:
            param_key = self.opt['path'].get('param_key_g', 'params')
        state = extract_state_dict(checkpoint, param_key, where)
        bare = self.get_bare_model(net)
        missing, unexpected = bare.load_state_dict(state, strict=False)
        shape_errors = [k for k, v in state.items() if k in bare.state_dict() and bare.state_dict()[k].shape != v.shape]
        if strict and (missing or unexpected or shape_errors):
            raise RuntimeError(f'{where} does not fit network_g ({type(bare).__name__}): {len(missing)} missing keys '
                               f'{missing[:5]}, {len(unexpected)} unexpected keys {unexpected[:5]}, shape mismatches '
                               f'{shape_errors[:5]}. Check network_g options and path.param_key_g, or set '
                               'path.strict_load_g: false to load what fits.')
        get_root_logger().info(f'Loaded {type(bare).__name__} from {load_path} [key {param_key!r}]: '
                               f'{len(state) - len(unexpected)} tensors, {len(missing)} missing, '
                               f'{len(unexpected)} unexpected.')

    def _atomic_save(self, obj, path):
        tmp = f'{path}.tmp{os.getpid()}'
        for attempt in range(3):
            try:
                torch.save(obj, tmp)
                os.replace(tmp, path)
                return
            except OSError as exc:
                get_root_logger().warning(f'Saving {path} failed ({exc}); retry {attempt + 1}/3.')
                time.sleep(1)
        raise OSError(f'Could not save {path} after 3 attempts; the previous file (if any) is untouched.')

    @master_only
    def save_network(self, net, net_label, current_iter, param_key='params'):
        label = 'latest' if current_iter == -1 else current_iter
        path = os.path.join(self.opt['path']['models'], f'{net_label}_{label}.pth')
        nets, keys = (net, param_key) if isinstance(net, list) else ([net], [param_key])
        payload = {}
        for net_, key in zip(nets, keys):
            state = self.get_bare_model(net_).state_dict()
            payload[key] = OrderedDict((k[7:] if k.startswith('module.') else k, v.cpu()) for k, v in state.items())
        self._atomic_save(payload, path)

    @master_only
    def save_training_state(self, epoch, current_iter):
        if current_iter == -1:
            return
        state = {'epoch': epoch, 'iter': current_iter,
                 'optimizers': [o.state_dict() for o in self.optimizers],
                 'schedulers': [s.state_dict() for s in self.schedulers]}
        self._atomic_save(state, os.path.join(self.opt['path']['training_states'], f'{current_iter}.state'))

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

        self.losses = OrderedDict()
        for key, spec in train_opt.items():
            if key.endswith('_opt') and isinstance(spec, dict) and 'type' in spec:
                self.losses[f'l_{key[:-4]}'] = build_loss(copy.deepcopy(spec)).to(self.device)
        if not self.losses:
            raise ValueError('train: no loss is configured. Add e.g. `pixel_opt: {type: L1Loss, loss_weight: 1.0}` '
                             '(every train.<name>_opt with a type is a loss).')
        self.clamp_output = bool(train_opt.get('clamp_output', False))
        self.grad_clip = train_opt.get('grad_clip')
        if self.grad_clip is not None and not float(self.grad_clip) > 0:
            raise ValueError('train.grad_clip must be a positive max-norm (e.g. 0.001) or absent, '
                             f'got {self.grad_clip!r}')
        self.setup_optimizers()
        self.setup_schedulers()

    def setup_optimizers(self):
        optim_opt = copy.deepcopy(self.opt['train']['optim_g'])
        optim_type = optim_opt.pop('type')
        params = [p for p in self.net_g.parameters() if p.requires_grad]
        self.optimizer_g = self.get_optimizer(optim_type, params, **optim_opt)
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
        if sched_type == 'WarmupCosineLR':
            if train_opt.get('warmup_iter', -1) > 0:
                raise ValueError('train.warmup_iter stacks basicsr\'s own warm-up on WarmupCosineLR: use '
                                 'train.scheduler.warmup_iter instead and remove train.warmup_iter.')
            sched_opt.setdefault('total_iter', train_opt['total_iter'])
            make = WarmupCosineLR
        elif sched_type in ('MultiStepLR', 'MultiStepRestartLR'):
            make = basicsr_schedulers.MultiStepRestartLR
        elif sched_type == 'CosineAnnealingRestartLR':
            if sum(sched_opt.get('periods', [])) < train_opt['total_iter']:
                raise ValueError('train.scheduler.periods must add up to at least train.total_iter for '
                                 'CosineAnnealingRestartLR (basicsr crashes past the last period).')
            make = basicsr_schedulers.CosineAnnealingRestartLR
        else:
            raise ValueError(f'train.scheduler.type: {sched_type!r} is not supported; use WarmupCosineLR, '
                             'MultiStepLR, MultiStepRestartLR or CosineAnnealingRestartLR.')
        for optimizer in self.optimizers:
            self.schedulers.append(make(optimizer, **sched_opt))

    def model_ema(self, decay=0.999):
        """EMA of the parameters and of floating-point buffers; integer buffers are copied."""
        net = self.get_bare_model(self.net_g)
        ema_state = self.net_g_ema.state_dict()
        with torch.no_grad():
            for key, value in net.state_dict().items():
                target = ema_state[key]
                if target.dtype.is_floating_point:
                    target.mul_(decay).add_(value.detach(), alpha=1 - decay)
                else:
                    target.copy_(value)

    def optimize_parameters(self, current_iter):
        self.optimizer_g.zero_grad(set_to_none=True)
        outputs = as_list(self.net_g(self.lq))
        if self.clamp_output:
            outputs = [out.clamp(0, 1) for out in outputs]
        self.output = outputs[-1]

        total = 0
        loss_dict = OrderedDict()
        for name, criterion in self.losses.items():
            value = 0
            for out in outputs:
                args = [out, resize_like(self.gt, out)]
                if getattr(criterion, 'needs_lq', False):
                    args.append(resize_like(self.lq, out))
                result = criterion(*args)
                if isinstance(result, tuple):  # PerceptualLoss returns (perceptual, style), either may be None
                    result = sum(r for r in result if r is not None)
                value = value + result
            loss_dict[name] = value
            total = total + value

        if not torch.isfinite(total):
            get_root_logger().warning(f'iter {current_iter}: the loss is {total.item()}; this step is skipped.')
            self.optimizer_g.zero_grad(set_to_none=True)
        else:
            total.backward()
            if self.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.net_g.parameters(), float(self.grad_clip))
            self.optimizer_g.step()

        self.log_dict = self.reduce_loss_dict(loss_dict)
        if self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)

    # ---------------------------------------------------------------------------------- inference
    def test(self):
        net = self.net_g_ema if hasattr(self, 'net_g_ema') else self.net_g
        bare = self.get_bare_model(net)
        was_training = net.training
        net.eval()
        with torch.no_grad():
            self.output = restore_any_size(bare, self.lq)
        if was_training:
            net.train()

    # --------------------------------------------------------------------------------- validation
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
        from basicsr.metrics import calculate_metric
        from basicsr.utils import imwrite
        from tqdm import tqdm

        val_opt = self.opt['val']
        dataset_name = dataloader.dataset.opt['name']
        metric_input = val_opt.get('metric_input', 'uint8')
        if metric_input not in ('uint8', 'float'):
            raise ValueError(f"val.metric_input must be 'uint8' (BasicSR's rounded images) or 'float' (unrounded "
                             f'outputs, for SIDD and DPDD), got {metric_input!r}.')
        save_depth = int(val_opt.get('save_bit_depth', 8))
        if save_depth not in (8, 16):
            raise ValueError(f'val.save_bit_depth must be 8 or 16, got {save_depth!r}.')
        metrics = val_opt.get('metrics') or {}
        if metrics:
            if not hasattr(self, 'metric_results'):
                self.metric_results = {name: 0 for name in metrics}
            self._initialize_best_metric_results(dataset_name)
            self.metric_results = {name: 0 for name in self.metric_results}

        rows = []
        pbar = tqdm(total=len(dataloader), unit='image') if val_opt.get('pbar', False) else None
        for idx, val_data in enumerate(dataloader):
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
            if metrics and gt is not None:
                data = {'img': self._metric_image(result, metric_input), 'img2': self._metric_image(gt, metric_input)}
                row = {'image': img_name}
                for name, metric_opt in metrics.items():
                    value = calculate_metric(data, metric_opt)
                    self.metric_results[name] += value
                    row[name] = float(value)
                rows.append(row)
            if pbar:
                pbar.update(1)
                pbar.set_description(f'Test {img_name}')
        if pbar:
            pbar.close()

        if metrics and rows:
            for name in self.metric_results:
                self.metric_results[name] /= len(rows)
                self._update_best_metric_result(dataset_name, name, self.metric_results[name], current_iter)
            self._log_validation_metric_values(current_iter, dataset_name, tb_logger)
            if not self.opt['is_train']:
                self._write_metric_tables(rows, dataset_name, metric_input)

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
