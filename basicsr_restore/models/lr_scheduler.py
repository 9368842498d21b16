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

    #: arguments the model takes from ``train`` when the scheduler's options leave them out
    FILLED_FROM_TRAIN = ('total_iter',)

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


def _whole_numbers(values):
    return isinstance(values, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in values)


def schedule_problems(cls, spec, train):
    """``[(option, problem)]``: where the schedule ``spec`` (of class ``cls``) disagrees with ``train.total_iter``
    and ``train.warmup_iter``. Read by the option check before a run and by the model that builds the scheduler."""
    total, out = int(train['total_iter']), []
    name = spec.get('type', cls.__name__)
    if cls is WarmupCosineLR:
        if train.get('warmup_iter', -1) > 0:
            out.append(('train.warmup_iter', "stacks basicsr's own warm-up on WarmupCosineLR: use "
                        'train.scheduler.warmup_iter instead and remove train.warmup_iter'))
        own_total = spec.get('total_iter', total)
        if isinstance(spec.get('warmup_iter', 0), int) and spec.get('warmup_iter', 0) >= own_total:
            out.append(('train.scheduler.warmup_iter', f"{spec['warmup_iter']} is not below the {own_total} iterations "
                        'of the schedule (train.total_iter): the warm-up would never end; lower it'))
    periods = spec.get('periods')
    if cls in (CosineAnnealingRestartCyclicLR,) or name == 'CosineAnnealingRestartLR':
        if not _whole_numbers(periods) or not periods or min(periods) < 1:
            out.append(('train.scheduler.periods', f'{periods!r} is not allowed: expected a list of whole numbers '
                        '>= 1 (iterations per cycle)'))
        elif sum(periods) < total:
            out.append(('train.scheduler.periods', f'add up to {sum(periods)}, less than train.total_iter ({total}): '
                        f'the schedule is not defined past the last period; make them add up to {total}'))
        else:
            lengths = {k: len(spec[k]) for k in ('restart_weights', 'eta_mins')
                       if isinstance(spec.get(k), (list, tuple))}
            for key, length in lengths.items():
                if length != len(periods):
                    out.append((f'train.scheduler.{key}', f'has {length} values for {len(periods)} periods; give one '
                                'per period'))
    milestones = spec.get('milestones')
    if name in ('MultiStepLR', 'MultiStepRestartLR'):
        if not _whole_numbers(milestones) or list(milestones) != sorted(milestones) or \
                any(m < 1 for m in milestones):
            out.append(('train.scheduler.milestones', f'{milestones!r} is not allowed: expected a list of whole '
                        'numbers >= 1, in ascending order (the iterations where the rate drops)'))
        restarts, weights = spec.get('restarts', (0,)), spec.get('restart_weights', (1,))
        if isinstance(restarts, (list, tuple)) and isinstance(weights, (list, tuple)) and len(restarts) != len(weights):
            out.append(('train.scheduler.restart_weights', f'has {len(weights)} values for {len(restarts)} restarts; '
                        'give one per restart'))
    if cls is TrueCosineAnnealingLR and isinstance(spec.get('T_max'), int) and spec['T_max'] < total:
        out.append(('train.scheduler.T_max', f"{spec['T_max']} is below train.total_iter ({total}): the rate would "
                    f'rise again after T_max iterations; set it to {total}'))
    return out
