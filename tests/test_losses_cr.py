"""IntraCRLoss (DRCNet) and PSNRLoss (HINet): values on hand-checkable cases, gradients, VGG weight file."""
import logging
import math

import pytest
import torch
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn

import basicsr_restore  # noqa: F401  (registers the losses)
from basicsr_restore.losses.intra_cr_loss import IntraCRLoss, vgg19_features
from basicsr_restore.losses.psnr_loss import PSNRLoss


class PixelsAsFeatures(nn.Module):
    """Stand-in for the VGG: one 'tap', the image itself, so the ratio can be checked by hand."""

    def forward(self, x):
        return [x]


def random_loss(**kw):
    return IntraCRLoss(vgg_weights='random', **kw)


def test_registered_and_declares_lq():
    assert LOSS_REGISTRY.get('IntraCRLoss') is IntraCRLoss and LOSS_REGISTRY.get('PSNRLoss') is PSNRLoss
    assert IntraCRLoss.needs_lq is True


def test_ratio_formula_by_hand():
    """gt = 0, lq = 1, pred = 0.5 everywhere. Negatives 1, 0.95, 0.9 at distances 0.5, 0.45, 0.4, weighted
    1, 0.95, 0.9: r = 0.5 / (0.5 + 0.4275 + 0.36) = 0.5 / 1.2875. Loss = w * (L1 + 0.05 r) with L1 = 0.5."""
    loss = random_loss(loss_weight=0.5, layer_taps=('relu1_1',), layer_weights=(1.0,))
    loss.vgg = PixelsAsFeatures()
    gt, lq, pred = torch.zeros(2, 3, 8, 8), torch.ones(2, 3, 8, 8), torch.full((2, 3, 8, 8), 0.5)
    r = 0.5 / 1.2875
    assert math.isclose(loss.contrastive(pred, gt, lq).item(), r, rel_tol=1e-6)
    assert math.isclose(loss(pred, gt, lq).item(), 0.5 * (0.5 + 0.05 * r), rel_tol=1e-6)
    pure = random_loss(pixel_weight=0, cr_weight=1, layer_taps=('relu1_1',), layer_weights=(1.0,))
    pure.vgg = PixelsAsFeatures()
    assert math.isclose(pure(pred, gt, lq).item(), r, rel_tol=1e-6)
    # the restored image equal to the degraded input: r = 1 / (0 + 0.95*0.05 + 0.9*0.1)
    assert math.isclose(pure(lq, gt, lq).item(), 1 / (0.0475 + 0.09), rel_tol=1e-5)


def test_perfect_restoration_costs_nothing_and_official_taps():
    loss = random_loss()
    gt, lq = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    assert abs(loss(gt.clone(), gt, lq).item()) < 1e-6   # 0 up to the rounding of batched vs single VGG passes
    feats = loss.vgg(gt)
    assert [tuple(f.shape[1:]) for f in feats] == [(64, 16, 16), (128, 8, 8), (256, 4, 4)]
    assert loss.layer_weights == (1 / 16, 1 / 8, 1 / 4) and loss.neg_weights == (1.0, 0.95, 0.9)
    assert loss.cr_weight == 0.05 and loss.pixel_weight == 1.0 and not loss.vgg.use_input_norm
    assert len(loss.vgg.features) == 12        # torchvision's features[0:12]: conv1_1 .. relu3_1


def test_gradient_reaches_only_the_restored_image():
    loss = random_loss()
    pred = torch.rand(2, 3, 16, 16, requires_grad=True)
    gt = torch.rand(2, 3, 16, 16, requires_grad=True)
    lq = torch.rand(2, 3, 16, 16, requires_grad=True)
    loss(pred, gt, lq).backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    assert gt.grad is None and lq.grad is None
    params = list(loss.vgg.parameters())
    assert params and all(not p.requires_grad and p.grad is None for p in params)
    loss.train()
    assert not loss.vgg.training


def test_contrastive_gradient_pushes_away_from_the_negatives():
    """d r / d p = (1/D_n) dD_p - (D_p / D_n^2) dD_n: with the pixel stand-in, gt = 0, lq = 1, pred 0.5
    (N = 4 pixels), dD_p/dp = 1/N and dD_n/dp = -(1 + 0.95 + 0.9)/N, so every pixel gets
    (1/N) * (1/1.2875 + 0.5 * 2.85 / 1.2875^2) > 0: descending moves the image towards gt and away from lq."""
    pure = random_loss(pixel_weight=0, cr_weight=1, layer_taps=('relu1_1',), layer_weights=(1.0,))
    pure.vgg = PixelsAsFeatures()
    pred = torch.full((1, 1, 2, 2), 0.5, requires_grad=True)
    pure(pred, torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2)).backward()
    expected = (1 / 1.2875 + 0.5 * 2.85 / 1.2875 ** 2) / 4
    assert torch.allclose(pred.grad, torch.full_like(pred, expected), rtol=1e-5)


def test_missing_weights_file_is_a_clear_error_listing_every_place(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    monkeypatch.chdir(tmp_path)
    path = tmp_path / 'nowhere' / 'vgg19-dcbb9e9d.pth'
    with pytest.raises(FileNotFoundError) as err:
        IntraCRLoss(vgg_weights=str(path))
    hub = tmp_path / 'torch' / 'hub' / 'checkpoints' / 'vgg19-dcbb9e9d.pth'
    for place in (str(path), 'experiments/pretrained_models/vgg19-dcbb9e9d.pth', str(hub)):
        assert place in str(err.value)
    assert "torchvision" in str(err.value) and 'Nothing is downloaded' in str(err.value)


def test_weights_are_found_in_torch_hubs_cache(tmp_path, monkeypatch):
    """The DRCNet authors' code took VGG19 from torch hub's cache: an option file without vgg_weights finds it."""
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(3)
    features = vgg19_features(37)
    hub = tmp_path / 'torch' / 'hub' / 'checkpoints'
    hub.mkdir(parents=True)
    torch.save({f'features.{k}': v for k, v in features.state_dict().items()}, hub / 'vgg19-dcbb9e9d.pth')
    loss = IntraCRLoss()
    assert torch.equal(loss.vgg.features[0].weight, features[0].weight)


def test_weights_file_in_torchvision_layout_is_loaded(tmp_path):
    torch.manual_seed(0)
    features = vgg19_features(37)                 # the whole torchvision ``features``
    state = {f'features.{k}': v for k, v in features.state_dict().items()}
    state['classifier.0.weight'] = torch.zeros(2, 2)
    path = tmp_path / 'vgg19-dcbb9e9d.pth'
    torch.save(state, path)
    loss = IntraCRLoss(vgg_weights=str(path))
    assert torch.equal(loss.vgg.features[10].weight, features[10].weight)
    torch.save({'0.weight': torch.zeros(1)}, tmp_path / 'bad.pth')
    with pytest.raises(ValueError, match='torchvision vgg19 state dict'):
        IntraCRLoss(vgg_weights=str(tmp_path / 'bad.pth'))


def test_random_vgg_warns_loudly():
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger('basicsr')
    logger.addHandler(handler)
    try:
        random_loss()
    finally:
        logger.removeHandler(handler)
    assert any(r.levelno == logging.WARNING and 'UNTRAINED' in r.getMessage() for r in records)


def test_bad_options():
    with pytest.raises(ValueError, match='one weight per tap'):
        random_loss(layer_weights=(1 / 16, 1 / 8, 1 / 4, 1.0))   # the official 4-entry list
    with pytest.raises(ValueError, match='taps'):
        random_loss(layer_taps=('relu9_9',), layer_weights=(1.0,))
    with pytest.raises(ValueError, match='reduction'):
        random_loss(reduction='none')


# ----------------------------------------------------------------------------------------------- PSNRLoss
def test_psnr_loss_is_minus_the_mean_per_image_psnr():
    """Image 1 off by 0.1 (MSE 1e-2: 20 dB), image 2 off by 0.01 (MSE 1e-4: 40 dB): mean PSNR 30 dB, not
    the PSNR of the mean MSE (23 dB)."""
    target = torch.zeros(2, 3, 4, 4)
    pred = target.clone()
    pred[0] += 0.1
    pred[1] += 0.01
    assert math.isclose(PSNRLoss(loss_weight=0.5)(pred, target).item(), -0.5 * 30, rel_tol=1e-5)
    assert math.isclose(PSNRLoss()(target, target).item(), -80.0, rel_tol=1e-6)   # the 1e-8 floor


def test_psnr_loss_on_luma():
    """Grey 0.5 vs 0.4: luma differs by 0.1 * (65.481 + 128.553 + 24.966) / 255 = 0.1 * 219 / 255."""
    pred, target = torch.full((1, 3, 4, 4), 0.5), torch.full((1, 3, 4, 4), 0.4)
    mse = (0.1 * 219 / 255) ** 2
    assert math.isclose(PSNRLoss(toY=True)(pred, target).item(), 10 * math.log10(mse + 1e-8), rel_tol=1e-5)
    assert math.isclose(PSNRLoss()(pred, target).item(), 10 * math.log10(0.01 + 1e-8), rel_tol=1e-5)
    with pytest.raises(ValueError, match='mean'):
        PSNRLoss(reduction='sum')
