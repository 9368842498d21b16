"""Restoring and validation of :class:`~basicsr_restore.models.restoration_model.RestorationModel`.

* ``test``: test-time padding to the network's size rule (its card; ``val.window_size``), ``val.grids`` crops, the
  speed switches; the last output is the result;
* validation scored with the dataset's protocol (``val.metric_input``, ``val.save_bit_depth``, per-image tables at
  the end of ``basicsr.test`` runs), sharded over DDP ranks and gathered (equal to one process);
* :class:`MissingTestSet`: a test set whose files are missing, reported while the others are scored.

:class:`ValidationMixin` comes before basicsr's ``SRModel`` in the model's bases, so its methods replace basicsr's.
"""
import math
import os

import numpy as np
import torch
from basicsr.metrics import calculate_metric
from basicsr.utils import get_root_logger, imwrite, tensor2img
from torch.utils.data import default_collate
from tqdm import tqdm

from basicsr_restore.archs.card import size_rule
from basicsr_restore.core import distributed, speed
from basicsr_restore.core.errors import TestSetsMissing
from basicsr_restore.core.inference import grid_average, restore_any_size
from basicsr_restore.metrics.tables import write_tables


class MissingTestSet(torch.utils.data.Dataset):
    """Stands in for a test set whose files are missing, so ``basicsr.test`` scores the others."""

    def __init__(self, opt, reason):
        self.opt, self.reason = opt, reason

    def __len__(self):
        return 0

    def __getitem__(self, index):
        raise IndexError(index)



class ValidationMixin:
    """Restoring (``test``) and validation, for a basicsr model (``opt``, ``net_g``, optionally ``net_g_ema``,
    ``speed``, ``feed_data``; ``_restorers``, ``_sets_validated`` and ``_sets_missing`` set in ``__init__``)."""

    # ---------------------------------------------------------------------------------- inference
    def restorer(self, bare):
        """``bare`` as restoring runs it: compiled once per network when ``speed.compile`` is on."""
        key = id(bare)
        if key not in self._restorers:
            self._restorers[key] = speed.compiled(bare, self.speed, training=False)
        return self._restorers[key]

    def test(self):
        net = self.net_g_ema if hasattr(self, 'net_g_ema') else self.net_g
        bare = self.get_bare_model(net)
        was_training = net.training
        net.eval()
        val_opt = self.opt.get('val') or {}
        rule = size_rule(bare)
        if val_opt.get('window_size'):  # Restormer's test-time padding to a multiple of window_size
            rule = rule._replace(multiple=math.lcm(rule.multiple, int(val_opt['window_size'])))
        with torch.no_grad(), speed.autocast(self.speed, self.device):
            lq = speed.to_memory_format(self.lq, self.speed)
            if val_opt.get('grids'):
                self.output = grid_average(lambda x: restore_any_size(self.restorer(bare), x, rule), lq,
                                           int(val_opt['crop_size']), val_opt.get('max_minibatch')).float()
            else:
                self.output = restore_any_size(self.restorer(bare), lq, rule).float()
        if was_training:
            net.train()

    # --------------------------------------------------------------------------------- validation
    def validation(self, dataloader, current_iter, tb_logger, save_img=False):
        """basicsr's dispatch, plus: a test set whose files are missing is reported and the others go on;
        after the last test set of a ``basicsr.test`` run, missing ones end it with an error."""
        dataset = dataloader.dataset
        if isinstance(dataset, MissingTestSet):
            self._report_missing_set(dataset)
        elif self.opt['dist']:
            self.dist_validation(dataloader, current_iter, tb_logger, save_img)
        else:
            self.nondist_validation(dataloader, current_iter, tb_logger, save_img)
        if not self.opt['is_train']:
            self._sets_validated += 1
            if self._sets_validated == len(self.opt['datasets']) and self._sets_missing:
                missing = '; '.join(self._sets_missing)
                raise TestSetsMissing(f'{len(self._sets_missing)} of {len(self.opt["datasets"])} test sets could not '
                                      f"be read: {missing}. The others were scored ({self.opt['path']['log']}).")

    def _report_missing_set(self, dataset):
        name = dataset.opt.get('name', '?')
        if dataset.opt.get('optional'):
            get_root_logger().warning(f"Test set '{name}' skipped (optional: true): {dataset.reason}.")
            return
        get_root_logger().error(f"Test set '{name}' cannot be read: {dataset.reason}. Going on with the others.")
        self._sets_missing.append(f"'{name}' ({dataset.reason})")

    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img):
        """BasicSR's validation loop, scored with the dataset's protocol. Options under ``val``:

        * ``metric_input``: ``uint8`` (default, BasicSR's behaviour: the result rounded to 8 bits, what a saved
          PNG holds) or ``float`` (the output clamped to [0, 1] and the ground truth as read, unrounded, on the
          0-255 scale: SIDD as NAFNet/DRCNet score it, DPDD with its 16-bit targets divided by 65535);
        * ``save_bit_depth``: 8 (default) or 16, the PNGs written by ``save_img``;
        * metrics as in BasicSR (``calculate_psnr``, ``calculate_ssim``, and this package's
          ``calculate_psnr_matlab_y``, ``calculate_ssim_matlab_y``, ``calculate_ssim_skimage``, ``calculate_mae``).

        At the end of a test run (``python -m basicsr.test``) the per-image scores and their mean are written to
        ``results/<name>/<dataset>_metrics.csv`` and ``.md``.
        """
        self._validate(dataloader.dataset, current_iter, tb_logger, save_img, 0, 1)

    def dist_validation(self, dataloader, current_iter, tb_logger, save_img):
        """Every rank restores images ``rank, rank + world, ...``; the scores are gathered, so the metrics, the
        best-metric records and the tables equal a one-process validation (basicsr validates on rank 0 alone
        while the other ranks wait in their next collective)."""
        rank, world = distributed.rank_and_world()
        self._validate(dataloader.dataset, current_iter, tb_logger, save_img, rank, world)

    def _validation_options(self):
        val_opt = self.opt['val']
        metric_input = val_opt.get('metric_input', 'uint8')
        if 'use_image' in val_opt:  # the forks' name: metrics on the rounded images (true) or on the outputs (false)
            implied = 'uint8' if val_opt['use_image'] else 'float'
            if 'metric_input' in val_opt and metric_input != implied:
                raise ValueError(f"val.use_image: {val_opt['use_image']} and val.metric_input: {metric_input} "
                                 'contradict each other: keep one.')
            metric_input = implied
        if val_opt.get('rgb2bgr', True) is not True:
            raise ValueError('val.rgb2bgr: false (scoring and saving channel-swapped images) is not supported; remove '
                             'it (metrics and saved images use BGR files of RGB outputs, as rgb2bgr: true).')
        if val_opt.get('grids') and not val_opt.get('crop_size'):
            raise ValueError('val.grids: true needs val.crop_size (the side of the crops the image is restored in).')
        if metric_input not in ('uint8', 'float'):
            raise ValueError(f"val.metric_input must be 'uint8' (BasicSR's rounded images) or 'float' (unrounded "
                             f'outputs, for SIDD and DPDD), got {metric_input!r}.')
        save_depth = int(val_opt.get('save_bit_depth', 8))
        if save_depth not in (8, 16):
            raise ValueError(f'val.save_bit_depth must be 8 or 16, got {save_depth!r}.')
        return metric_input, save_depth, val_opt.get('metrics') or {}

    def _validate(self, dataset, current_iter, tb_logger, save_img, rank, world):
        metric_input, save_depth, metrics = self._validation_options()
        dataset_name = dataset.opt['name']
        if self.opt['val'].get('grids'):
            get_root_logger().info(f"Validating {dataset_name} in {self.opt['val']['crop_size']}-pixel grid crops "
                                   '(val.grids), averaged where they overlap.')
        mine = range(rank, len(dataset), world)
        pbar = tqdm(total=len(mine), unit='image') if self.opt['val'].get('pbar', False) else None
        rows = []
        for idx in mine:
            row = self._validate_one(dataset[idx], idx, dataset_name, current_iter, save_img, metric_input,
                                     save_depth, metrics)
            if row is not None:
                rows.append(row)
            if pbar:
                pbar.update(1)
                pbar.set_description(f"Test {row['image'] if row else idx}")
        if pbar:
            pbar.close()
        if world > 1:
            rows = [row for part in distributed.gather_objects(rows) for row in part]
        rows.sort(key=lambda r: r['_index'])
        if metrics and rows:
            self._record_metrics(rows, metrics, dataset_name, current_iter, tb_logger, metric_input)

    def _validate_one(self, item, idx, dataset_name, current_iter, save_img, metric_input, save_depth, metrics):
        """Restore one image; returns its score row (``_index`` for ordering) or None without ground truth."""
        val_data = default_collate([item])
        img_name = os.path.splitext(os.path.basename(val_data['lq_path'][0]))[0]
        self.feed_data(val_data)
        self.test()
        result = self.output.detach()[0].float().cpu().clamp_(0, 1)
        gt = self.gt.detach()[0].float().cpu() if hasattr(self, 'gt') else None
        del self.lq, self.output
        if hasattr(self, 'gt'):
            del self.gt
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if save_img:
            imwrite(self._image_to_save(result, save_depth), self._save_path(img_name, dataset_name, current_iter))
        if not metrics or gt is None:
            return None
        data = {'img': self._metric_image(result, metric_input), 'img2': self._metric_image(gt, metric_input)}
        row = {'_index': idx, 'image': img_name}
        for name, metric_opt in metrics.items():
            row[name] = float(calculate_metric(data, metric_opt))
        return row

    def _record_metrics(self, rows, metrics, dataset_name, current_iter, tb_logger, metric_input):
        if not hasattr(self, 'metric_results'):
            self.metric_results = {name: 0 for name in metrics}
        self._initialize_best_metric_results(dataset_name)
        self.metric_results = {name: 0 for name in self.metric_results}
        for row in rows:  # in image order, so every world size adds the same numbers in the same order
            for name in self.metric_results:
                self.metric_results[name] += row[name]
        for name in self.metric_results:
            self.metric_results[name] /= len(rows)
            self._update_best_metric_result(dataset_name, name, self.metric_results[name], current_iter)
        if self.opt['rank'] == 0:
            self._log_validation_metric_values(current_iter, dataset_name, tb_logger)
            if not self.opt['is_train']:
                self._write_metric_tables([{k: v for k, v in r.items() if k != '_index'} for r in rows],
                                          dataset_name, metric_input)

    @staticmethod
    def _metric_image(tensor, metric_input):
        """A (C, H, W) RGB tensor in [0, 1] as BasicSR's metrics take it: HxWxC BGR on the 0-255 scale, rounded
        to uint8 (``tensor2img``) or unrounded float64."""
        if metric_input == 'uint8':
            return tensor2img([tensor])
        img = tensor.clamp(0, 1).numpy().astype(np.float64).transpose(1, 2, 0) * 255.0
        return img[:, :, ::-1].copy() if img.shape[2] == 3 else img[:, :, 0]

    @staticmethod
    def _image_to_save(tensor, bit_depth):
        if bit_depth == 8:
            return tensor2img([tensor])
        img = np.round(tensor.clamp(0, 1).numpy().transpose(1, 2, 0) * 65535.0).astype(np.uint16)
        return img[:, :, ::-1].copy() if img.shape[2] == 3 else img[:, :, 0]

    def _save_path(self, img_name, dataset_name, current_iter):
        """Where BasicSR saves validation images (training: per image and iteration; test: per dataset)."""
        folder = self.opt['path']['visualization']
        if self.opt['is_train']:
            return os.path.join(folder, img_name, f'{img_name}_{current_iter}.png')
        suffix = self.opt['val'].get('suffix') or self.opt['name']
        return os.path.join(folder, dataset_name, f'{img_name}_{suffix}.png')

    def _write_metric_tables(self, rows, dataset_name, metric_input):
        folder = self.opt['path'].get('results_root') or self.opt['path']['visualization']
        title = f"{self.opt['name']} on {dataset_name} (scored on {metric_input} outputs)"
        paths = write_tables(rows, folder, f'{dataset_name}_metrics', title=title)
        get_root_logger().info(f'Per-image scores of {dataset_name}: {paths[0]} and {paths[1]}')
