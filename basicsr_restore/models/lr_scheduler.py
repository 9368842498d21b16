"""Learning-rate schedules basicsr 1.4.2 lacks."""
import math

from torch.optim.lr_scheduler import LRScheduler


class WarmupCosineLR(LRScheduler):
    """Linear warm-up from ``warmup_start_factor * lr`` to ``lr`` (reached at step ``warmup_iter - 1``),
    then cosine annealing from ``lr`` at step ``warmup_iter`` to ``eta_min`` at ``total_iter``.

    This is the per-iteration form of the authors' recipe for ChaIR/IRNeXt (gradual warm-up for a few
    epochs, then ``CosineAnnealingLR(T_max = epochs - warm-up, eta_min=1e-6)``); convert epochs to
    iterations with ``iterations = epochs * ceil(train images / batch)``. Its state is plain numbers, so
    training states load with ``torch.load(weights_only=True)``.
    """

    def __init__(self, optimizer, total_iter, warmup_iter=0, eta_min=1e-6, warmup_start_factor=0.0, last_epoch=-1):
        if not 0 <= warmup_iter < total_iter:
            raise ValueError(f'WarmupCosineLR: need 0 <= warmup_iter < total_iter, got {warmup_iter} and {total_iter}')
        self.total_iter, self.warmup_iter = int(total_iter), int(warmup_iter)
        self.eta_min, self.warmup_start_factor = float(eta_min), float(warmup_start_factor)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, base_lr, step):
        if step < self.warmup_iter:
            return base_lr * (self.warmup_start_factor + (1 - self.warmup_start_factor) * (step + 1) / self.warmup_iter)
        progress = min(1.0, (step - self.warmup_iter) / (self.total_iter - self.warmup_iter))
        return self.eta_min + (base_lr - self.eta_min) * 0.5 * (1 + math.cos(math.pi * progress))

    def get_lr(self):
        return [self.lr_at(base_lr, self.last_epoch) for base_lr in self.base_lrs]


def _host_schedulers():
    from basicsr.models.lr_scheduler import CosineAnnealingRestartLR, MultiStepRestartLR
    return {'MultiStepLR': MultiStepRestartLR, 'MultiStepRestartLR': MultiStepRestartLR,
            'CosineAnnealingRestartLR': CosineAnnealingRestartLR}


#: ``train.scheduler.type`` -> class, for RestorationModel and the option check
SCHEDULERS = {'WarmupCosineLR': WarmupCosineLR, **_host_schedulers()}
