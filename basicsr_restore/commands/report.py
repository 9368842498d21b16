"""``basicsr-restore report -opt X.yml``: how much did the trained network of a run restore, and how did it train?

For every validation set of the option file: PSNR/SSIM (RGB, as basicsr's metrics compute them) of the
degraded input and of the restored output against the ground truth, per image and mean, and one PNG strip
per image (degraded | restored | ground truth). A multi-view input (DPDD's 6-channel left + right views) is
shown and scored as the mean of its views, the image the networks' residual is added to.

Beside the strips, ``curves.png``: the training losses (log scale) and the validation metrics of every
validation set against the iterations, read from the run's latest training log
(``experiments/<name>/train_<name>_<time>.log``, which basicsr always writes) or, when there is none or it holds
no iteration, from its tensorboard events (``tb_logger/<name>``, with the ``tensorboard`` package installed).
Drawing needs ``matplotlib`` (imported only here, Agg canvas); without it the report says so and goes on.
"""
import glob
import importlib.util
import math
import os
import re

import numpy as np
import torch
from basicsr.data import build_dataset
from basicsr.metrics import calculate_psnr, calculate_ssim
from basicsr.utils import tensor2img

from basicsr_restore.archs.layers import mean_of_views
from basicsr_restore.commands.args import load_options
from basicsr_restore.core import checkpoints
from basicsr_restore.core.checkpoints import load_network
from basicsr_restore.core.imageio import atomic_path, batch_to_float, labelled, write_image
from basicsr_restore.core.inference import restore_any_size


def run(args):
    opt = load_options(args.opt)
    name = opt['name']
    weights = args.weights or checkpoints.latest_weights(os.path.join('experiments', name, 'models'))
    if not os.path.isfile(weights):
        raise FileNotFoundError(f"weights '{weights}' not found: train first (python -m basicsr.train -opt "
                                f'{args.opt}) or pass --weights.')
    device = torch.device(args.device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    spec = dict(opt['network_g'])
    net, _ = load_network(spec.pop('type'), spec, weights)
    net = net.to(device).eval()
    out_dir = args.out or os.path.join('results', f'{name}_report')
    os.makedirs(out_dir, exist_ok=True)
    rows = []
    for key, ds_opt in opt.get('datasets', {}).items():
        if not key.startswith('val'):
            continue
        ds_opt = dict(ds_opt, phase='val', scale=opt.get('scale', 1))
        dataset = build_dataset(ds_opt)
        for item in dataset:
            lq = batch_to_float(item['lq'][None], device)
            with torch.no_grad():
                out = restore_any_size(net, lq)
            views = lq.shape[1] // 3 if lq.shape[1] > 3 and lq.shape[1] % 3 == 0 else 1
            degraded = mean_of_views(lq) if views > 1 else lq  # DPDD's left + right: their mean
            imgs = [tensor2img(t.cpu()) for t in (degraded, out, batch_to_float(item['gt'][None], 'cpu'))]
            image = os.path.splitext(os.path.basename(str(item['lq_path'])))[0]
            row = {'dataset': ds_opt.get('name', key), 'image': image,
                   'psnr_in': calculate_psnr(imgs[0], imgs[2], 0), 'psnr_out': calculate_psnr(imgs[1], imgs[2], 0),
                   'ssim_in': calculate_ssim(imgs[0], imgs[2], 0), 'ssim_out': calculate_ssim(imgs[1], imgs[2], 0)}
            label = 'views mean' if views > 1 else 'degraded'
            strip = np.concatenate([labelled(imgs[0], f"{label} {row['psnr_in']:.2f} dB"),
                                    labelled(imgs[1], f"restored {row['psnr_out']:.2f} dB"),
                                    labelled(imgs[2], 'ground truth')], axis=1)
            row['strip'] = os.path.join(out_dir, f'{image}_strip.png')
            write_image(row['strip'], strip)
            rows.append(row)
    if not rows:
        raise ValueError(f'{args.opt}: no datasets.val* entry to report on')
    print(f'{name}: {weights}')
    print(f"{'image':<20} {'PSNR in':>8} {'PSNR out':>9} {'gain':>7} {'SSIM in':>8} {'SSIM out':>9}")
    for r in rows:
        print(f"{r['image']:<20} {r['psnr_in']:8.2f} {r['psnr_out']:9.2f} {r['psnr_out'] - r['psnr_in']:+7.2f} "
              f"{r['ssim_in']:8.4f} {r['ssim_out']:9.4f}   {r['strip']}")
    mean_in = float(np.mean([r['psnr_in'] for r in rows]))
    mean_out = float(np.mean([r['psnr_out'] for r in rows]))
    print(f"{'mean':<20} {mean_in:8.2f} {mean_out:9.2f} {mean_out - mean_in:+7.2f}")
    print(training_curves(opt, out_dir))
    return 0


# ------------------------------------------------------------------------------------------- training curves
#: basicsr's MessageLogger: ``[<name>..][epoch:  0, iter:   1,000, lr:(1.000e-04,)] [eta: 0:01:02, time (data):
#: 0.101 (0.002)] l_pix: 1.2345e-02 l_fft: 3.4567e-01`` (the iteration with thousands separators)
_TRAIN = re.compile(r'\[epoch:\s*-?\d+, iter:\s*([\d,]+), lr:\([^)]*\)\]\s?(.*)$')
_TIMES = re.compile(r'^\[eta:[^\]]*\]\s*')
_VALUE = re.compile(r'([^\s:]+): (\S+)')
#: SRModel._log_validation_metric_values: ``Validation <dataset>``, then ``\t # <metric>: <value>\tBest: <value> @
#: <iter> iter`` per metric. The iteration itself is not printed: it is the one validated after the last logged one.
_VALIDATION = re.compile(r'^(?:.* INFO: )?Validation (\S.*?)\s*$')
_METRIC = re.compile(r'^\s+# ([^\s:]+): (\S+)')
_START = re.compile(r'Start training from epoch: -?\d+, iter: (\d+)')
_END = re.compile(r'End of training\.')
#: the options basicsr dumps at the top of the log (dict2str): what the run really used, --force_yml included
_OPTION = re.compile(r'^\s+(val_freq|total_iter): (\S+)\s*$')


class TrainingCurves:
    """The scalars of one run: ``losses`` ``{name: {iteration: value}}`` and ``metrics``
    ``{dataset: {metric: {iteration: value}}}``, read from ``source``."""

    def __init__(self, source):
        self.source = source
        self.losses = {}
        self.metrics = {}

    @property
    def iterations(self):
        """The logged training iterations, sorted."""
        return sorted({i for values in self.losses.values() for i in values})

    @property
    def validations(self):
        """The validated iterations (of any dataset), sorted."""
        return sorted({i for per in self.metrics.values() for values in per.values() for i in values})


def _number(text):
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _option_int(text):
    value = _number(text)
    return int(value) if value is not None and value > 0 else None


def parse_training_log(lines, val_freq=None, total_iter=None, source='log'):
    """:class:`TrainingCurves` of a basicsr training log (an iterable of lines, e.g. the open file).

    Loss lines carry their iteration. A validation block does not: it belongs to the first multiple of
    ``val_freq`` (basicsr validates at ``iter % val_freq == 0``) at or after the last logged iteration and after
    the previous validation; sets validated one after the other share it. The validation that basicsr's
    ``train.py`` runs after ``End of training`` is the last iteration's (``total_iter``); where a regular one
    already scored that iteration, it is the same weights and is kept once. ``val_freq`` and ``total_iter`` are
    read from the options dumped at the top of the log; the arguments are used when the log lacks them.
    Values that are not finite numbers are left out."""
    curves = TrainingCurves(source)
    options = {}
    started = ended = False
    last_iter = 0  # the latest iteration known to be done
    round_iter, round_sets, round_open = 0, set(), False  # the current validation round
    dataset, val_iter = None, 0  # the set whose metric lines follow, and its iteration
    for line in lines:
        line = line.rstrip('\n')
        if dataset is not None:
            m = _METRIC.match(line)
            if m:
                value = _number(m.group(2))
                if value is not None:
                    values = curves.metrics[dataset].setdefault(m.group(1), {})
                    if ended:
                        values.setdefault(val_iter, value)
                    else:
                        values[val_iter] = value
                continue
            dataset = None
        m = _TRAIN.search(line)
        if m:
            it = int(m.group(1).replace(',', ''))
            last_iter = it
            if round_open and it > round_iter:
                round_open = False
            for name, text in _VALUE.findall(_TIMES.sub('', m.group(2))):
                value = _number(text)
                if value is not None:
                    curves.losses.setdefault(name, {})[it] = value
            continue
        m = _VALIDATION.match(line)
        if m:
            dataset = m.group(1)
            freq = options.get('val_freq') or val_freq
            if ended:
                val_iter = options.get('total_iter') or total_iter or max(last_iter, round_iter)
            elif round_open and dataset not in round_sets:
                val_iter = round_iter
            else:
                lowest = round_iter + 1 if round_iter >= last_iter else last_iter
                val_iter = -(-lowest // freq) * freq if freq else lowest
                round_iter, round_sets, round_open = val_iter, set(), True
            round_sets.add(dataset)
            curves.metrics.setdefault(dataset, {})
            continue
        m = _START.search(line)
        if m:  # a resumed run starts after its resume iteration
            started, last_iter, round_iter, round_open = True, int(m.group(1)), int(m.group(1)), False
            continue
        if _END.search(line):
            ended = True
            continue
        m = None if started else _OPTION.match(line)
        if m and _option_int(m.group(2)):
            options.setdefault(m.group(1), _option_int(m.group(2)))
    return curves


def read_tensorboard(folder, total_iter=None):
    """:class:`TrainingCurves` of the tensorboard events in ``folder`` (``losses/<name>`` and
    ``metrics/<dataset>/<metric>``, as basicsr writes them), or None without the ``tensorboard`` package. basicsr
    logs its validation after ``End of training`` at a step past ``total_iter`` (its loop counter runs on through
    the epochs left): it is counted as ``total_iter``'s, once."""
    try:
        from tensorboard.backend.event_processing import event_accumulator
        from tensorboard.util import tensor_util
    except ImportError:
        return None
    acc = event_accumulator.EventAccumulator(folder, size_guidance={event_accumulator.SCALARS: 0,
                                                                    event_accumulator.TENSORS: 0})
    acc.Reload()
    tags = acc.Tags()
    events = [(tag, e.step, e.value) for tag in tags.get('scalars', []) for e in acc.Scalars(tag)]
    for tag in tags.get('tensors', []):
        for e in acc.Tensors(tag):
            array = tensor_util.make_ndarray(e.tensor_proto)
            if array.size == 1:
                events.append((tag, e.step, float(array.reshape(()))))
    curves = TrainingCurves(folder)
    for tag, step, value in events:
        value = _number(value)
        if value is None:
            continue
        if tag.startswith('losses/'):
            curves.losses.setdefault(tag[len('losses/'):], {})[step] = value
        elif tag.startswith('metrics/') and tag.count('/') >= 2:
            dataset, metric = tag[len('metrics/'):].rsplit('/', 1)
            values = curves.metrics.setdefault(dataset, {}).setdefault(metric, {})
            if total_iter and step > total_iter:
                values.setdefault(total_iter, value)
            else:
                values[step] = value
    return curves


def draw_curves(curves, path, title=''):
    """Write ``path`` (PNG): the losses against the iterations (log scale when all are positive) on the left, and
    on the right one plot per validation metric with a line per dataset. Needs matplotlib (Agg canvas, no
    pyplot state is touched)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    metric_names = sorted({m for per in curves.metrics.values() for m in per})
    fig = Figure(figsize=(12, 4.5), dpi=100, layout='constrained')
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(max(1, len(metric_names)), 2)
    ax = fig.add_subplot(grid[:, 0])
    losses = {k: v for k, v in curves.losses.items() if k.startswith('l_')} or curves.losses
    for name, values in sorted(losses.items()):
        its = sorted(values)
        ax.plot(its, [values[i] for i in its], label=name, marker='.' if len(its) <= 50 else None, linewidth=1)
    positive = all(v > 0 for values in losses.values() for v in values.values())
    if losses and positive:
        ax.set_yscale('log')
    ax.set_title('training losses' + ('' if positive else ' (linear scale: some are not positive)'))
    ax.set_xlabel('iteration')
    if losses:
        ax.legend(fontsize='small')
    else:
        ax.text(0.5, 0.5, 'no training iteration logged', ha='center', va='center', transform=ax.transAxes)
    ax.grid(True, which='both', alpha=0.3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    first = None
    for row, metric in enumerate(metric_names or ['']):
        axm = fig.add_subplot(grid[row, 1], sharex=first)
        first = first or axm
        for index, (dataset, per) in enumerate(sorted(curves.metrics.items())):
            values = per.get(metric)
            if values:  # one colour per dataset in every plot
                its = sorted(values)
                axm.plot(its, [values[i] for i in its], marker='o', markersize=4, linewidth=1, label=dataset,
                         color=f'C{index % 10}')
        if not metric_names:
            axm.text(0.5, 0.5, 'no validation logged', ha='center', va='center', transform=axm.transAxes)
        else:
            axm.set_ylabel(metric)
            axm.legend(fontsize='small')
        axm.grid(True, alpha=0.3)
        axm.xaxis.set_major_locator(MaxNLocator(integer=True))
        if row == 0:
            axm.set_title('validation')
        if row < len(metric_names) - 1:
            axm.tick_params(labelbottom=False)
    axm.set_xlabel('iteration')  # the bottom one
    if title:
        fig.suptitle(title)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_path(path, keep_extension=True) as tmp:
        fig.savefig(tmp, format='png')
    return path


def find_training_log(name, root=''):
    """The latest ``experiments/<name>/train_<name>_<time>.log`` (basicsr's time stamps sort by name), or None."""
    folder = os.path.join(root, 'experiments', name)
    logs = glob.glob(os.path.join(glob.escape(folder), f'train_{glob.escape(name)}_*.log'))
    return max(logs, key=os.path.basename) if logs else None


def training_curves(opt, out_dir, root=''):
    """Draw ``<out_dir>/curves.png`` for the run of ``opt`` (paths under ``root``, default the current directory)
    from its latest training log, or from its tensorboard events when there is no log or it holds nothing;
    returns the line to print: the PNG's path, or why there is none."""
    name = opt['name']
    total_iter = _option_int(str((opt.get('train') or {}).get('total_iter')))
    val_freq = _option_int(str((opt.get('val') or {}).get('val_freq')))
    log = find_training_log(name, root)
    curves, looked = None, []
    if log:
        with open(log, encoding='utf-8', errors='replace') as f:
            parsed = parse_training_log(f, val_freq, total_iter, source=log)
        if parsed.iterations or parsed.validations:
            curves = parsed
        else:
            looked.append(f"{log} has no training iteration yet (no '[epoch: ..., iter: ...]' line)")
    else:
        looked.append(f"no training log {os.path.join(root, 'experiments', name, f'train_{name}_*.log')}")
    tb = os.path.join(root, 'tb_logger', name)
    if curves is None:
        if not glob.glob(os.path.join(glob.escape(tb), 'events.out.tfevents.*')):
            looked.append(f'no tensorboard events in {tb}')
        else:
            events = read_tensorboard(tb, total_iter)
            if events is None:
                looked.append(f'the tensorboard events in {tb} need the tensorboard package (pip install tensorboard)')
            elif events.iterations or events.validations:
                curves = events
            else:
                looked.append(f'no loss or metric in the tensorboard events of {tb}')
    if curves is None:
        return 'training curves: not drawn: ' + '; '.join(looked) + '.'
    if importlib.util.find_spec('matplotlib') is None:
        return 'training curves: not drawn: they need matplotlib (pip install matplotlib).'
    path = draw_curves(curves, os.path.join(out_dir, 'curves.png'),
                       f'{name}: training curves ({os.path.basename(curves.source)})')
    its, vals = curves.iterations, curves.validations
    span = (f"{len(its)} logged iteration{'s' * (len(its) != 1)} up to {its[-1]}" if its else
            'no logged iteration')
    return f"training curves: {path} ({span}, {len(vals)} validation{'s' * (len(vals) != 1)}; from {curves.source})"
