"""``bench``'s tables and results files: the Markdown table of records, the ratios of two result sets, the
warnings for runs of different machines, and the JSON file (``--json``, ``--load``, ``--vs FILE``)."""
import json
import os

from basicsr_restore.commands.bench.data import fmt as _fmt
from basicsr_restore.core.imageio import atomic_path

FORMAT = 'basicsr-restore-bench/1'


def _ratio(a, b):
    return f'{a / b:.2f}x' if a and b else 'n/a'


def format_table(records):
    """A Markdown table of records."""
    lines = ['| network | config | mode | device | params (M) | GMACs @ size | forward ms: median (min-max) '
             '| peak MB fwd / train | train it/s (batch x patch) | NaN-guard cost | PSNR vs fp32 |',
             '|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|']
    for r in records:
        config = ', '.join(f'{k}={v}' for k, v in r['config'].items()) or 'defaults'
        if r.get('error') and r.get('latency_ms') is None:
            lines.append(f"| {r['network']} | {config} | {r['mode']} | {r['device']} | "
                         f"{_fmt(r['params'] and r['params'] / 1e6, '.3f')} | "
                         f"{_fmt(r['gmacs'], '.1f')} | error: {r['error'][:90]} | | | | |")
            continue
        size = 'x'.join(map(str, r['input_size']))
        lat = r['latency_ms']
        train = r.get('train')
        train_text = (f"{train['it_per_s']:.3g} ({train['batch']}x{'x'.join(map(str, train['patch']))})"
                      if train else ('error: ' + r['error'][:60] if r.get('error') else 'skipped'))
        memory = f"{_fmt(r['peak_memory_mb'], '.0f')} / {_fmt(train and train['peak_memory_mb'], '.0f')}"
        psnr = _fmt(r.get('psnr_vs_fp32_db'), '.1f', '-') + (' dB' if r.get('psnr_vs_fp32_db') else '')
        guard = _fmt(train and train.get('nan_guard_cost_pct'), '+.1f') + (' %' if train and
                                                                          'nan_guard_cost_pct' in train else '')
        lines.append(f"| {r['network']} | {config} | {r['mode']} | {r['device']} | {r['params'] / 1e6:.3f} | "
                     f"{r['gmacs']:.2f} @ {size} | {lat['median']:.1f} ({lat['min']:.1f}-{lat['max']:.1f}) | "
                     f"{memory} | {train_text} | {guard} | {psnr} |")
    return '\n'.join(lines)


def _key(record):
    return record['network'], json.dumps(record['config'], sort_keys=True)


def format_ratios(base, other, base_label, other_label):
    """Markdown table comparing two result sets network by network (matched by network and config)."""
    index = {_key(r): r for r in other}
    lines = [f'**{other_label} vs {base_label}**', '',
             f'| network | forward ms {base_label} | forward ms {other_label} | forward: x faster than {base_label} '
             f'| train it/s {base_label} | train it/s {other_label} | training: x faster than {base_label} '
             f'| peak MB: x of {base_label} |', '|---|---:|---:|---:|---:|---:|---:|---:|']
    in_base = {_key(r) for r in base}
    for r in base:
        o = index.get(_key(r))
        if o is None:
            lines.append(f"| {r['network']} | (not in {other_label}) | | | | | | |")
            continue
        la, lb = (x['latency_ms']['median'] if x.get('latency_ms') else None for x in (r, o))
        ta, tb = (x['train']['it_per_s'] if x.get('train') else None for x in (r, o))
        ma, mb = r.get('peak_memory_mb'), o.get('peak_memory_mb')
        lines.append(f"| {r['network']} | {_fmt(la, '.1f')} | {_fmt(lb, '.1f')} | {_ratio(la, lb)} | "
                     f"{_fmt(ta, '.3g')} | {_fmt(tb, '.3g')} | {_ratio(tb, ta)} | {_ratio(mb, ma)} |")
    for key, o in index.items():  # only in the other set
        if key not in in_base:
            lines.append(f"| {o['network']} | (not in {base_label}) | | | | | | |")
    return '\n'.join(lines)


def mismatches(base, other):
    """Warnings for comparisons of runs on different devices, thread counts or torch versions."""
    warnings = []
    for field in ('device_name', 'threads', 'torch'):
        a = sorted({str(r.get(field)) for r in base})
        b = sorted({str(r.get(field)) for r in other})
        if a != b:
            warnings.append(f"WARNING: the compared runs differ in {field}: {', '.join(a)} vs {', '.join(b)}; "
                            'the ratios mix machines, not only modes.')
    return warnings


def load_results(path):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"bench results '{path}' do not exist.")
    try:
        with open(path, encoding='utf-8') as f:
            data = json.load(f)
    except json.JSONDecodeError as exc:
        raise ValueError(f"'{path}' is not a bench JSON file ({exc}).") from None
    if not isinstance(data, dict) or data.get('format') != FORMAT:
        raise ValueError(f"'{path}' is not a bench results file (no \"format\": \"{FORMAT}\"); write one with "
                         '`basicsr-restore bench --json FILE`.')
    return data['records']


def save_results(path, records, overwrite, data=None):
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"--json '{path}' exists; pass --overwrite or choose another file.")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    content = {'format': FORMAT, 'records': records}
    if data is not None:
        content['data'] = data
    with atomic_path(path) as tmp, open(tmp, 'w', encoding='utf-8') as f:
        json.dump(content, f, indent=1)
