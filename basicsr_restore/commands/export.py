"""``basicsr-restore export``: a trained network -> ONNX, a torch.export program (``.pt2``) or TorchScript, each
verified against PyTorch on a real photo before it is kept.

The file takes one (1, C, H, W) float32 RGB image in [0, 1] (C = 3, or the network's ``in_channels`` of stacked
RGB views) and returns the restored image, the network's final output only (a network with multi-scale outputs
is wrapped so that only the last, full-size one is returned).

* **Size**: ``--size HxW`` (default 256x256) is rounded up to the network's size rule (its card: multiples of N,
  at least M), and said so. ``--dynamic`` makes H and W free, as multiples of N (torch.export dimensions
  ``N * k``; dynamic ONNX axes): inputs of other sizes must be padded first (``basicsr-restore infer`` and
  ``basicsr_restore.core.inference.restore_any_size`` pad and crop back); ``--size`` is then the size traced.
* **Formats**: ``onnx`` (runs in onnxruntime; made by the legacy TorchScript-based exporter, opset 17, or, for
  what it cannot export, e.g. IRNeXt and torch.fft, by the torch.export-based one; ``--onnx-exporter``),
  ``exported-program`` (``torch.export.save``; ``torch.export.load(f).module()``), ``torchscript``
  (``torch.jit.trace``; ``torch.jit.load``).
* **Verification, always**: the written file is loaded back and run (onnxruntime, ``torch.export.load``,
  ``torch.jit.load``) on a real photo (scikit-image's astronaut, or ``--verify IMAGE``) resized and cropped
  to the size, and compared with the PyTorch network: the PSNR between the two outputs is printed, and a file
  under 50 dB is refused (nothing is written). A dynamic export is checked at the traced size and at a second
  one. The file is written to a temporary name and renamed into place only once verified.
* An operation that a format cannot express is one error naming the operation and the formats this network
  does export to.
"""
import argparse
import contextlib
import io
import math
import os
import re
import warnings

#: format -> default file extension
FORMATS = {'onnx': '.onnx', 'exported-program': '.pt2', 'torchscript': '.pt'}
#: the least PSNR (dB) between the exported file's output and PyTorch's for the file to be kept
MIN_PSNR = 50.0
#: the size traced and verified when none is given
DEFAULT_SIZE = (256, 256)
INPUT_NAME, OUTPUT_NAME = 'image', 'restored'


class ExportError(ValueError):
    """A network that cannot be exported as asked; the message names the operation or check and what works."""


# ------------------------------------------------------------------------------------------------ sizes
def parse_size(text):
    """``'256'`` or ``'256x320'`` (height x width) -> ``(256, 256)`` / ``(256, 320)``."""
    match = re.fullmatch(r'\s*(\d+)\s*(?:[xX*,]\s*(\d+))?\s*', str(text))
    if not match or int(match.group(1)) < 1 or (match.group(2) and int(match.group(2)) < 1):
        raise argparse.ArgumentTypeError(f'{text!r} is not a size: give HxW (e.g. 256x320) or N for NxN, in pixels.')
    h = int(match.group(1))
    return h, int(match.group(2) or h)


def fitted_size(net, size):
    """``size`` rounded up to the size rule of ``net`` (:meth:`SizeRule.fit` of each side)."""
    from basicsr_restore.archs.card import size_rule
    rule = size_rule(net)
    return rule.fit(size[0]), rule.fit(size[1])


def second_size(net, size):
    """Another size the rule accepts, taller and wider (what a dynamic export is also checked at)."""
    from basicsr_restore.archs.card import size_rule
    rule = size_rule(net)
    step = max(rule.multiple, 8)
    return rule.fit(size[0] + step), rule.fit(size[1] + 2 * step)


def rule_text(net):
    """``'multiples of 32, at least 64x64'`` (or ``'any size'``)."""
    from basicsr_restore.archs.card import size_rule
    rule = size_rule(net)
    parts = [f'multiples of {rule.multiple}'] if rule.multiple > 1 else []
    parts += [f'at least {rule.min_size}x{rule.min_size}'] if rule.min_size > 1 else []
    return ', '.join(parts) or 'any size'


def _text(size):
    return f'{size[0]}x{size[1]}'


# ------------------------------------------------------------------------------------------ the module
def require_onnx():
    """A clear error when the ONNX packages (the ``export`` extra) are missing."""
    import importlib
    missing = []
    for package in ('onnx', 'onnxruntime', 'onnxscript'):
        try:
            importlib.import_module(package)
        except ImportError:
            missing.append(package)
    if missing:
        raise ValueError(f"--format onnx needs {', '.join(missing)}, not installed here: pip install "
                         "'basicsr-restore[export]' (or exported-program / torchscript, which need only torch).")


def final_module(net):
    """``net`` wrapped to return its final (restored) output only, in eval mode."""
    import torch

    from basicsr_restore.core.inference import final_output

    class FinalOutput(torch.nn.Module):
        """The network, returning only its last output (the restored image)."""
        is_final_output = True

        def __init__(self, inner):
            super().__init__()
            self.net = inner

        def forward(self, x):
            return final_output(self.net(x))

    return FinalOutput(net).eval()  # eval() of the wrapper: exporters restore the wrapper's mode on every child


def input_channels(net, kwargs=None):
    """The channels the network takes: its ``in_channels`` (or the constructor's ``in_channels``/``in_chn``), else 3."""
    own = getattr(net, 'in_channels', None)
    if isinstance(own, int) and not isinstance(own, bool):
        return own
    for key in ('in_channels', 'in_chn'):
        if isinstance((kwargs or {}).get(key), int):
            return kwargs[key]
    return 3


# ------------------------------------------------------------------------------------------- the photo
def photo(size, image=None, channels=3):
    """(1, channels, H, W) float32 in [0, 1]: ``image`` (a file) or scikit-image's astronaut, resized to cover
    ``size`` (antialiased bilinear) and cropped at the centre; RGB views repeated for 6, 9, ... channels."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    if image is None:
        from skimage import data
        rgb = data.astronaut()[:, :, :3].astype(np.float32) / 255
        x = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None]
    else:
        from basicsr_restore.core.imageio import read_picture
        from basicsr_restore.core.inference import to_tensor
        if not os.path.isfile(image):
            raise FileNotFoundError(f"--verify image '{image}' does not exist; give an image file (PNG, TIFF, JPEG).")
        x = to_tensor(read_picture(image))
    h, w = size
    scale = max(h / x.shape[-2], w / x.shape[-1])
    if scale != 1:
        covered = (max(h, math.ceil(x.shape[-2] * scale)), max(w, math.ceil(x.shape[-1] * scale)))
        x = F.interpolate(x, size=covered, mode='bilinear', align_corners=False, antialias=scale < 1).clamp(0, 1)
    top, left = (x.shape[-2] - h) // 2, (x.shape[-1] - w) // 2
    x = x[..., top:top + h, left:left + w]
    if channels == 1:
        x = x.mean(dim=1, keepdim=True)
    elif channels % 3 == 0:
        x = x.repeat(1, channels // 3, 1, 1)
    else:
        raise ValueError(f'cannot make a {channels}-channel verification input from an RGB photo '
                         '(networks of 1, 3 or a multiple of 3 channels are supported).')
    return x.contiguous()


def psnr(a, b):
    """PSNR in dB (peak 1) between two float images; inf when equal."""
    mse = float(((a.double() - b.double()) ** 2).mean())
    if mse != mse:  # NaN in an output
        return float('nan')
    return float('inf') if mse == 0 else 10 * math.log10(1 / mse)


def _db(value):
    return 'inf dB (identical)' if value == float('inf') else f'{value:.1f} dB'


# ------------------------------------------------------------------------------------------- exporting
def _dynamic_shapes(net):
    """torch.export dimensions of H and W: ``multiple * k`` with k >= ceil(min_size / multiple)."""
    from torch.export import Dim

    from basicsr_restore.archs.card import size_rule
    rule = size_rule(net)
    dims = {}
    for axis, name in ((2, 'height'), (3, 'width')):
        if rule.multiple > 1:
            blocks = Dim(f'{name}_blocks', min=max(1, -(-rule.min_size // rule.multiple)))
            dims[axis] = blocks * rule.multiple
        else:
            dims[axis] = Dim(name, min=max(2, rule.min_size))
    return (dims,)


@contextlib.contextmanager
def _quiet():
    """The exporters' progress lines and warnings kept off the user's screen (recorded for error messages)."""
    out = io.StringIO()
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(out):
        warnings.simplefilter('always')
        yield caught


@contextlib.contextmanager
def _no_console():
    """File descriptors 1 and 2 sent to a temporary file; yields a function returning what was written there.

    When they fail, the legacy ONNX exporter prints its whole graph there (from C++), and ``torch.export.load``
    logs a long traceback: thousands of lines around the one error that says it all."""
    import sys
    import tempfile
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)

        def written():
            sys.stdout.flush()
            sys.stderr.flush()
            sink.seek(0)
            return sink.read().decode('utf-8', 'replace')
        try:
            yield written
        finally:
            for fd, copy in zip((1, 2), saved):
                os.dup2(copy, fd)
                os.close(copy)


def _last_error(text):
    """The last ``SomethingError: message`` line of a logged traceback (without the logger's prefix), or None."""
    found = re.findall(r'(?:^|\] |\s)((?:[\w.]+\.)?(\w*(?:Error|Exception|SymNode)): (.+))$', text, re.M)
    return f"{found[-1][1]}: {found[-1][2].split('  (Size-like')[0].strip()}" if found else None


def _torch_export(module, x, dynamic):
    import torch
    with torch.no_grad():
        return torch.export.export(module, (x,), dynamic_shapes=_dynamic_shapes(module.net) if dynamic else None)


#: how ONNX files are made: ``auto`` tries the legacy exporter first and the torch.export-based one when the
#: legacy one cannot export the network or its file fails verification
ONNX_EXPORTERS = ('auto', 'legacy', 'dynamo')


def _ways(fmt, onnx_exporter='auto'):
    """The exporters to try for ``fmt``, in order."""
    if fmt != 'onnx':
        return [None]
    if onnx_exporter not in ONNX_EXPORTERS:
        raise ValueError(f'--onnx-exporter {onnx_exporter!r}: choose one of {", ".join(ONNX_EXPORTERS)}.')
    # ``auto``: the legacy TorchScript-based exporter (torch.onnx.export(dynamo=False)) first. On the networks
    # it can export it is 3-5x faster and writes opset 17, which more runtimes read than the opset 18+ of the
    # torch.export-based one; its dynamic axes follow the sizes traced as tensors. It cannot export IRNeXt (its
    # per-sample dynamic filters are convolutions whose kernel shape comes from a traced reshape: "convolution
    # for kernel of unknown shape") nor torch.fft ops, freezes sizes a network turns into Python numbers, and is
    # deprecated since torch 2.9: whenever it fails or its file fails verification, the torch.export-based
    # exporter (dynamo=True) is used, which handles all five networks, FFTs and symbolic H and W.
    return ['legacy', 'dynamo'] if onnx_exporter == 'auto' else [onnx_exporter]


def _write(module, fmt, path, x, dynamic, way=None):
    """Write ``module`` traced on ``x`` to ``path`` in ``fmt`` (ONNX: with the exporter ``way``); returns a
    phrase saying how, and the warnings the exporter gave."""
    import torch
    with _quiet() as caught:
        if fmt == 'torchscript':
            # tracing records the convolutions and the size arithmetic done on traced sizes; a size that the
            # network turns into a Python number stays the traced one, which the dynamic check then catches
            with torch.no_grad():
                traced = torch.jit.trace(module, (x,), check_trace=False)
            torch.jit.save(traced, path)
            how = f'torch.jit.trace (torch {torch.__version__})'
        elif fmt == 'onnx' and way == 'legacy':
            axes = {INPUT_NAME: {2: 'height', 3: 'width'}, OUTPUT_NAME: {2: 'height', 3: 'width'}}
            with torch.no_grad(), _no_console():
                torch.onnx.export(module, (x,), path, dynamo=False, opset_version=17, input_names=[INPUT_NAME],
                                  output_names=[OUTPUT_NAME], dynamic_axes=axes if dynamic else None,
                                  do_constant_folding=True)
            how = f'torch.onnx (legacy TorchScript-based exporter, opset 17, torch {torch.__version__})'
        else:
            program = _torch_export(module, x, dynamic)
            if fmt == 'exported-program':
                torch.export.save(program, path)
                how = f'torch.export (torch {torch.__version__})'
            else:
                onnx_program = torch.onnx.export(program, (x,), dynamo=True, input_names=[INPUT_NAME],
                                                 output_names=[OUTPUT_NAME], optimize=True, verbose=False)
                onnx_program.save(path, external_data=False)  # one self-contained file (our networks are < 2 GB)
                how = f'torch.onnx (torch.export-based exporter, opset {_opset(path)}, torch {torch.__version__})'
    return how, caught


def _opset(path):
    import onnx
    model = onnx.load(path, load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ('', 'ai.onnx')), '?')


# ------------------------------------------------------------------------------------------ diagnosing
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


def _summary(exc):
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
    import tempfile
    working = []
    with tempfile.TemporaryDirectory() as folder:
        for fmt, ext in FORMATS.items():
            if fmt == but:
                continue
            for way in _ways(fmt):
                try:
                    _write(module, fmt, os.path.join(folder, 'try' + ext), x, dynamic, way)
                except Exception:  # noqa: BLE001 -- any failure means "not this way"
                    continue
                working.append(fmt)
                break
    return working


def _frozen(exc, caught, name, size):
    """A dynamic TorchScript file that fails verification: the trace kept a size; say so and what works."""
    frozen = next((str(w.message).splitlines()[0] for w in caught if 'Tracer' in type(w.message).__name__), None)
    why = f' (the tracer warned: {frozen})' if frozen else ''
    return ExportError(f'{exc} The TorchScript trace of {name} holds sizes frozen at {_text(size)}{why}: export '
                       'TorchScript at a fixed --size, or use --format exported-program or onnx for dynamic sizes.')


def _cannot_export(name, fmt, exc, module, x, dynamic, onnx_exporter='auto'):
    op = failed_op(exc)
    what = f"the operation {op} has no {fmt} export" if op else f'{fmt} export fails ({_summary(exc)})'
    detail = f' ({_summary(exc)})' if op else ''
    where = f" at {'dynamic sizes' if dynamic else _text(x.shape[-2:])}"
    if fmt == 'onnx' and onnx_exporter != 'auto':  # the other ONNX exporter may manage
        other = next(way for way in ONNX_EXPORTERS[1:] if way != onnx_exporter)
        import tempfile
        with tempfile.TemporaryDirectory() as folder:
            try:
                _write(module, fmt, os.path.join(folder, 'try.onnx'), x, dynamic, other)
                return ExportError(f'{name} cannot be exported to {fmt}{where} by the {onnx_exporter} exporter: '
                                   f'{what}{detail}; the {other} one can: use --onnx-exporter {other} (or auto).')
            except Exception:  # noqa: BLE001 -- then say which other formats work
                pass
    others = formats_that_export(module, x, dynamic, fmt)
    advice = (f"it exports to {', '.join(others)}: use --format {others[0]}" if others else
              'it exports to no other format either')
    return ExportError(f'{name} cannot be exported to {fmt}{where}: {what}{detail}; {advice}.')


# ---------------------------------------------------------------------------------------- verification
def load_exported(path, fmt):
    """A callable running the exported file ``path``: tensor (1, C, H, W) -> tensor."""
    import torch
    if fmt == 'onnx':
        import onnxruntime
        session = onnxruntime.InferenceSession(path, providers=['CPUExecutionProvider'])
        name = session.get_inputs()[0].name
        return lambda x: torch.from_numpy(session.run(None, {name: x.numpy()})[0])
    if fmt == 'exported-program':
        program = torch.export.load(path).module()
    elif fmt == 'torchscript':
        program = torch.jit.load(path, map_location='cpu').eval()
    else:
        raise ValueError(f'--format {fmt!r}: choose one of {", ".join(FORMATS)}.')

    def run(x):
        with torch.no_grad():
            return program(x)
    return run


def _loader(fmt):
    return {'onnx': 'onnxruntime', 'exported-program': 'torch.export.load', 'torchscript': 'torch.jit.load'}[fmt]


def verify(path, fmt, net, sizes, image=None, channels=3, minimum=MIN_PSNR):
    """Run the exported ``path`` and the PyTorch ``net`` (its final output) on the photo at each of ``sizes``;
    returns ``[(size, psnr_db), ...]``. An output under ``minimum`` dB (or of the wrong shape, or one the file
    refuses to compute) raises :class:`ExportError`."""
    import torch
    module = net if getattr(net, 'is_final_output', False) else final_module(net)
    name = type(module.net).__name__
    failure = None
    with _quiet(), _no_console() as console:
        try:
            run = load_exported(path, fmt)
        except Exception as exc:  # noqa: BLE001 -- e.g. a runtime without an operation the file uses
            failure = _last_error(console()) or _summary(exc)
    if failure:
        failure = failure if len(failure) <= 300 else failure[:297] + '...'
        raise ExportError(f'the {fmt} file of {name} cannot be loaded back ({_loader(fmt)}: {failure}).')
    results = []
    for size in sizes:
        x = photo(size, image, channels)
        with torch.no_grad():
            reference = module(x)
        try:
            with _quiet():
                out = run(x)
        except Exception as exc:  # noqa: BLE001 -- the runtime's own error, summarised
            raise ExportError(f'the {fmt} file of {name} does not run at {_text(size)}: {_summary(exc)}.') from None
        if not torch.is_tensor(out):
            raise ExportError(f'the {fmt} file of {name} returns {type(out).__name__}, not one image tensor.')
        if tuple(out.shape) != tuple(reference.shape):
            raise ExportError(f'the {fmt} file of {name} gives an output of shape {tuple(out.shape)} at '
                              f'{_text(size)}, PyTorch {tuple(reference.shape)}.')
        value = psnr(out, reference)
        results.append((size, value))
        if not value >= minimum:
            raise ExportError(f'the {fmt} file of {name} gives {_db(value)} against PyTorch at {_text(size)} (at least '
                              f'{minimum:g} dB needed), so it was not kept.')
    return results


# ------------------------------------------------------------------------------------------------ core
def export_network(net, fmt, path, size=None, dynamic=False, image=None, channels=None, onnx_exporter='auto',
                   log=print):
    """Export ``net`` (its final output) to ``path`` in ``fmt`` and verify it; returns a report dict.

    ``size`` (H, W), default 256x256, is rounded up to the network's size rule: the fixed input size, or with
    ``dynamic`` the size traced (H and W are then any multiples of the rule). The file is written under a
    temporary name and renamed to ``path`` only when :func:`verify` passes (at least 50 dB against PyTorch at
    every size checked: the traced one, and a second one when dynamic); otherwise nothing is left behind.
    ``onnx_exporter``: ``auto`` (legacy, then torch.export-based), ``legacy`` or ``dynamo``. ``log`` gets the
    notes for the user (a size rounded up).
    """
    from basicsr_restore.core.imageio import atomic_path
    if fmt not in FORMATS:
        raise ValueError(f'--format {fmt!r}: choose one of {", ".join(FORMATS)}.')
    if fmt == 'onnx':
        require_onnx()
    module = final_module(net)
    name = type(net).__name__
    asked = tuple(size or DEFAULT_SIZE)
    size = fitted_size(net, asked)
    if size != asked:
        log(f'size: {_text(asked)} rounded up to {_text(size)} ({name} takes {rule_text(net)})')
    channels = channels or input_channels(net)
    x = photo(size, image, channels)
    sizes = [size, second_size(net, size)] if dynamic else [size]
    failures = []  # (exception, written): what each exporter tried gave
    with atomic_path(path, keep_extension=True) as tmp:
        for way in _ways(fmt, onnx_exporter):
            try:
                how, caught = _write(module, fmt, tmp, x, dynamic, way)
            except Exception as exc:  # noqa: BLE001 -- every exporter failure becomes one clear message
                failures.append((exc, False))
                continue
            try:
                results = verify(tmp, fmt, module, sizes, image, channels)
                break
            except ExportError as exc:
                if dynamic and fmt == 'torchscript':
                    exc = _frozen(exc, caught, name, size)
                elif dynamic:
                    others = ' or '.join(f for f in FORMATS if f != fmt)
                    exc = ExportError(f'{exc} {name} with dynamic sizes does not survive {fmt}: export it at a fixed '
                                      f'--size, or try --format {others} for dynamic sizes.')
                failures.append((exc, True))
        else:
            verified = [exc for exc, written in failures if written]
            if verified:  # a file was made but does not compute what the network does: say so
                raise verified[-1]
            raise _cannot_export(name, fmt, failures[-1][0], module, x, dynamic, onnx_exporter)
    if failures:  # the first exporter could not; say why and which one did
        log(f'{fmt}: the legacy exporter could not export {name} ({_summary(failures[0][0])}); the torch.export-based '
            'one did')
    shape = ('1', str(channels), 'H', 'W') if dynamic else ('1', str(channels)) + tuple(map(str, size))
    report = {'network': name, 'format': fmt, 'path': path, 'size': size, 'dynamic': dynamic, 'how': how,
              'input': f"{INPUT_NAME} ({', '.join(shape)}) float32 RGB in [0, 1]", 'psnr': results,
              'bytes': os.path.getsize(path)}
    if dynamic:
        report['rule'] = (f'H and W must be {rule_text(net)}: pad other sizes first (e.g. reflect at the bottom and '
                          'right) and crop the output back')
    return report


def describe(report, image=None):
    """The lines ``export`` prints for a report of :func:`export_network`."""
    photo_name = f"'{image}'" if image else "scikit-image's astronaut"
    checks = '; '.join(f'{_db(v)} at {_text(s)}' for s, v in report['psnr'])
    mib = report['bytes'] / 2 ** 20
    lines = [f"exported: {report['path']} ({report['format']}, {mib:.1f} MiB) with {report['how']}",
             f"input: {report['input']}; output: {OUTPUT_NAME}, the restored image (the network's final output)"]
    if report['dynamic']:
        lines.append(f"sizes: dynamic (traced at {_text(report['size'])}); {report['rule']}")
    else:
        lines.append(f"size: fixed {_text(report['size'])}")
    lines.append(f'verified against PyTorch on {photo_name}: {checks} (at least {MIN_PSNR:g} dB needed)')
    return lines


# ------------------------------------------------------------------------------------------------- CLI
def _load(args):
    """``(torch module in eval mode, name, constructor arguments, one line on what was loaded)`` from the
    command line, through :func:`basicsr_restore.api.load` (``--arch`` optional: the file names its network)."""
    from basicsr_restore import api
    from basicsr_restore.commands.args import parse_arch_args
    loaded = api.load(args.weights, arch=args.arch, preset=args.preset, param_key=args.param_key,
                      trusted=args.trusted, device='cpu', **parse_arch_args(args.arch_args))
    return loaded.net.eval(), loaded.name, loaded.kwargs, loaded.source


def default_output(weights, fmt, size, dynamic):
    """``<weights without extension>_<H>x<W>.<ext>`` (``_dynamic`` for dynamic sizes), beside the weights."""
    tag = 'dynamic' if dynamic else _text(size)
    return f'{os.path.splitext(weights)[0]}_{tag}{FORMATS[fmt]}'


def _check_output(out, args):
    if os.path.abspath(out) == os.path.abspath(args.weights):
        raise ValueError(f"-o '{out}' is the weights file itself; give a new file name.")
    if os.path.exists(out) and not args.overwrite:
        raise FileExistsError(f"output '{out}' exists; pass --overwrite to replace it.")


def run(args):
    if not os.path.exists(args.weights):
        raise FileNotFoundError(f"--weights '{args.weights}' does not exist; give the checkpoint file (.pth).")
    if args.verify and not os.path.isfile(args.verify):
        raise FileNotFoundError(f"--verify image '{args.verify}' does not exist; give an image file (PNG, TIFF, JPEG).")
    if args.format == 'onnx':
        require_onnx()
    if args.output:  # before loading anything: a refused output costs nothing
        _check_output(args.output, args)
    net, name, kwargs, source = _load(args)
    out = args.output or default_output(args.weights, args.format, fitted_size(net, args.size or DEFAULT_SIZE),
                                        args.dynamic)
    _check_output(out, args)
    if os.path.dirname(os.path.abspath(out)):
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    print(f'network: {source}')
    report = export_network(net, args.format, out, args.size, args.dynamic, args.verify,
                            input_channels(net, kwargs), args.onnx_exporter)
    for line in describe(report, args.verify):
        print(line)
    return 0


def add_arguments(p):
    """The ``export`` options (used by ``basicsr_restore.commands.cli``)."""
    p.add_argument('--weights', required=True, help='checkpoint (BasicSR params/params_ema, official layouts, bare '
                                                    'state dict)')
    p.add_argument('--format', required=True, choices=tuple(FORMATS),
                   help='onnx (onnxruntime), exported-program (torch.export .pt2) or torchscript (torch.jit)')
    p.add_argument('--size', type=parse_size, metavar='HxW',
                   help="fixed input size (default 256x256), rounded up to the network's multiple; with --dynamic, "
                        'the size traced and verified')
    p.add_argument('--dynamic', action='store_true',
                   help="any height and width that are multiples of the network's multiple (pad other sizes)")
    p.add_argument('-o', '--output', help='file to write (default: beside --weights, <name>_<H>x<W> or _dynamic, '
                                          'with .onnx, .pt2 or .pt)')
    p.add_argument('--onnx-exporter', choices=ONNX_EXPORTERS, default='auto',
                   help='ONNX exporter: auto (default: the legacy one, opset 17, else the torch.export-based one), '
                        'legacy or dynamo')
    p.add_argument('--verify', metavar='IMAGE', help="photo to verify on (default: scikit-image's astronaut)")
    p.add_argument('--overwrite', action='store_true', help='replace an existing output file')
    p.add_argument('--arch', help='network name (e.g. IRNeXt); default: the one the checkpoint records or its key '
                                  'layout shows')
    p.add_argument('--preset', help="one of the network's presets (e.g. deblur), with --arch")
    p.add_argument('--param-key', help='key that holds the weights (default: detected; EMA preferred)')
    p.add_argument('--trusted', action='store_true',
                   help='the weights file is trusted: allow pickled Python objects (torch.load weights_only=False)')
    p.add_argument('--arch-args', nargs='+', metavar='K=V', default=[],
                   help='constructor arguments: key=value ... or one JSON object (put this option last)')
