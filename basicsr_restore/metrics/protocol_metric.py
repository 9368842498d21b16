"""Metrics that score each dataset the way its papers do, registered for ``val.metrics`` in option files.

BasicSR's ``calculate_psnr`` / ``calculate_ssim`` already give the RGB protocols (GoPro/HIDE/SIDD, Gaussian
11x11 SSIM per channel, no border crop). What they lack:

* **Rain100H/L, Test100/1200/2800** are scored with MPRNet/Restormer's ``evaluate_PSNR_SSIM.m``: MATLAB's
  ``rgb2ycbcr`` on the uint8 images keeps **Y rounded to uint8**, then PSNR (peak 255) and Zhou Wang's
  ``SSIM_index`` (11x11 Gaussian, sigma 1.5, K = 0.01/0.03, ``filter2 'valid'``). BasicSR's
  ``test_y_channel: true`` does not round Y (about 0.01 dB apart): use ``calculate_psnr_matlab_y`` and
  ``calculate_ssim_matlab_y``.
* **DPDD** is scored on float outputs clamped to [0, 1] (targets read as 16-bit and divided by 65535) with
  PSNR = 10 log10(1 / MSE), skimage's ``structural_similarity`` with its defaults (7x7 uniform window, sample
  covariance, per-channel mean) and the per-channel mean absolute error: ``calculate_psnr`` plus
  ``calculate_ssim_skimage`` and ``calculate_mae``, with ``val.metric_input: float``.

Every function takes BasicSR's arguments: ``img`` (result) and ``img2`` (ground truth) as HxWxC **BGR**
arrays on the 0-255 scale (uint8 from ``tensor2img``, or float64 when ``val.metric_input: float``), and
``crop_border``. ``val.metric_input`` (see ``RestorationModel.nondist_validation``) chooses between the
rounded uint8 images (BasicSR's default, what a saved PNG holds) and the unrounded float outputs (SIDD as
NAFNet/DRCNet score it, DPDD).
"""
import cv2
import numpy as np

from basicsr_restore.core.registry import register

#: MATLAB ``rgb2ycbcr`` luma row for R, G, B in [0, 255] (ITU-R BT.601, studio swing 16-235)
MATLAB_Y = (65.481 / 255.0, 128.553 / 255.0, 24.966 / 255.0)


def _prepare(img, img2, crop_border, input_order='HWC', name='metric'):
    if img.shape != img2.shape:
        raise ValueError(f'{name}: the result is {img.shape} but the ground truth is {img2.shape}; they must match.')
    if input_order == 'CHW':
        img, img2 = img.transpose(1, 2, 0), img2.transpose(1, 2, 0)
    elif input_order != 'HWC':
        raise ValueError(f"{name}: input_order must be 'HWC' or 'CHW', got {input_order!r}")
    if img.ndim == 2:
        img, img2 = img[:, :, None], img2[:, :, None]
    if crop_border:
        img = img[crop_border:-crop_border, crop_border:-crop_border]
        img2 = img2[crop_border:-crop_border, crop_border:-crop_border]
    return img, img2


def matlab_y(img, round_y=None):
    """Y of MATLAB's ``rgb2ycbcr`` for a BGR image on the 0-255 scale, as float64.

    MATLAB returns uint8 for uint8 input: Y rounded half away from zero. ``round_y=None`` does the same
    (rounds uint8 input, keeps float input unrounded, as MATLAB does for double input); True/False force it.
    """
    if img.shape[2] == 1:
        return img[:, :, 0].astype(np.float64)
    b, g, r = (img[:, :, i].astype(np.float64) for i in range(3))
    y = 16.0 + MATLAB_Y[0] * r + MATLAB_Y[1] * g + MATLAB_Y[2] * b
    if round_y is None:
        round_y = img.dtype == np.uint8
    return np.clip(np.floor(y + 0.5), 0, 255) if round_y else y


def psnr(a, b, peak=255.0):
    """PSNR of two float arrays; ``inf`` for identical images (as BasicSR)."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float('inf') if mse == 0 else float(10.0 * np.log10(peak * peak / mse))


def ssim_wang(a, b, peak=255.0):
    """Zhou Wang's ``SSIM_index`` (2003) on one channel: 11x11 Gaussian window (sigma 1.5) normalised to sum 1,
    statistics over the 'valid' region only, K = (0.01, 0.03), mean of the SSIM map."""
    if min(a.shape) < 11:
        raise ValueError(f'SSIM needs images of at least 11x11 pixels (its window), got {a.shape[1]}x{a.shape[0]}.')
    g = cv2.getGaussianKernel(11, 1.5)
    window = g @ g.T

    def valid(x):  # correlation with the window, keeping only the positions where it fits entirely
        return cv2.filter2D(x, -1, window, borderType=cv2.BORDER_REFLECT)[5:-5, 5:-5]

    a, b = a.astype(np.float64), b.astype(np.float64)
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    mu1, mu2 = valid(a), valid(b)
    s11 = valid(a * a) - mu1 * mu1
    s22 = valid(b * b) - mu2 * mu2
    s12 = valid(a * b) - mu1 * mu2
    ssim_map = ((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1 * mu1 + mu2 * mu2 + c1) * (s11 + s22 + c2))
    return float(ssim_map.mean())


@register('metric')
def calculate_psnr_matlab_y(img, img2, crop_border=0, input_order='HWC', round_y=None, **kwargs):
    """PSNR on MATLAB's Y channel (``rgb2ycbcr``, Y rounded to uint8 for uint8 input), peak 255: the deraining
    protocol (``evaluate_PSNR_SSIM.m``)."""
    img, img2 = _prepare(img, img2, crop_border, input_order, 'calculate_psnr_matlab_y')
    return psnr(matlab_y(img, round_y), matlab_y(img2, round_y))


@register('metric')
def calculate_ssim_matlab_y(img, img2, crop_border=0, input_order='HWC', round_y=None, **kwargs):
    """Zhou Wang's SSIM on MATLAB's Y channel (rounded for uint8 input): the deraining protocol."""
    img, img2 = _prepare(img, img2, crop_border, input_order, 'calculate_ssim_matlab_y')
    return ssim_wang(matlab_y(img, round_y), matlab_y(img2, round_y))


@register('metric')
def calculate_ssim_skimage(img, img2, crop_border=0, input_order='HWC', data_range=255.0, **kwargs):
    """skimage's ``structural_similarity`` with its defaults (7x7 uniform window, sample covariance), the mean
    over channels; ``data_range`` is the scale of the inputs (255 for BasicSR's images). DPDD's protocol."""
    from skimage.metrics import structural_similarity
    img, img2 = _prepare(img, img2, crop_border, input_order, 'calculate_ssim_skimage')
    if min(img.shape[:2]) < 7:
        raise ValueError(f'calculate_ssim_skimage needs images of at least 7x7 pixels, got '
                         f'{img.shape[1]}x{img.shape[0]}.')
    return float(structural_similarity(img.astype(np.float64), img2.astype(np.float64), data_range=float(data_range),
                                       channel_axis=2))


@register('metric')
def calculate_mae(img, img2, crop_border=0, input_order='HWC', data_range=255.0, **kwargs):
    """Mean absolute error on the [0, 1] scale (inputs divided by ``data_range``), the mean of the per-channel
    means: DPDD's MAE (lower is better; set ``better: lower`` in the option file)."""
    img, img2 = _prepare(img, img2, crop_border, input_order, 'calculate_mae')
    diff = np.abs(img.astype(np.float64) - img2.astype(np.float64)) / float(data_range)
    return float(diff.reshape(-1, diff.shape[2]).mean(axis=0).mean())
