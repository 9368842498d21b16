"""``export``'s diagnosis of a failed export: the operation an exporter's error names, the first informative line
of its pages of error, the formats the network does export to, and the one clear :class:`ExportError` that says
so."""
import os
import re
import tempfile

from basicsr_restore.commands.export.exporters import FORMATS, ONNX_EXPORTERS, ExportError, size_text, ways, write

_OP_PATTERNS = (
    r"No ONNX function found for <OpOverload\(op='([\w.]+)'",
    r"[Ee]xporting the operator '([\w:.]+)'",
    r'ONNX export of (?:operator )?([\w:.]+)',
    r'call_function\[target=torch\.ops\.([\w.]+?)(?:\.default)?\]',
    r'(?:torch\.ops\.|\b)(aten(?:::|\.)\w+)',
)


def failed_op(exc):
    """The operation an exporter's error names (``aten.linalg_inv_ex``, ``aten::fft_rfft2``), or None."""
    text = f'{exc}\n{exc.__cause__ or ""}'
    for pattern in _OP_PATTERNS:
        match = re.search(pattern, text)
        if match:
            return match.group(1)
    return None


def error_summary(exc):
    """The first informative line of an exporter's error (they run to pages)."""
    text = re.sub(r'\x1b\[[0-9;]*m', '', str(exc))
    for marker in ('## Exception summary', 'Exception summary'):
        if marker in text:
            text = text.split(marker, 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith(('-', '#'))]
    line = (lines[0] if lines else type(exc).__name__).split(' [Caused by')[0].strip()
    return line if len(line) <= 300 else line[:297] + '...'


def formats_that_export(module, x, dynamic, but):
    """The formats other than ``but`` that ``module`` exports to (each tried into a temporary folder)."""
    working = []
    with tempfile.TemporaryDirectory() as folder:
        for fmt, ext in FORMATS.items():
            if fmt == but:
                continue
            for way in ways(fmt):
                try:
                    write(module, fmt, os.path.join(folder, 'try' + ext), x, dynamic, way)
                except Exception:  # noqa: BLE001 -- any failure means "not this way"
                    continue
                working.append(fmt)
                break
    return working


def frozen_trace_error(exc, caught, name, size):
    """A dynamic TorchScript file that fails verification: the trace kept a size; say so and what works."""
    frozen = next((str(w.message).splitlines()[0] for w in caught if 'Tracer' in type(w.message).__name__), None)
    why = f' (the tracer warned: {frozen})' if frozen else ''
    return ExportError(f'{exc} The TorchScript trace of {name} holds sizes frozen at {size_text(size)}{why}: export '
                       'TorchScript at a fixed --size, or use --format exported-program or onnx for dynamic sizes.')


def cannot_export_error(name, fmt, exc, module, x, dynamic, onnx_exporter='auto'):
    op = failed_op(exc)
    what = f"the operation {op} has no {fmt} export" if op else f'{fmt} export fails ({error_summary(exc)})'
    detail = f' ({error_summary(exc)})' if op else ''
    where = f" at {'dynamic sizes' if dynamic else size_text(x.shape[-2:])}"
    if fmt == 'onnx' and onnx_exporter != 'auto':  # the other ONNX exporter may manage
        other = next(way for way in ONNX_EXPORTERS[1:] if way != onnx_exporter)
        with tempfile.TemporaryDirectory() as folder:
            try:
                write(module, fmt, os.path.join(folder, 'try.onnx'), x, dynamic, other)
                return ExportError(f'{name} cannot be exported to {fmt}{where} by the {onnx_exporter} exporter: '
                                   f'{what}{detail}; the {other} one can: use --onnx-exporter {other} (or auto).')
            except Exception:  # noqa: BLE001 -- then say which other formats work
                pass
    others = formats_that_export(module, x, dynamic, fmt)
    advice = (f"it exports to {', '.join(others)}: use --format {others[0]}" if others else
              'it exports to no other format either')
    return ExportError(f'{name} cannot be exported to {fmt}{where}: {what}{detail}; {advice}.')
