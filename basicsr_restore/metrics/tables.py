"""Per-image score tables: one CSV (for programs) and one Markdown table (for people), with a mean row.

Used by ``basicsr-restore infer --gt`` and by validation/test runs::

    from basicsr_restore.metrics.tables import write_tables
    write_tables([{'image': 'a', 'psnr': 30.1, 'ssim': 0.91}, ...], 'results/run', 'metrics')
    # -> results/run/metrics.csv, results/run/metrics.md
"""
import csv
import io
import math
import numbers
import os

from basicsr_restore.core.imageio import atomic_path


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def columns_of(rows):
    """Column names in first-seen order over all rows."""
    names = []
    for row in rows:
        names += [k for k in row if k not in names]
    return names


def mean_row(rows, columns=None):
    """The mean of every column whose values are all numbers; the first other column reads ``mean``.

    ``inf`` values (PSNR of identical images) make the mean ``inf``; ``nan`` values are skipped.
    """
    columns = columns or columns_of(rows)
    out, labelled = {}, False
    for name in columns:
        values = [row.get(name) for row in rows]
        if values and all(_is_number(v) for v in values):
            finite = [float(v) for v in values if not math.isnan(float(v))]
            out[name] = sum(finite) / len(finite) if finite else float('nan')
        elif not labelled:
            out[name], labelled = 'mean', True
        else:
            out[name] = ''
    return out


def _decimals(name, values):
    """4 decimals for columns within [-1, 1] (SSIM, LPIPS), 2 otherwise (PSNR, milliseconds)."""
    finite = [abs(float(v)) for v in values if _is_number(v) and math.isfinite(float(v))]
    return 4 if finite and max(finite) <= 1 else 2


def format_markdown(rows, title=None):
    """The rows and their mean as a Markdown table (a string)."""
    columns = columns_of(rows)
    table = list(rows) + [mean_row(rows, columns)]
    decimals = {c: _decimals(c, [r.get(c) for r in rows]) for c in columns}

    def cell(name, value):
        if _is_number(value) and not isinstance(value, numbers.Integral):
            return f'{float(value):.{decimals[name]}f}'
        return '' if value is None else str(value)

    lines = [f'**{title}**', ''] if title else []
    lines.append('| ' + ' | '.join(columns) + ' |')
    lines.append('|' + '|'.join('---' if i == 0 else '---:' for i in range(len(columns))) + '|')
    for i, row in enumerate(table):
        cells = [cell(c, row.get(c)) for c in columns]
        if i == len(table) - 1:
            cells = [f'**{c}**' if c else c for c in cells]
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def format_csv(rows):
    """The rows and their mean as CSV text (floats with 6 decimals)."""
    columns = columns_of(rows)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator='\n')
    writer.writerow(columns)
    for row in list(rows) + [mean_row(rows, columns)]:
        writer.writerow([f'{v:.6f}' if _is_number(v) and not isinstance(v, numbers.Integral) else
                         ('' if v is None else v) for v in (row.get(c) for c in columns)])
    return buf.getvalue()


def _write_atomic(path, text):
    with atomic_path(path) as tmp, open(tmp, 'w', encoding='utf-8', newline='') as f:
        f.write(text)


def write_tables(rows, folder, stem, title=None):
    """Write ``<folder>/<stem>.csv`` and ``<folder>/<stem>.md`` (every row, then the mean); return both paths.

    ``rows`` is a list of dicts (one per image; the same keys, numbers or text). Each file is written
    atomically, replacing an older table of the same name.
    """
    if not rows:
        raise ValueError(f'write_tables: no rows to write for {os.path.join(folder, stem)}')
    os.makedirs(folder, exist_ok=True)
    csv_path, md_path = os.path.join(folder, f'{stem}.csv'), os.path.join(folder, f'{stem}.md')
    _write_atomic(csv_path, format_csv(rows))
    _write_atomic(md_path, format_markdown(rows, title))
    return csv_path, md_path
