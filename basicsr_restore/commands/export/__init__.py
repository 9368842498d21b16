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

This module verifies, exports and reads the command line; :mod:`.exporters` holds the formats, the size rule and the
exporters, :mod:`.diagnose` the clear errors of failed exports. All of them stay light at import: the package is
imported for ``export --help``, so torch, onnx and what imports them are imported inside the functions.
"""
import os

from basicsr_restore.commands.args import parse_arch_args
from basicsr_restore.commands.common import parse_size, photo, psnr
from basicsr_restore.commands.export.diagnose import (
    cannot_export_error,
    error_summary,
    failed_op,
    formats_that_export,
    frozen_trace_error,
)
from basicsr_restore.commands.export.exporters import (
    FORMATS,
    INPUT_NAME,
    ONNX_EXPORTERS,
    OUTPUT_NAME,
    ExportError,
    final_module,
    fitted_size,
    input_channels,
    last_error,
    no_console,
    quiet,
    require_onnx,
    rule_text,
    second_size,
    size_text,
    ways,
    write,
)
from basicsr_restore.core.imageio import atomic_path

__all__ = ['DEFAULT_SIZE', 'FORMATS', 'INPUT_NAME', 'MIN_PSNR', 'ONNX_EXPORTERS', 'OUTPUT_NAME', 'ExportError',
           'add_arguments', 'default_output', 'describe', 'export_network', 'failed_op', 'final_module',
           'fitted_size', 'formats_that_export', 'input_channels', 'load_exported', 'parse_size', 'photo', 'psnr',
           'require_onnx', 'rule_text', 'run', 'second_size', 'verify']

#: the least PSNR (dB) between the exported file's output and PyTorch's for the file to be kept
MIN_PSNR = 50.0
#: the size traced and verified when none is given
DEFAULT_SIZE = (256, 256)


def _db(value):
    return 'inf dB (identical)' if value == float('inf') else f'{value:.1f} dB'


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
    with quiet(), no_console() as console:
        try:
            run = load_exported(path, fmt)
        except Exception as exc:  # noqa: BLE001 -- e.g. a runtime without an operation the file uses
            failure = last_error(console()) or error_summary(exc)
    if failure:
        failure = failure if len(failure) <= 300 else failure[:297] + '...'
        raise ExportError(f'the {fmt} file of {name} cannot be loaded back ({_loader(fmt)}: {failure}).')
    results = []
    for size in sizes:
        x = photo(size, image, channels)
        with torch.no_grad():
            reference = module(x)
        try:
            with quiet():
                out = run(x)
        except Exception as exc:  # noqa: BLE001 -- the runtime's own error, summarised
            raise ExportError(f'the {fmt} file of {name} does not run at {size_text(size)}: '
                              f'{error_summary(exc)}.') from None
        if not torch.is_tensor(out):
            raise ExportError(f'the {fmt} file of {name} returns {type(out).__name__}, not one image tensor.')
        if tuple(out.shape) != tuple(reference.shape):
            raise ExportError(f'the {fmt} file of {name} gives an output of shape {tuple(out.shape)} at '
                              f'{size_text(size)}, PyTorch {tuple(reference.shape)}.')
        value = psnr(out, reference)
        results.append((size, value))
        if not value >= minimum:
            raise ExportError(f'the {fmt} file of {name} gives {_db(value)} against PyTorch at {size_text(size)} '
                              f'(at least {minimum:g} dB needed), so it was not kept.')
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
    if fmt not in FORMATS:
        raise ValueError(f'--format {fmt!r}: choose one of {", ".join(FORMATS)}.')
    if fmt == 'onnx':
        require_onnx()
    module = final_module(net)
    name = type(net).__name__
    asked = tuple(size or DEFAULT_SIZE)
    size = fitted_size(net, asked)
    if size != asked:
        log(f'size: {size_text(asked)} rounded up to {size_text(size)} ({name} takes {rule_text(net)})')
    channels = channels or input_channels(net)
    x = photo(size, image, channels)
    sizes = [size, second_size(net, size)] if dynamic else [size]
    failures = []  # (exception, written): what each exporter tried gave
    with atomic_path(path, keep_extension=True) as tmp:
        for way in ways(fmt, onnx_exporter):
            try:
                how, caught = write(module, fmt, tmp, x, dynamic, way)
            except Exception as exc:  # noqa: BLE001 -- every exporter failure becomes one clear message
                failures.append((exc, False))
                continue
            try:
                results = verify(tmp, fmt, module, sizes, image, channels)
                break
            except ExportError as exc:
                if dynamic and fmt == 'torchscript':
                    exc = frozen_trace_error(exc, caught, name, size)
                elif dynamic:
                    others = ' or '.join(f for f in FORMATS if f != fmt)
                    exc = ExportError(f'{exc} {name} with dynamic sizes does not survive {fmt}: export it at a fixed '
                                      f'--size, or try --format {others} for dynamic sizes.')
                failures.append((exc, True))
        else:
            verified = [exc for exc, written in failures if written]
            if verified:  # a file was made but does not compute what the network does: say so
                raise verified[-1]
            raise cannot_export_error(name, fmt, failures[-1][0], module, x, dynamic, onnx_exporter)
    if failures:  # the first exporter could not; say why and which one did
        log(f'{fmt}: the legacy exporter could not export {name} ({error_summary(failures[0][0])}); the '
            'torch.export-based one did')
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
    checks = '; '.join(f'{_db(v)} at {size_text(s)}' for s, v in report['psnr'])
    mib = report['bytes'] / 2 ** 20
    lines = [f"exported: {report['path']} ({report['format']}, {mib:.1f} MiB) with {report['how']}",
             f"input: {report['input']}; output: {OUTPUT_NAME}, the restored image (the network's final output)"]
    if report['dynamic']:
        lines.append(f"sizes: dynamic (traced at {size_text(report['size'])}); {report['rule']}")
    else:
        lines.append(f"size: fixed {size_text(report['size'])}")
    lines.append(f'verified against PyTorch on {photo_name}: {checks} (at least {MIN_PSNR:g} dB needed)')
    return lines


# ------------------------------------------------------------------------------------------------- CLI
def _load(args):
    """``(torch module in eval mode, name, constructor arguments, one line on what was loaded)`` from the
    command line, through :func:`basicsr_restore.api.load` (``--arch`` optional: the file names its network)."""
    from basicsr_restore import api  # keeps export --help light: imports torch
    loaded = api.load(args.weights, arch=args.arch, preset=args.preset, param_key=args.param_key,
                      trusted=args.trusted, device='cpu', **parse_arch_args(args.arch_args))
    return loaded.net.eval(), loaded.name, loaded.kwargs, loaded.source


def default_output(weights, fmt, size, dynamic):
    """``<weights without extension>_<H>x<W>.<ext>`` (``_dynamic`` for dynamic sizes), beside the weights."""
    tag = 'dynamic' if dynamic else size_text(size)
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
