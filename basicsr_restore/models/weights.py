"""Weights of :class:`~basicsr_restore.models.restoration_model.RestorationModel`: loading, saving and resuming.

* ``path.pretrain_network_g`` read through the package's one checkpoint rule (``checkpoints.detect_key``), checked
  for NaN/Inf and for fit, with clear messages;
* network checkpoints and training states written atomically (a crash never leaves a truncated file), never with
  NaN/Inf weights; ``logger.save_format: safetensors`` writes the networks as ``net_g_<iter>.safetensors``;
* training states that also hold the step guard, the GradScaler, the data position and every rank's random state,
  and resume from them.

:class:`WeightsMixin` comes before basicsr's ``SRModel`` in the model's bases, so its methods replace basicsr's.
"""
import os
import time
from collections import OrderedDict

from basicsr.utils import get_root_logger
from basicsr.utils.dist_util import master_only

from basicsr_restore.core import checkpoints, distributed, resume
from basicsr_restore.core.checkpoints import official_key, read_checkpoint
from basicsr_restore.core.errors import TrainingStopped
from basicsr_restore.core.imageio import atomic_path
from basicsr_restore.core.state_dicts import (
    CheckpointError,
    check_finite,
    find_state_dict,
    fit_summary,
    load_into,
    non_finite_keys,
)

#: version of the extra entries this model writes into training states
STATE_FORMAT = 1


class WeightsMixin:
    """Loading, atomic and finite-only saving, and exact resume, for a basicsr model (``opt``, ``net_g``, optionally
    ``net_g_ema``, ``optimizers``, ``schedulers``; ``_last_good`` and ``scaler`` set in ``__init__``)."""

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
