"""What the BasicSR forks' training options do, for :class:`RestorationModel` (their files run as written).

* ``train.use_grad_clip``: clip the gradients at max-norm 0.01 (:data:`FORK_GRAD_CLIP`); ``train.grad_clip``
  gives another norm. The default depends on the model name (see ``fork_model.py``).
* Restormer's progressive training (``datasets.train.mini_batch_sizes``, ``iters``, ``gt_sizes``): for the
  first ``iters[0]`` iterations the batch is ``mini_batch_sizes[0]`` samples drawn from the loaded batch and the
  patch a random ``gt_sizes[0]`` window of the loaded patches, then the next stage, and so on; the loader itself
  serves ``batch_size_per_gpu`` patches of ``gt_size`` (the largest).
* Restormer's ``train.mixing_augs`` (``mixup``, ``mixup_beta``, ``use_identity``): each batch is mixed with a
  permutation of itself, ``lam * x + (1 - lam) * x[perm]`` for input and target alike, ``lam ~ Beta(b, b)``;
  with ``use_identity`` half of the batches are left as they are.
"""
import bisect
import random

import torch

#: the max-norm the forks clip at when ``use_grad_clip`` is on
FORK_GRAD_CLIP = 0.01


def grad_clip(train_opt, by_default):
    """The max-norm to clip at (None: no clipping), from ``grad_clip``/``use_grad_clip`` and the model's default."""
    norm, use = train_opt.get('grad_clip'), train_opt.get('use_grad_clip')
    if use is not None and not isinstance(use, bool):
        raise ValueError(f'train.use_grad_clip must be true or false, got {use!r}.')
    if norm is not None:
        if use is False:
            raise ValueError('train.grad_clip and train.use_grad_clip: false contradict each other: remove one.')
        if not float(norm) > 0:
            raise ValueError(f'train.grad_clip must be a positive max-norm (e.g. 0.001) or absent, got {norm!r}')
        return float(norm)
    return FORK_GRAD_CLIP if (by_default if use is None else use) else None


class Progressive:
    """Restormer's progressive batch and patch sizes, per iteration (see the module docstring)."""

    def __init__(self, batch_sizes, iters, patch_sizes, loaded_batch, loaded_patch):
        if not (len(batch_sizes) == len(iters) == len(patch_sizes)) or not iters:
            raise ValueError('datasets.train: mini_batch_sizes, iters and gt_sizes must be lists of one length, got '
                             f'{batch_sizes!r}, {iters!r}, {patch_sizes!r}.')
        if max(batch_sizes) > loaded_batch or max(patch_sizes) > loaded_patch:
            raise ValueError(f'datasets.train: mini_batch_sizes {batch_sizes} and gt_sizes {patch_sizes} must not '
                             f'exceed batch_size_per_gpu {loaded_batch} and gt_size {loaded_patch} (the loader serves '
                             'those; each stage takes a part of them).')
        self.batch_sizes, self.patch_sizes = [int(b) for b in batch_sizes], [int(p) for p in patch_sizes]
        self.ends = [sum(iters[:k + 1]) for k in range(len(iters))]

    @classmethod
    def from_options(cls, opt):
        train = (opt.get('datasets') or {}).get('train') or {}
        keys = ('mini_batch_sizes', 'iters', 'gt_sizes')
        if not any(k in train for k in keys):
            return None
        missing = [k for k in keys if k not in train]
        if missing:
            raise ValueError(f'datasets.train: progressive training needs mini_batch_sizes, iters and gt_sizes; '
                             f'{", ".join(missing)} missing.')
        return cls(train['mini_batch_sizes'], train['iters'], train['gt_sizes'], int(train['batch_size_per_gpu']),
                   int(train['gt_size']))

    def stage(self, current_iter):
        """``(batch size, patch size)`` at iteration ``current_iter`` (1-based, as basicsr counts)."""
        k = min(bisect.bisect_left(self.ends, current_iter), len(self.ends) - 1)
        return self.batch_sizes[k], self.patch_sizes[k]

    def __call__(self, current_iter, lq, gt, scale=1):
        batch, patch = self.stage(current_iter)
        if batch < lq.shape[0]:
            keep = random.sample(range(lq.shape[0]), k=batch)
            lq, gt = lq[keep], gt[keep]
        size = patch // scale
        if size < lq.shape[-1] or size < lq.shape[-2]:
            top = int((lq.shape[-2] - size) * random.random())
            left = int((lq.shape[-1] - size) * random.random())
            lq = lq[..., top:top + size, left:left + size]
            gt = gt[..., top * scale:(top + size) * scale, left * scale:(left + size) * scale]
        return lq, gt


class Mixup:
    """Restormer's mixing augmentation (see the module docstring)."""

    def __init__(self, beta=1.2, use_identity=False):
        self.beta, self.use_identity = float(beta), bool(use_identity)

    @classmethod
    def from_options(cls, train_opt):
        spec = train_opt.get('mixing_augs') or {}
        unknown = set(spec) - {'mixup', 'mixup_beta', 'use_identity'}
        if unknown:
            raise ValueError(f'train.mixing_augs: unknown keys {sorted(unknown)}; this package reads mixup, mixup_beta '
                             'and use_identity.')
        return cls(spec.get('mixup_beta', 1.2), spec.get('use_identity', False)) if spec.get('mixup') else None

    def __call__(self, gt, lq):
        if self.use_identity and random.randint(0, 1) == 1:
            return gt, lq
        lam = float(torch.distributions.Beta(self.beta, self.beta).sample())
        perm = torch.randperm(gt.shape[0]).to(gt.device)
        return lam * gt + (1 - lam) * gt[perm], lam * lq + (1 - lam) * lq[perm]
