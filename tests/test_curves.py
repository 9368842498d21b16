"""``basicsr-restore report`` draws the training curves of a run: the training log parsed (lines written by basicsr's
own MessageLogger and SRModel validation logger, and a verbatim excerpt of a real run), the tensorboard events as
the fallback, the PNG decoded, and a 4-iteration stock ``python -m basicsr.train`` run reported end to end."""
import logging
import math
import types

import cv2
import numpy as np
import pytest
from conftest import cli, run, tiny_train_options, write_options

from basicsr_restore.commands.report import draw_curves, parse_training_log, read_tensorboard, training_curves

#: an excerpt of a real log (print_freq 1, val_freq 2, total_iter 4; basicsr validates once more after the end)
REAL = """\
  train:[
    total_iter: 4
  ]
  val:[
    val_freq: 2
  ]
2026-12-01 18:30:31,223 INFO: Start training from epoch: 0, iter: 0
2026-12-01 18:30:35,559 INFO: [curve..][epoch:  0, iter:       1, lr:(1.000e-03,)] [eta: 0:00:00, time (data): \
4.335 (0.009)] l_pixel: 8.2385e-02 
2026-12-01 18:30:42,951 INFO: [curve..][epoch:  0, iter:       2, lr:(2.000e-03,)] [eta: 0:00:02, time (data): \
5.863 (0.005)] l_pixel: 7.2634e-02 
2026-12-01 18:30:42,951 INFO: Saving models and training states.
2026-12-01 18:30:45,727 INFO: Validation small_val
\t # psnr: 18.5838\tBest: 18.5838 @ 2 iter

2026-12-01 18:30:46,613 INFO: [curve..][epoch:  0, iter:       3, lr:(2.000e-03,)] [eta: 0:00:00, time (data): \
4.201 (0.004)] l_pixel: 8.8127e-02 
2026-12-01 18:30:49,134 INFO: [curve..][epoch:  1, iter:       4, lr:(1.000e-03,)] [eta: -1 day, 23:59:58, time \
(data): 3.781 (0.004)] l_pixel: 5.0199e-02 
2026-12-01 18:30:49,137 INFO: Saving models and training states.
2026-12-01 18:30:49,907 INFO: Validation small_val
\t # psnr: 19.1470\tBest: 19.1470 @ 4 iter

2026-12-01 18:30:49,916 INFO: End of training. Time consumed: 0:00:18
2026-12-01 18:30:49,916 INFO: Save the latest model.
2026-12-01 18:30:50,436 INFO: Validation small_val
\t # psnr: 19.1470\tBest: 19.1470 @ 6 iter

"""


def write_basicsr_log(path, opt, events, start_iter=0):
    """A training log written by basicsr's own code: the option dump (``dict2str``), ``MessageLogger`` lines for
    ``('train', epoch, iter, {loss: value})`` and ``SRModel._log_validation_metric_values`` blocks for
    ``('val', iter, dataset, {metric: value})``; ``('line', text)`` is logged as is (train.py's messages)."""
    from basicsr.models.sr_model import SRModel
    from basicsr.utils.logger import MessageLogger, get_root_logger
    from basicsr.utils.options import dict2str
    logger = get_root_logger()
    handler = logging.FileHandler(path, 'w')
    handler.setFormatter(logging.Formatter('%(asctime)s %(levelname)s: %(message)s'))  # basicsr's format
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        logger.info(dict2str(opt))
        message = MessageLogger(opt, start_iter, None)
        model = types.SimpleNamespace(metric_results={}, best_metric_results={})
        for event in events:
            if event[0] == 'train':
                _, epoch, it, losses = event
                message({'epoch': epoch, 'iter': it, 'lrs': [1e-4, 5e-5], 'time': 0.2, 'data_time': 0.01, **losses})
            elif event[0] == 'val':
                _, it, dataset, values = event
                model.metric_results = dict(values)
                best = model.best_metric_results.setdefault(dataset, {})
                for name, value in values.items():
                    if name not in best or value > best[name]['val']:
                        best[name] = {'val': value, 'iter': it}
                SRModel._log_validation_metric_values(model, it, dataset, None)
            else:
                logger.info(event[1])
    finally:
        logger.removeHandler(handler)
        handler.close()
        logger.setLevel(level)
    return path


def options(total_iter, val_freq, print_freq, name='run'):
    return {'name': name, 'logger': {'print_freq': print_freq, 'use_tb_logger': False},
            'train': {'total_iter': total_iter}, 'val': {'val_freq': val_freq}}


def training(total_iter, val_freq, print_freq, sets, start=0, final_iter=None):
    """The events of basicsr's train.py loop from ``start`` to ``total_iter``, then its final validation."""
    events = [('line', f'Start training from epoch: 0, iter: {start}')]
    for it in range(start + 1, total_iter + 1):
        if it % print_freq == 0:
            events.append(('train', it // 7, it, {'l_pix': 1.0 / it, 'l_fft': 10.0 / it}))
        if it % val_freq == 0:
            events += [('val', it, s, {'psnr': 20 + it / 1000 + i, 'ssim': 0.5 + it / 1e5}) for i, s in enumerate(sets)]
    events += [('line', 'End of training. Time consumed: 0:00:01'), ('line', 'Save the latest model.')]
    final = final_iter or total_iter + 1  # basicsr's loop counter, past the end
    return events + [('val', final, s, {'psnr': 99.0, 'ssim': 0.99}) for s in sets]


def test_real_log_excerpt():
    curves = parse_training_log(REAL.splitlines(True))
    assert curves.losses == {'l_pixel': {1: 0.082385, 2: 0.072634, 3: 0.088127, 4: 0.050199}}
    assert curves.metrics == {'small_val': {'psnr': {2: 18.5838, 4: 19.147}}}  # the final validation kept once
    assert curves.iterations == [1, 2, 3, 4] and curves.validations == [2, 4]


def test_basicsr_formatted_log_with_thousands_two_sets_and_a_final_validation(tmp_path):
    path = write_basicsr_log(tmp_path / 'a.log', options(3000, 1000, 500),
                             training(3000, 1000, 500, ['setA', 'set B']))
    text = path.read_text()
    assert 'iter:   1,000, lr:(1.000e-04,5.000e-05,)]' in text and '\t # psnr: 21.0000\tBest: 21.0000 @ 1000' in text
    curves = parse_training_log(open(path))
    assert curves.iterations == [500, 1000, 1500, 2000, 2500, 3000]
    assert curves.losses['l_pix'][1500] == pytest.approx(1 / 1500, rel=1e-4)
    assert sorted(curves.losses) == ['l_fft', 'l_pix']
    assert sorted(curves.metrics) == ['set B', 'setA']
    assert curves.metrics['setA']['psnr'] == {1000: 21.0, 2000: 22.0, 3000: 23.0}  # not the final 99
    assert curves.metrics['set B']['psnr'] == {1000: 22.0, 2000: 23.0, 3000: 24.0}
    assert curves.metrics['set B']['ssim'] == {1000: 0.51, 2000: 0.52, 3000: 0.53}


def test_validations_between_logged_iterations_and_after_a_resume(tmp_path):
    # print every 3, validate every 2: 3, 6, 9 logged, 2, 4, 6, 8, 10 validated (2, 4, 8, 10 without a line of
    # their own); 11 is the last iteration and only the final validation scores it
    path = write_basicsr_log(tmp_path / 'b.log', options(11, 2, 3), training(11, 2, 3, ['v']))
    curves = parse_training_log(open(path))
    assert curves.iterations == [3, 6, 9] and curves.validations == [2, 4, 6, 8, 10, 11]
    assert curves.metrics['v']['psnr'][8] == pytest.approx(20.008) and curves.metrics['v']['psnr'][11] == 99.0
    events = training(10, 4, 3, ['v'], start=4, final_iter=13)
    path = write_basicsr_log(tmp_path / 'c.log', options(10, 4, 3), [('line', 'Resuming training from epoch: 0, '
                                                                      'iter: 4.')] + events, start_iter=4)
    curves = parse_training_log(open(path))
    assert curves.iterations == [6, 9] and curves.validations == [8, 10]
    # without the option dump, the caller's val_freq and total_iter place the validations
    lines = [line for line in open(path) if 'val_freq' not in line and 'total_iter' not in line]
    assert parse_training_log(lines, val_freq=4, total_iter=10).validations == [8, 10]


def test_non_numbers_are_left_out_and_logs_without_iterations_say_so(tmp_path):
    events = [('train', 0, 1, {'l_pix': float('nan')}), ('train', 0, 2, {'l_pix': 0.5}),
              ('val', 2, 'v', {'psnr': math.inf})]
    path = write_basicsr_log(tmp_path / 'd.log', options(2, 2, 1), events)
    curves = parse_training_log(open(path))
    assert curves.losses == {'l_pix': {2: 0.5}} and curves.validations == []
    exp = tmp_path / 'experiments' / 'empty'
    exp.mkdir(parents=True)
    write_basicsr_log(exp / 'train_empty_20260101_000000.log', options(2, 2, 1, 'empty'),
                      [('line', 'Start training from epoch: 0, iter: 0')])
    line = training_curves({'name': 'empty'}, str(tmp_path / 'out'), root=str(tmp_path))
    assert line.startswith('training curves: not drawn:')
    assert 'train_empty_20260101_000000.log has no training iteration' in line
    line = training_curves({'name': 'none'}, str(tmp_path / 'out'), root=str(tmp_path))
    assert 'no training log' in line and 'experiments/none/train_none_*.log' in line and 'tb_logger/none' in line
    assert not (tmp_path / 'out' / 'curves.png').exists()


def test_tensorboard_events_are_the_fallback(tmp_path):
    pytest.importorskip('tensorboard')
    from torch.utils.tensorboard import SummaryWriter  # what basicsr writes its events with
    folder = tmp_path / 'tb_logger' / 'tb'
    writer = SummaryWriter(log_dir=str(folder))
    for it in (1, 2, 3, 4):
        writer.add_scalar('losses/l_pix', 1.0 / it, it)
    for it, value in ((2, 20.0), (4, 21.0), (6, 21.0)):  # 6: basicsr's final validation, past total_iter
        writer.add_scalar('metrics/my/val/psnr', value, it)
    writer.close()
    curves = read_tensorboard(str(folder), total_iter=4)
    assert curves.iterations == [1, 2, 3, 4] and curves.metrics == {'my/val': {'psnr': {2: 20.0, 4: 21.0}}}
    line = training_curves({'name': 'tb', 'train': {'total_iter': 4}}, str(tmp_path / 'out'), root=str(tmp_path))
    assert line.startswith(f"training curves: {tmp_path / 'out' / 'curves.png'} (4 logged iterations up to 4, "
                           '2 validations')
    assert line.endswith(f'from {folder})')


def decoded(path):
    data = path.read_bytes()
    assert data[:8] == b'\x89PNG\r\n\x1a\n'
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None
    return img


def test_the_png_has_both_panels(tmp_path):
    path = write_basicsr_log(tmp_path / 'a.log', options(3000, 1000, 500), training(3000, 1000, 500, ['A', 'B']))
    assert draw_curves(parse_training_log(open(path)), str(tmp_path / 'curves.png'), 'title') == str(tmp_path
                                                                                                   / 'curves.png')
    img = decoded(tmp_path / 'curves.png')
    assert img.shape == (450, 1200, 3)
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 50  # lines, text, anti-aliasing: not a blank canvas
    left, right = img[:, :600], img[:, 600:]
    assert (left < 128).any() and (right < 128).any()  # something dark drawn in each panel
    assert np.abs(img[:, :, 0].astype(int) - img[:, :, 2].astype(int)).max() > 100  # coloured curves
    draw_curves(parse_training_log([]), str(tmp_path / 'empty.png'))  # nothing to draw: both panels say so
    assert decoded(tmp_path / 'empty.png').shape == (450, 1200, 3)


def test_report_draws_the_curves_of_a_stock_run(small_pairs, tmp_path, capsys, monkeypatch):
    opt = tiny_train_options(small_pairs, 'curves', 4)
    opt['val']['val_freq'] = 2
    opt['logger']['use_tb_logger'] = False
    opt['train']['ema_decay'] = 0
    path = write_options(tmp_path / 'curves.yml', opt)
    run(['python', '-m', 'basicsr.train', '-opt', path], cwd=tmp_path)
    monkeypatch.chdir(tmp_path)
    rc, out, _ = cli(capsys, 'report', '-opt', path, '--device', 'cpu')
    assert rc == 0
    line = next(line for line in out.splitlines() if line.startswith('training curves: '))
    assert line.startswith('training curves: results/curves_report/curves.png (4 logged iterations up to 4, '
                           '2 validations; from experiments/curves/train_curves_'), line
    img = decoded(tmp_path / 'results' / 'curves_report' / 'curves.png')
    assert img.shape == (450, 1200, 3) and len(np.unique(img.reshape(-1, 3), axis=0)) > 50
    curves = parse_training_log(open(line.rsplit('from ', 1)[1].rstrip(')')))
    assert curves.validations == [2, 4] and list(curves.metrics['small_val']['psnr']) == [2, 4]
