"""A training step that meets a non-finite loss or gradient changes nothing.

Checking the loss after the forward pass is too late to protect the model: in training mode the forward has
already written the batch statistics into BatchNorm's running buffers, so one bad batch leaves NaN in them
and every later checkpoint is ruined although the optimizer step was skipped. :class:`StepGuard`:

1. copies every buffer of the network before the forward pass (BatchNorm statistics are a few kB: the copy
   is one fused ``_foreach_copy_``);
2. after the backward pass, looks at each loss term and the gradient norm; the verdict is summed over every
   DDP rank (one tiny all-reduce), so all ranks take the same decision and none waits alone in a collective;
3. on a bad step: the buffers are put back, the gradients dropped, the optimizer and the EMA left untouched,
   and a warning names the iteration, the non-finite terms and the ranks; after ``max_skipped`` bad steps
   in a row the run stops with :class:`~basicsr_restore.core.errors.TrainingStopped`.

Every rank always runs its backward pass, also on a NaN loss: that keeps DDP's gradient all-reduce matched.
"""
from dataclasses import dataclass, field

import torch

from basicsr_restore.core import distributed
from basicsr_restore.core.errors import TrainingStopped


@dataclass
class Verdict:
    ok: bool
    bad_terms: dict = field(default_factory=dict)  # term name -> ranks where it was non-finite
    world: int = 1

    def describe(self):
        parts = []
        for name, ranks in self.bad_terms.items():
            where = f" on rank{'s' if len(ranks) > 1 else ''} {', '.join(map(str, ranks))}" if self.world > 1 else ''
            parts.append(f'{name}{where}')
        return ', '.join(parts)


class StepGuard:
    """See the module docstring. ``net``: the bare network (its buffers are those DDP broadcasts)."""

    GRADIENTS = 'gradients'

    def __init__(self, net, max_skipped=10):
        if not isinstance(max_skipped, int) or isinstance(max_skipped, bool) or max_skipped < 0:
            raise ValueError(f'train.max_skipped_steps must be an integer >= 0 (0 stops at the first non-finite step), '
                             f'got {max_skipped!r}.')
        self.buffers = [b for b in net.buffers()]
        self.saved = [b.detach().clone() for b in self.buffers]
        self.max_skipped = max_skipped
        self.in_a_row = 0
        self.skipped = 0

    def snapshot(self):
        if self.buffers:
            torch._foreach_copy_(self.saved, self.buffers)

    def restore(self):
        if self.buffers:
            with torch.no_grad():
                torch._foreach_copy_(self.buffers, self.saved)

    @staticmethod
    def grad_norm(params):
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return torch.zeros((), device=params[0].device if params else 'cpu')
        return torch.nn.utils.get_total_norm(grads)

    def verdict(self, terms, grad_norm):
        """``terms``: name -> loss tensor of this rank. Collective under DDP (every rank must call it)."""
        names = list(terms) + [self.GRADIENTS]
        values = list(terms.values()) + [grad_norm]
        device = grad_norm.device
        local = torch.stack([~torch.isfinite(torch.as_tensor(v, device=device).detach()).all() for v in values])
        rank, world = distributed.rank_and_world()
        table = torch.zeros(world, len(names), device=device)
        table[rank] = local.to(table.dtype)
        bad = distributed.sum_across_ranks(table).cpu() > 0
        if not bad.any():
            return Verdict(True)
        terms_bad = {name: [r for r in range(world) if bad[r, i]] for i, name in enumerate(names) if bad[:, i].any()}
        return Verdict(False, terms_bad, world)

    def accepted(self):
        self.in_a_row = 0

    def rejected(self, verdict, current_iter, logger, last_good):
        """Count a bad step, put the buffers back; raise :class:`TrainingStopped` past ``max_skipped``."""
        self.restore()
        self.in_a_row += 1
        self.skipped += 1
        what = verdict.describe()
        if self.in_a_row > self.max_skipped:
            raise TrainingStopped(
                f'training stopped at iteration {current_iter}: {self.in_a_row} steps in a row had non-finite values '
                f'({what}); train.max_skipped_steps is {self.max_skipped}. The network, its BatchNorm statistics, the '
                f'EMA and the optimizer are as before those steps, and nothing non-finite was saved. Last good '
                f'checkpoint: {last_good}. Resume it with --auto_resume after lowering train.optim_g.lr or setting '
                'train.grad_clip, or look for broken images in the training data.')
        logger.warning(f'iter {current_iter}: step skipped, non-finite {what}; the network, BatchNorm statistics, EMA '
                       f'and optimizer are left as they were ({self.in_a_row} in a row, {self.skipped} in all; the run '
                       f'stops after {self.max_skipped} in a row, train.max_skipped_steps).')

    def state_dict(self):
        return {'in_a_row': self.in_a_row, 'skipped': self.skipped}

    def load_state_dict(self, state):
        self.in_a_row, self.skipped = int(state.get('in_a_row', 0)), int(state.get('skipped', 0))


class NoGuard(StepGuard):
    """A guard whose methods do nothing: every step is taken, nothing is copied, checked or synchronised.

    Not for training. ``bench`` swaps it into ``model.guard`` for the comparison steps, so that the guard's cost is
    measured through the model's own ``optimize_parameters`` (no second copy of the step): the difference is
    exactly :class:`StepGuard`'s buffer snapshot, gradient norm (when the recipe does not clip) and verdict."""

    def __init__(self, net=None, max_skipped=10):
        super().__init__(torch.nn.Module(), max_skipped)

    def snapshot(self):
        pass

    def restore(self):
        pass

    @staticmethod
    def grad_norm(params):
        return torch.zeros((), device=params[0].device if params else 'cpu')

    def verdict(self, terms, grad_norm):
        return Verdict(True)

    def rejected(self, verdict, current_iter, logger, last_good):
        pass
