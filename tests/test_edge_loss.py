"""EdgeLoss (MPRNet's, for EIRN-R): values on hand-checkable Laplacian cases."""
import math

import pytest
import torch
from basicsr.utils.registry import LOSS_REGISTRY

import basicsr_restore  # noqa: F401  (registers the losses)
from basicsr_restore.losses.edge_loss import EdgeLoss, laplacian


def test_registered():
    assert LOSS_REGISTRY.get('EdgeLoss') is EdgeLoss


def test_equal_images_give_sqrt_eps():
    x = torch.rand(2, 3, 16, 16)
    assert math.isclose(EdgeLoss(loss_weight=0.05, eps=1e-6)(x, x.clone()).item(), 0.05 * 1e-3, rel_tol=1e-6)


def test_impulse():
    """An interior impulse at an even position: after blur, decimation, x4 zero-insertion and blur, each axis
    carries u = (.0025, .0125, .04, .1125, .165, .1125, .04, .0125, .0025) (sum 1/2), so lap = delta - 4 u u^T:
    1 - 4 * .165^2 = 0.8911 at the impulse, and the absolute values sum to 2 * 0.8911."""
    pred, target = torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 16, 16)
    pred[0, 1, 8, 8] = 1.0
    lap = laplacian(pred, EdgeLoss().kernel)
    u = torch.tensor([.0025, .0125, .04, .1125, .165, .1125, .04, .0125, .0025])
    expected = torch.zeros(16, 16)
    expected[4:13, 4:13] = -4 * torch.outer(u, u)
    expected[8, 8] += 1.0
    assert torch.allclose(lap[0, 1], expected, atol=1e-7)
    assert not lap[0, 0].any() and not lap[0, 2].any()
    assert math.isclose(lap[0, 1, 8, 8].item(), 0.8911, abs_tol=1e-6)
    loss = EdgeLoss(loss_weight=2.0, eps=0.0, reduction='sum')(pred, target)
    assert math.isclose(loss.item(), 2.0 * 2 * 0.8911, rel_tol=1e-5)
    loss = EdgeLoss(eps=0.0)(pred, target)  # mean over 3 x 16 x 16
    assert math.isclose(loss.item(), 2 * 0.8911 / 768, rel_tol=1e-5)
    assert EdgeLoss(reduction='none')(pred, target).shape == pred.shape


def test_constant_offset_has_no_edges_inside():
    """A constant has no Laplacian away from the border (the 5-tap kernel sums to 1 and the x4 gain restores
    the mean of the zero-inserted image), so a brightness offset is only penalised at the image border."""
    lap = laplacian(torch.full((1, 1, 20, 20), 0.3), EdgeLoss().kernel)
    assert lap[..., 4:-4, 4:-4].abs().max() < 1e-7
    assert lap.abs().max() > 1e-3


def test_bad_reduction():
    with pytest.raises(ValueError, match='reduction'):
        EdgeLoss(reduction='max')
