"""FFT loss against a direct computation; multi-output supervision of RestorationModel."""
import numpy as np
import torch
import torch.nn.functional as F
from basicsr.utils.registry import LOSS_REGISTRY

import basicsr_restore  # noqa: F401
from basicsr_restore.archs.card import SizeRule
from basicsr_restore.models.restoration_model import RestorationModel


def test_fft_loss_equals_direct_computation():
    rng = np.random.default_rng(0)
    pred, target = rng.random((2, 3, 12, 10)), rng.random((2, 3, 12, 10))
    fp, ft = np.fft.fft2(pred), np.fft.fft2(target)
    expected = np.mean(np.abs(np.stack([fp.real - ft.real, fp.imag - ft.imag], axis=-1)))
    loss = LOSS_REGISTRY.get('FFTLoss')(loss_weight=0.1)
    value = loss(torch.tensor(pred, dtype=torch.float32), torch.tensor(target, dtype=torch.float32))
    assert abs(value.item() - 0.1 * expected) < 1e-5 * expected
    assert loss(torch.ones(1, 3, 4, 4), torch.ones(1, 3, 4, 4)).item() == 0


class ThreeScales(torch.nn.Module):
    """Returns the input at 1/4, 1/2 and full size times a learnable gain."""
    size_rule = SizeRule(4)

    def __init__(self):
        super().__init__()
        self.gain = torch.nn.Parameter(torch.tensor(1.0))

    def forward(self, x):
        return [self.gain * x[..., ::4, ::4], self.gain * x[..., ::2, ::2], self.gain * x]


def test_every_output_is_supervised_against_the_resized_ground_truth(monkeypatch):
    from basicsr.utils.registry import ARCH_REGISTRY
    monkeypatch.setitem(ARCH_REGISTRY._obj_map, 'ThreeScales', ThreeScales)
    opt = {'is_train': True, 'num_gpu': 0, 'dist': False, 'network_g': {'type': 'ThreeScales'},
           'path': {}, 'train': {'optim_g': {'type': 'SGD', 'lr': 0.0}, 'total_iter': 10,
                                 'scheduler': {'type': 'WarmupCosineLR'},
                                 'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0},
                                 'fft_opt': {'type': 'FFTLoss', 'loss_weight': 0.1}}}
    model = RestorationModel(opt)
    lq, gt = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    model.feed_data({'lq': lq, 'gt': gt})
    model.optimize_parameters(1)
    outs = [lq[..., ::4, ::4], lq[..., ::2, ::2], lq]
    gts = [F.interpolate(gt, size=o.shape[-2:], mode='bilinear', align_corners=False) for o in outs]
    l1 = sum((o - g).abs().mean() for o, g in zip(outs, gts))
    fft = sum(0.1 * (torch.view_as_real(torch.fft.fft2(o)) - torch.view_as_real(torch.fft.fft2(g))).abs().mean()
              for o, g in zip(outs, gts))
    assert abs(model.log_dict['l_pixel'] - l1.item()) < 1e-5
    assert abs(model.log_dict['l_fft'] - fft.item()) < 1e-4
    assert model.output.shape == gt.shape


def test_grad_clip_bounds_the_gradient_norm(monkeypatch):
    from basicsr.utils.registry import ARCH_REGISTRY
    monkeypatch.setitem(ARCH_REGISTRY._obj_map, 'ThreeScales', ThreeScales)
    opt = {'is_train': True, 'num_gpu': 0, 'dist': False, 'network_g': {'type': 'ThreeScales'}, 'path': {},
           'train': {'optim_g': {'type': 'SGD', 'lr': 1.0}, 'total_iter': 10, 'grad_clip': 0.001,
                     'scheduler': {'type': 'MultiStepLR', 'milestones': [5], 'gamma': 0.5},
                     'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0}}}
    model = RestorationModel(opt)
    model.feed_data({'lq': torch.ones(1, 3, 8, 8), 'gt': torch.zeros(1, 3, 8, 8)})
    model.optimize_parameters(1)
    # unclipped, the gradient of 3 L1 terms w.r.t. the gain is 3; SGD with lr 1 then moves it by the clip norm
    assert abs(model.net_g.gain.item() - (1.0 - 0.001)) < 1e-7


def test_clamp_output_clamps_before_the_loss(monkeypatch):
    from basicsr.utils.registry import ARCH_REGISTRY
    monkeypatch.setitem(ARCH_REGISTRY._obj_map, 'ThreeScales', ThreeScales)
    opt = {'is_train': True, 'num_gpu': 0, 'dist': False, 'network_g': {'type': 'ThreeScales'}, 'path': {},
           'train': {'optim_g': {'type': 'Adam', 'lr': 0.1}, 'total_iter': 10, 'clamp_output': True,
                     'scheduler': {'type': 'WarmupCosineLR'}, 'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0}}}
    model = RestorationModel(opt)
    model.feed_data({'lq': torch.full((1, 3, 8, 8), 2.0), 'gt': torch.ones(1, 3, 8, 8)})
    model.optimize_parameters(1)
    assert model.log_dict['l_pixel'] == 0  # 2 * gain clamps to 1 = gt
    assert model.net_g.gain.item() == 1.0  # no gradient through the clamp: no step
