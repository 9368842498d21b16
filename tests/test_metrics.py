"""Protocol metrics: hand-computable cases, and BasicSR's own metrics where the protocols coincide."""
import numpy as np
import pytest
import torch
from basicsr.metrics import calculate_metric, calculate_psnr, calculate_ssim
from conftest import noisy, photo

import basicsr_restore  # noqa: F401  (registers the metrics)
from basicsr_restore.metrics.protocol_metric import (
    calculate_mae,
    calculate_psnr_matlab_y,
    calculate_ssim_matlab_y,
    calculate_ssim_skimage,
    matlab_y,
)
from basicsr_restore.models.restoration_model import RestorationModel


def bgr(r, g, b, size=(16, 16)):
    img = np.zeros(size + (3,), np.uint8)
    img[:] = (b, g, r)
    return img


def test_matlab_y_of_known_colours():
    # MATLAB: rgb2ycbcr(uint8([255 255 255])) -> Y 235; black -> 16; pure red -> 81 (16 + 65.481 = 81.481)
    assert matlab_y(bgr(255, 255, 255))[0, 0] == 235
    assert matlab_y(bgr(0, 0, 0))[0, 0] == 16
    assert matlab_y(bgr(255, 0, 0))[0, 0] == 81
    assert matlab_y(bgr(0, 255, 0))[0, 0] == 145  # 16 + 128.553 = 144.553 -> rounds up
    assert matlab_y(bgr(0, 0, 255)).dtype == np.float64 and matlab_y(bgr(0, 0, 255))[0, 0] == 41  # 40.966
    # float input is not rounded, as MATLAB's rgb2ycbcr on doubles
    assert matlab_y(bgr(255, 0, 0).astype(np.float64))[0, 0] == pytest.approx(81.481)


def test_psnr_y_by_hand():
    # a uniform grey offset: Y of grey g is round(16 + 219 g / 255); grey 100 vs 110 -> Y 102 vs 110 (101.88, 110.47)
    a, b = bgr(100, 100, 100), bgr(110, 110, 110)
    ya, yb = 16 + 219 * 100 / 255, 16 + 219 * 110 / 255
    assert (np.floor(ya + 0.5), np.floor(yb + 0.5)) == (102, 110)
    assert calculate_psnr_matlab_y(a, b) == pytest.approx(10 * np.log10(255 ** 2 / 8 ** 2))
    assert calculate_psnr_matlab_y(a, b, round_y=False) == pytest.approx(10 * np.log10(255 ** 2 / (yb - ya) ** 2))
    assert calculate_psnr_matlab_y(a, a) == float('inf')


def test_y_metrics_equal_basicsrs_when_y_is_not_rounded():
    img = photo((48, 40), 1)
    out = noisy(img, 2, sigma=12)
    ours = calculate_psnr_matlab_y(out, img, round_y=False)
    assert ours == pytest.approx(calculate_psnr(out, img, 0, test_y_channel=True), abs=1e-5)
    assert calculate_ssim_matlab_y(out, img, round_y=False) == pytest.approx(
        calculate_ssim(out, img, 0, test_y_channel=True), abs=1e-6)
    # MATLAB's rounding of Y moves PSNR by about 0.01-0.05 dB, never by much
    assert 0 < abs(calculate_psnr_matlab_y(out, img) - ours) < 0.1


def test_ssim_by_hand_and_bounds():
    img = photo((32, 32), 3)
    assert calculate_ssim_matlab_y(img, img) == pytest.approx(1.0)
    # two constant images: sigma = 0, SSIM = (2 mu1 mu2 + C1) / (mu1^2 + mu2^2 + C1)
    a, b = bgr(100, 100, 100), bgr(110, 110, 110)
    c1 = (0.01 * 255) ** 2
    assert calculate_ssim_matlab_y(a, b) == pytest.approx((2 * 102 * 110 + c1) / (102 ** 2 + 110 ** 2 + c1))
    with pytest.raises(ValueError, match='at least 11x11'):
        calculate_ssim_matlab_y(bgr(1, 2, 3, (8, 8)), bgr(1, 2, 3, (8, 8)))


def test_dpdd_metrics_match_skimage_and_hand_values():
    from skimage.metrics import structural_similarity
    rng = np.random.default_rng(0)
    gt = rng.random((24, 20, 3))
    out = np.clip(gt + rng.normal(0, 0.05, gt.shape), 0, 1)
    # DPDD's published protocol on [0, 1] floats (Restormer's utils): skimage SSIM, per-channel MAE, 10 log10(1/MSE)
    expected_ssim = structural_similarity(gt, out, data_range=1, channel_axis=2)
    assert calculate_ssim_skimage(out[:, :, ::-1] * 255, gt[:, :, ::-1] * 255) == pytest.approx(expected_ssim, 1e-9)
    assert calculate_mae(out * 255, gt * 255) == pytest.approx(np.mean([np.abs(out[..., c] - gt[..., c]).mean()
                                                                        for c in range(3)]))
    assert calculate_psnr(out * 255, gt * 255, 0) == pytest.approx(10 * np.log10(1 / np.mean((out - gt) ** 2)))
    assert calculate_mae(bgr(10, 10, 10), bgr(61, 61, 61)) == pytest.approx(51 / 255)


def test_metrics_through_basicsrs_registry():
    img, out = photo((32, 32), 4), noisy(photo((32, 32), 4), 1)
    for name in ('calculate_psnr_matlab_y', 'calculate_ssim_matlab_y', 'calculate_ssim_skimage', 'calculate_mae'):
        value = calculate_metric({'img': out, 'img2': img}, {'type': name, 'crop_border': 0, 'better': 'higher'})
        assert np.isfinite(value)
    with pytest.raises(ValueError, match='must match'):
        calculate_metric({'img': out, 'img2': img[:16]}, {'type': 'calculate_mae', 'crop_border': 0})


def test_metric_input_float_keeps_what_uint8_rounds():
    """``val.metric_input``: uint8 is BasicSR's tensor2img (rounded); float is the clamped output, unrounded."""
    gt = torch.full((3, 8, 8), 100 / 255)
    out = gt + 0.3 / 255  # a third of a grey level: lost by rounding, seen in float
    as_uint8 = [RestorationModel._metric_image(t, 'uint8') for t in (out, gt)]
    assert calculate_psnr(*as_uint8, 0) == float('inf')
    as_float = [RestorationModel._metric_image(t, 'float') for t in (out, gt)]
    assert calculate_psnr(*as_float, 0) == pytest.approx(10 * np.log10(255 ** 2 / 0.3 ** 2), abs=1e-3)
    colour = torch.zeros(3, 2, 2)
    colour[0] = 1.0  # red in RGB -> last channel in BGR, like tensor2img
    assert RestorationModel._metric_image(colour, 'float')[0, 0].tolist() == [0, 0, 255]
    assert RestorationModel._metric_image(colour, 'uint8')[0, 0].tolist() == [0, 0, 255]
    sixteen = RestorationModel._image_to_save(torch.full((3, 2, 2), 0.5), 16)
    assert sixteen.dtype == np.uint16 and sixteen[0, 0, 0] == 32768
