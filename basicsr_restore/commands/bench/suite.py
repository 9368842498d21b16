"""``bench --suite``: every network x {fp32, best}, inference and training, and the data pipeline of the recipes:
one Markdown report and one JSON file."""
import datetime
import glob
import os

import torch

from basicsr_restore.commands.bench.data import format_data, measure_data
from basicsr_restore.commands.bench.forward import MACS_METHOD, device_name, pick_device
from basicsr_restore.commands.bench.record import measure
from basicsr_restore.commands.bench.report import format_ratios, format_table, save_results
from basicsr_restore.commands.common import parse_size
from basicsr_restore.core.option_files import read_option_file
from basicsr_restore.core.registry import network_names

#: ``--suite`` settings per device type: inference size, training patch and batch, warm-up and timed runs
SUITE = {'cuda': {'size': '720x1280', 'patch': '256', 'train_batch': 8, 'warmup': 3, 'runs': 10},
         'cpu': {'size': '128', 'patch': '64', 'train_batch': 2, 'warmup': 1, 'runs': 3}}
#: configurations measured by ``--suite`` besides every network's defaults
SUITE_EXTRA = [('IRNeXt', {'num_res': 14, 'low_pass': 'local'})]


def suite_recipes(given):
    """``(runnable, skipped)``: ``(option file, training data root, network type)`` of the recipes for the data
    measurement: ``given``, or every shipped training and demo recipe; runnable where the training data exist."""
    files = given or sorted(glob.glob(os.path.join('options', 'train', '*', '*.yml')) +
                            glob.glob(os.path.join('options', 'demo', '*.yml')))
    runnable, skipped = [], []
    for path in files:
        opt = read_option_file(path)
        root = ((opt.get('datasets') or {}).get('train') or {}).get('dataroot_gt')
        network = (opt.get('network_g') or {}).get('type')
        (runnable if root and os.path.exists(root) else skipped).append((path, root, network))
    return runnable, skipped


def run_suite(args):
    """Every network x {fp32, best}, inference and training, and the data pipeline of the recipes: one
    Markdown report and one JSON file."""
    device = pick_device(args.device)
    settings = SUITE['cuda' if device.type == 'cuda' else 'cpu']
    args.size, args.patch = parse_size(settings['size']), parse_size(settings['patch'])
    args.train_batch, args.warmup, args.runs, args.no_train = (settings['train_batch'], settings['warmup'],
                                                              settings['runs'], False)
    todo = [(name, {}) for name in network_names()] + SUITE_EXTRA
    base, best = measure(args, 'fp32', device, todo), measure(args, 'best', device, todo)
    runnable, skipped = suite_recipes(args.data_opt)
    data = []
    for path, _, network in runnable:
        try:
            record = measure_data(path, args.workers, args.batches, device)
        except Exception as exc:
            record = {'options': path, 'error': f'{type(exc).__name__}: {str(exc).strip()[:200]}'}
        data.append(dict(record, network=network))
    lines = [f"# basicsr-restore bench --suite ({datetime.datetime.now().isoformat(timespec='seconds')})", '',
             f'Device: {device_name(device)}; torch {torch.__version__}; inference {settings["size"]} batch 1, '
             f'training batch {settings["train_batch"]} at {settings["patch"]}x{settings["patch"]} (the training '
             "step of the shipped recipe's model: its losses, gradient clipping, optimizer, NaN guard and EMA).", '',
             f'MACs: {MACS_METHOD}.', '',
             '## fp32 eager', '', format_table(base), '',
             '## best mode (fastest candidate that keeps the accuracy bar)', '', format_table(best), '',
             format_ratios(base, best, 'fp32', 'best'), '']
    lines += ['## data pipeline', '', f'{args.workers} worker(s), {args.batches} batches after a warm-up of 2.', '']
    if data:
        lines += [format_data(data), '']
        rates = {r['network']: r['train']['it_per_s'] * r['train']['batch'] for r in best
                 if r.get('train') and not r['config']}
        for r in data:
            network = r['network']
            if not r.get('error') and network in rates:
                lines.append(f"- {r['options']}: the loader delivers {r['samples_per_s'] / rates[network]:.1f}x the "
                             f"samples/s that {network} trains on in its best mode ({rates[network]:.1f} samples/s).")
        lines.append('')
    for path, root, _ in skipped:
        lines.append(f'- skipped {path}: its training data {root} are not prepared here.')
    report = '\n'.join(lines) + '\n'
    json_path = args.json or 'bench-suite.json'
    if os.path.exists(json_path) and not args.overwrite:
        raise FileExistsError(f"'{json_path}' exists; pass --overwrite or choose another --json file.")
    save_results(json_path, base + best, True, data=data)
    md_path = os.path.splitext(json_path)[0] + '.md'
    with open(md_path, 'w', encoding='utf-8') as f:
        f.write(report)
    print(report)
    print(f'results: {json_path}, {md_path}')
    failed = [r for r in base + best + data if r.get('error')]
    return 1 if failed else 0
