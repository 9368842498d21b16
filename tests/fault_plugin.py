"""A BasicSR plugin for the tests: faults injected into real ``python -m basicsr.train`` / torchrun runs.

It is loaded like any plugin, through a ``basicsr.plugins`` entry point (``conftest.fault_env`` writes the
dist-info), so the stock runner is used unchanged. What it does is chosen by environment variables:

* ``FAULT_KILL_AFTER_STATE=N``: SIGKILL the process right after training state ``N`` was written;
* ``FAULT_KILL_IN_SAVE=N``: SIGKILL it while saving training state ``N`` (temporary file written, not renamed);

and it registers the loss ``NaNAtLoss`` (``nan_at: [[iteration, rank], ...]``): 0 except at those iterations on
those ranks, where it is NaN.
"""
import os
import signal


def _kill():
    os.kill(os.getpid(), signal.SIGKILL)


def _install_kills():
    import torch

    from basicsr_restore.models.restoration_model import RestorationModel
    after = os.environ.get('FAULT_KILL_AFTER_STATE')
    during = os.environ.get('FAULT_KILL_IN_SAVE')
    if after and not getattr(RestorationModel, '_fault_after', False):
        original = RestorationModel.save_training_state

        def save_training_state(self, epoch, current_iter):
            original(self, epoch, current_iter)
            if current_iter == int(after):
                _kill()

        RestorationModel.save_training_state = save_training_state
        RestorationModel._fault_after = True
    if during and not getattr(RestorationModel, '_fault_during', False):
        original_save = RestorationModel._atomic_save

        def _atomic_save(self, obj, path):
            if path.endswith(os.sep + f'{during}.state'):
                torch.save(obj, f'{path}.tmp{os.getpid()}')
                _kill()
            original_save(self, obj, path)

        RestorationModel._atomic_save = _atomic_save
        RestorationModel._fault_during = True


def register():
    import torch
    from basicsr.utils.registry import LOSS_REGISTRY

    class NaNAtLoss(torch.nn.Module):
        """0 (with a zero gradient) except at the listed (iteration, rank) pairs, where it is NaN."""

        def __init__(self, nan_at=(), loss_weight=1.0):
            super().__init__()
            self.nan_at = {tuple(p) for p in nan_at}
            self.calls = 0

        def forward(self, pred, target):
            import torch.distributed as dist
            self.calls += 1
            rank = dist.get_rank() if dist.is_initialized() else 0
            zero = pred.sum() * 0
            return zero + float('nan') if (self.calls, rank) in self.nan_at else zero

    if 'NaNAtLoss' not in LOSS_REGISTRY:
        LOSS_REGISTRY.register(NaNAtLoss)
    _install_kills()
