"""Learning-rate schedules basicsr 1.4.2 lacks: this package's warm-up cosine, and the schedules of the BasicSR
forks' option files under their own names and arguments (NAFNet/HINet/DRCNet's ``TrueCosineAnnealingLR``,
Restormer's ``CosineAnnealingRestartCyclicLR``)."""
import bisect
import math

from torch.optim.lr_scheduler import CosineAnnealingLR, LRScheduler


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


class TrueCosineAnnealingLR(CosineAnnealingLR):
    """The forks' name for one cosine from ``lr`` to ``eta_min`` over ``T_max`` iterations (torch's
    ``CosineAnnealingLR``, stepped once per iteration)."""

    def __init__(self, optimizer, T_max, eta_min=0.0, last_epoch=-1):  # noqa: N803 (the forks' argument name)
        if not int(T_max) > 0:
            raise ValueError(f'TrueCosineAnnealingLR: T_max must be a positive number of iterations, got {T_max!r}')
        super().__init__(optimizer, int(T_max), float(eta_min), last_epoch)


class CosineAnnealingRestartCyclicLR(LRScheduler):
    """Restormer's schedule: consecutive cosine cycles of ``periods[k]`` iterations; cycle ``k`` starts at
    ``restart_weights[k] * lr`` (above ``eta_mins[k]``) and ends at ``eta_mins[k]``. An iteration that ends a cycle
    belongs to it (it gets ``eta_mins[k]``); the next one starts the next cycle."""

    def __init__(self, optimizer, periods, restart_weights=(1,), eta_mins=(0,), last_epoch=-1):
        self.periods = [int(p) for p in periods]
        self.restart_weights = [float(w) for w in restart_weights]
        self.eta_mins = [float(e) for e in eta_mins]
        if not self.periods or len({len(self.periods), len(self.restart_weights), len(self.eta_mins)}) != 1:
            raise ValueError('CosineAnnealingRestartCyclicLR: periods, restart_weights and eta_mins must be lists of '
                             f'one length, got {periods!r}, {restart_weights!r}, {eta_mins!r}')
        self.ends = [sum(self.periods[:k + 1]) for k in range(len(self.periods))]
        super().__init__(optimizer, last_epoch)

    def lr_at(self, base_lr, step):
        k = min(bisect.bisect_left(self.ends, step), len(self.ends) - 1)
        start = self.ends[k - 1] if k else 0
        eta, weight = self.eta_mins[k], self.restart_weights[k]
        return eta + weight * 0.5 * (base_lr - eta) * (1 + math.cos(math.pi * (step - start) / self.periods[k]))

    def get_lr(self):
        return [self.lr_at(base_lr, self.last_epoch) for base_lr in self.base_lrs]


def _host_schedulers():
    from basicsr.models.lr_scheduler import CosineAnnealingRestartLR, MultiStepRestartLR
    return {'MultiStepLR': MultiStepRestartLR, 'MultiStepRestartLR': MultiStepRestartLR,
            'CosineAnnealingRestartLR': CosineAnnealingRestartLR}


#: ``train.scheduler.type`` -> class, for RestorationModel and the option check
SCHEDULERS = {'WarmupCosineLR': WarmupCosineLR, 'TrueCosineAnnealingLR': TrueCosineAnnealingLR,
              'CosineAnnealingRestartCyclicLR': CosineAnnealingRestartCyclicLR, **_host_schedulers()}
