"""``export``'s exporters: the formats, the size rule of the traced input, the network wrapped to return its final
output, and the writing of each format (ONNX by the legacy or the torch.export-based exporter, torch.export,
TorchScript).

Light at import (the package is imported for ``export --help``): torch, onnx and the size rule (which imports torch)
are imported by the functions that use them.
"""
import contextlib
import importlib
import io
import os
import re
import warnings

#: format -> default file extension
FORMATS = {'onnx': '.onnx', 'exported-program': '.pt2', 'torchscript': '.pt'}
INPUT_NAME, OUTPUT_NAME = 'image', 'restored'
#: how ONNX files are made: ``auto`` tries the legacy exporter first and the torch.export-based one when the
#: legacy one cannot export the network or its file fails verification
ONNX_EXPORTERS = ('auto', 'legacy', 'dynamo')


class ExportError(ValueError):
    """A network that cannot be exported as asked; the message names the operation or check and what works."""


# ------------------------------------------------------------------------------------------------ sizes
def fitted_size(net, size):
    """``size`` rounded up to the size rule of ``net`` (:meth:`SizeRule.fit` of each side)."""
    from basicsr_restore.archs.card import size_rule  # keeps export --help light: imports torch
    rule = size_rule(net)
    return rule.fit(size[0]), rule.fit(size[1])


def second_size(net, size):
    """Another size the rule accepts, taller and wider (what a dynamic export is also checked at)."""
    from basicsr_restore.archs.card import size_rule  # keeps export --help light: imports torch
    rule = size_rule(net)
    step = max(rule.multiple, 8)
    return rule.fit(size[0] + step), rule.fit(size[1] + 2 * step)


def rule_text(net):
    """``'multiples of 32, at least 64x64'`` (or ``'any size'``)."""
    from basicsr_restore.archs.card import size_rule  # keeps export --help light: imports torch
    rule = size_rule(net)
    parts = [f'multiples of {rule.multiple}'] if rule.multiple > 1 else []
    parts += [f'at least {rule.min_size}x{rule.min_size}'] if rule.min_size > 1 else []
    return ', '.join(parts) or 'any size'


def size_text(size):
    return f'{size[0]}x{size[1]}'


# ------------------------------------------------------------------------------------------ the module
def require_onnx():
    """A clear error when the ONNX packages (the ``export`` extra) are missing."""
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

    from basicsr_restore.core.inference import final_output  # keeps export --help light: imports torch

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


# ------------------------------------------------------------------------------------------- exporting
def _dynamic_shapes(net):
    """torch.export dimensions of H and W: ``multiple * k`` with k >= ceil(min_size / multiple)."""
    from torch.export import Dim

    from basicsr_restore.archs.card import size_rule  # keeps export --help light: imports torch
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
def quiet():
    """The exporters' progress lines and warnings kept off the user's screen (recorded for error messages)."""
    out = io.StringIO()
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(out):
        warnings.simplefilter('always')
        yield caught


@contextlib.contextmanager
def no_console():
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


def last_error(text):
    """The last ``SomethingError: message`` line of a logged traceback (without the logger's prefix), or None."""
    found = re.findall(r'(?:^|\] |\s)((?:[\w.]+\.)?(\w*(?:Error|Exception|SymNode)): (.+))$', text, re.M)
    return f"{found[-1][1]}: {found[-1][2].split('  (Size-like')[0].strip()}" if found else None


def _torch_export(module, x, dynamic):
    import torch
    with torch.no_grad():
        return torch.export.export(module, (x,), dynamic_shapes=_dynamic_shapes(module.net) if dynamic else None)


def ways(fmt, onnx_exporter='auto'):
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


def write(module, fmt, path, x, dynamic, way=None):
    """Write ``module`` traced on ``x`` to ``path`` in ``fmt`` (ONNX: with the exporter ``way``); returns a
    phrase saying how, and the warnings the exporter gave."""
    import torch
    with quiet() as caught:
        if fmt == 'torchscript':
            # tracing records the convolutions and the size arithmetic done on traced sizes; a size that the
            # network turns into a Python number stays the traced one, which the dynamic check then catches
            with torch.no_grad():
                traced = torch.jit.trace(module, (x,), check_trace=False)
            torch.jit.save(traced, path)
            how = f'torch.jit.trace (torch {torch.__version__})'
        elif fmt == 'onnx' and way == 'legacy':
            axes = {INPUT_NAME: {2: 'height', 3: 'width'}, OUTPUT_NAME: {2: 'height', 3: 'width'}}
            with torch.no_grad(), no_console():
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
