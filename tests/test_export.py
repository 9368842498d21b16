"""``basicsr-restore export``: every network x every format exports and verifies (>= 50 dB against PyTorch on a
real photo) or fails with one clear message; sizes follow the size rule; failures leave no file behind."""
import os
import sys

import pytest
import torch
from conftest import cli, run
from torch import nn

from basicsr_restore.archs.card import SizeRule
from basicsr_restore.archs.chair_arch import ChaIR
from basicsr_restore.archs.drcnet_arch import DRCNet
from basicsr_restore.archs.eirn_arch import EIRN
from basicsr_restore.archs.irnext_arch import IRNeXt, local_mean
from basicsr_restore.archs.mirnet_arch import MIRNet
from basicsr_restore.commands import export
from basicsr_restore.core.inference import final_output

NETWORKS = (MIRNet, ChaIR, IRNeXt, DRCNet, EIRN)
FORMATS = tuple(export.FORMATS)


def tiny(cls, **kwargs):
    torch.manual_seed(0)
    return cls(**dict(cls.card.tiny, **kwargs)).eval()


def files(folder):
    return sorted(os.listdir(folder))


# ----------------------------------------------------------------------------------- every network x format
#: the pairs exported with dynamic H and W (the others at a fixed size): TorchScript and ONNX, where it costs
#: little; torch.export's symbolic shapes cost 20 s or more per network to trace and load back, so dynamic
#: exported programs are checked on a toy network below (and were measured on the five networks by hand)
DYNAMIC = {(cls, 'torchscript') for cls in NETWORKS} | {(cls, 'onnx') for cls in NETWORKS if cls is not IRNeXt}


@pytest.mark.parametrize('fmt', FORMATS)
@pytest.mark.parametrize('cls', NETWORKS, ids=lambda c: c.__name__)
def test_every_network_every_format(tmp_path, cls, fmt):
    dynamic = (cls, fmt) in DYNAMIC
    net = tiny(cls)
    path = str(tmp_path / f'net{export.FORMATS[fmt]}')
    logged = []
    try:
        # IRNeXt: straight to the torch.export-based ONNX exporter, which ``auto`` ends up using after the legacy
        # one fails (that fallback is tested on the FFT toy below, in a tenth of the time)
        way = 'dynamo' if (cls, fmt) == (IRNeXt, 'onnx') else 'auto'
        report = export.export_network(net, fmt, path, size=(32, 48), dynamic=dynamic, onnx_exporter=way,
                                       log=logged.append)
    except export.ExportError as exc:  # allowed, but only as the clear message
        message = str(exc)
        assert f'{cls.__name__} cannot be exported to {fmt}' in message and 'operation' in message, message
        assert files(tmp_path) == []
        return
    rule = net.size_rule
    size = (rule.fit(32), rule.fit(48))
    assert report['size'] == size
    assert (size != (32, 48)) == any('rounded up to' in line for line in logged)
    checked = [s for s, _ in report['psnr']]
    assert checked == ([size, export.second_size(net, size)] if dynamic else [size])
    assert all(db >= export.MIN_PSNR for _, db in report['psnr']), report['psnr']
    assert files(tmp_path) == [os.path.basename(path)]  # the temporary file was renamed, nothing else left
    if fmt == 'onnx':
        assert ('torch.export-based' if cls is IRNeXt else 'legacy') in report['how'], report['how']
    if dynamic:  # a third size, neither traced nor checked (verify compared shapes and values at the others)
        assert f'multiples of {rule.multiple}' in report['rule']
        x = export.photo((size[0] + 2 * rule.multiple, size[1] + rule.multiple))
        out = export.load_exported(path, fmt)(x)
        with torch.no_grad():
            assert torch.is_tensor(out) and export.psnr(out, final_output(net(x))) > 50
    if fmt == 'onnx':
        import onnxruntime
        session = onnxruntime.InferenceSession(path, providers=['CPUExecutionProvider'])
        (image,), (restored,) = session.get_inputs(), session.get_outputs()
        assert (image.name, restored.name) == ('image', 'restored')
        assert image.shape[:2] == [1, 3] and all(isinstance(d, str) == dynamic for d in image.shape[2:]), image.shape


class Toy(nn.Module):
    """A toy network with a size rule: multiples of 4, at least 8x8."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.size_rule = SizeRule(4, 8)

    def forward(self, x):
        self.size_rule.check('Toy', x)
        return [x, x + 0.1 * self.conv(x)]  # two outputs: the export returns the last


def test_exported_program_dynamic_sizes_are_multiples_of_the_rule(tmp_path):
    torch.manual_seed(0)
    net = Toy().eval()
    path = str(tmp_path / 'toy.pt2')
    report = export.export_network(net, 'exported-program', path, size=(10, 13), dynamic=True, log=lambda _: None)
    assert [s for s, _ in report['psnr']] == [(12, 16), (20, 32)] and 'multiples of 4, at least 8x8' in report['rule']
    program = export.load_exported(path, 'exported-program')
    x = export.photo((28, 8))
    with torch.no_grad():
        assert export.psnr(program(x), net(x)[-1]) > 50
    for bad in ((30, 16), (4, 16)):  # not a multiple of 4; under the minimum
        with pytest.raises(Exception):
            program(export.photo(bad))


class LocalMean(Toy):
    """IRNeXt's local low-pass (a box filter whose window follows the size): torch.export.load cannot load back
    the dynamic program (its window's shape expression), as for IRNeXt's deblurring preset."""

    def forward(self, x):
        return 0.5 * x + 0.5 * local_mean(x)


def test_exported_program_that_cannot_be_loaded_back_is_refused(tmp_path):
    path = str(tmp_path / 'lm.pt2')
    try:
        report = export.export_network(LocalMean(), 'exported-program', path, size=(16, 16), dynamic=True)
    except export.ExportError as exc:  # torch 2.14: the load fails on the window's shape expression
        message = str(exc)
        assert 'cannot be loaded back (torch.export.load: ' in message and '\n' not in message, message
        assert 'export it at a fixed --size, or try --format onnx or torchscript' in message and files(tmp_path) == []
    else:  # a torch that loads it back: then it must verify
        assert all(db >= export.MIN_PSNR for _, db in report['psnr']) and os.path.isfile(path)


class ScaledByWidth(nn.Module):
    """A toy network that turns its width into a Python number: a trace keeps the traced width."""

    def forward(self, x):
        return x * (float(x.shape[-1]) / 16)


def test_torchscript_dynamic_refused_when_the_trace_freezes_a_size(tmp_path):
    with pytest.raises(export.ExportError) as caught:
        export.export_network(ScaledByWidth(), 'torchscript', str(tmp_path / 'toy.pt'), size=(16, 16), dynamic=True)
    message = str(caught.value)
    assert 'at 24x32' in message and 'frozen at 16x16' in message and 'Converting a tensor' in message, message
    assert '--format exported-program or onnx' in message and files(tmp_path) == []


class WithFFT(nn.Module):
    """A toy network filtering in the Fourier domain (torch.fft), which the legacy ONNX exporter lacks."""

    def forward(self, x):
        return torch.fft.irfft2(torch.fft.rfft2(x) * 0.5, s=x.shape[-2:]) + 0.5 * x


def test_onnx_falls_back_to_the_torch_export_based_exporter(tmp_path):
    logged = []
    report = export.export_network(WithFFT(), 'onnx', str(tmp_path / 'fft.onnx'), size=(16, 16), log=logged.append)
    assert 'torch.export-based' in report['how'] and report['psnr'][0][1] > 50
    assert any('legacy exporter could not export WithFFT' in line and 'fft_rfft2' in line for line in logged), logged
    with pytest.raises(export.ExportError) as caught:  # the legacy exporter alone: say that the other one can
        export.export_network(WithFFT(), 'onnx', str(tmp_path / 'legacy.onnx'), size=(16, 16), onnx_exporter='legacy')
    message = str(caught.value)
    assert 'by the legacy exporter: the operation aten::fft_rfft2 has no onnx export' in message, message
    assert 'use --onnx-exporter dynamo' in message and files(tmp_path) == ['fft.onnx']


# ------------------------------------------------------------------------------------------- failures
class WithBessel(nn.Module):
    """A toy network with an operation ONNX lacks (the modified Bessel function i0)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.size_rule = SizeRule(4, 8)

    def forward(self, x):
        return x + 0.01 * torch.special.i0(self.conv(x))


def test_unsupported_op_names_the_op_and_the_formats_that_work(tmp_path):
    with pytest.raises(export.ExportError) as caught:
        export.export_network(WithBessel().eval(), 'onnx', str(tmp_path / 'toy.onnx'), size=(16, 16))
    message = str(caught.value)
    assert 'WithBessel cannot be exported to onnx' in message and 'bessel_i0' in message, message
    assert 'it exports to exported-program, torchscript: use --format exported-program' in message, message
    assert '\n' not in message and files(tmp_path) == []


def test_under_50_db_is_refused_and_nothing_is_written(tmp_path, monkeypatch):
    loader = export.load_exported
    monkeypatch.setattr(export, 'load_exported', lambda path, fmt: (lambda x: loader(path, fmt)(x) + 0.01))
    path = tmp_path / 'toy.pt'
    path.write_bytes(b'the previous file')
    net = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1)).eval()
    with pytest.raises(export.ExportError, match=r'gives 40\.0 dB against PyTorch at 16x16 \(at least 50 dB needed\)'):
        export.export_network(net, 'torchscript', str(path), size=(16, 16))
    assert path.read_bytes() == b'the previous file' and files(tmp_path) == ['toy.pt']


def test_photo_and_sizes():
    assert export.parse_size('256') == (256, 256) and export.parse_size('240x320') == (240, 320)
    for bad in ('big', '0x4', '3x', '-4'):
        with pytest.raises(Exception, match='is not a size'):
            export.parse_size(bad)
    x = export.photo((40, 24))
    assert x.shape == (1, 3, 40, 24) and x.dtype == torch.float32 and 0 <= x.min() < x.max() <= 1
    assert export.photo((8, 8), channels=6).shape == (1, 6, 8, 8)
    assert export.fitted_size(tiny(IRNeXt), (65, 10)) == (96, 64)


# ---------------------------------------------------------------------------------------------- the CLI
def test_cli_subprocess_exports_and_verifies(tmp_path):
    net = tiny(MIRNet)
    weights = tmp_path / 'mirnet.pth'
    torch.save({'params': net.state_dict()}, weights)
    out = tmp_path / 'deploy' / 'mirnet.pt'
    args = [sys.executable, '-m', 'basicsr_restore.commands.cli', 'export', '--weights', str(weights), '--format',
            'torchscript', '--size', '30x45', '-o', str(out), '--arch', 'MIRNet', '--arch-args', 'n_feat=8',
            'n_RRG=1', 'n_MSRB=1']
    proc = run(args, cwd=tmp_path)
    assert 'size: 30x45 rounded up to 32x48 (MIRNet takes multiples of 4)' in proc.stdout, proc.stdout
    assert 'verified against PyTorch on' in proc.stdout and 'dB' in proc.stdout and 'size: fixed 32x48' in proc.stdout
    traced = torch.jit.load(str(out))
    x = export.photo((32, 48))
    with torch.no_grad():
        assert export.psnr(traced(x), net(x)) > 50


def test_cli_bad_inputs(tmp_path, capsys):
    kept = tmp_path / 'kept.onnx'
    kept.write_bytes(b'an earlier export')
    rc, _, err = cli(capsys, 'export', '--weights', kept, '--format', 'onnx', '-o', kept)
    assert rc == 2 and 'is the weights file itself' in err, err
    rc, _, err = cli(capsys, 'export', '--weights', tmp_path / 'any.pth', '--format', 'onnx', '-o', kept)
    assert rc == 2 and 'does not exist' in err, err
    (tmp_path / 'any.pth').write_bytes(b'')
    rc, _, err = cli(capsys, 'export', '--weights', tmp_path / 'any.pth', '--format', 'onnx', '-o', kept)
    assert rc == 2 and f"output '{kept}' exists; pass --overwrite to replace it" in err, err
    assert kept.read_bytes() == b'an earlier export'

    junk = tmp_path / 'junk.pth'
    junk.write_text('not a checkpoint')
    rc, _, err = cli(capsys, 'export', '--weights', junk, '--format', 'onnx', '--arch', 'MIRNet')
    assert rc == 2 and err.startswith('basicsr-restore export: error:') and 'junk.pth' in err, err
    assert err.count('\n') == 1 and 'Traceback' not in err, err

    rc, _, err = cli(capsys, 'export', '--weights', tmp_path / 'absent.pth', '--format', 'onnx')
    assert rc == 2 and "--weights '" in err and 'does not exist' in err, err

    for option, value, expected in (('--format', 'tflite', "invalid choice: 'tflite'"),
                                    ('--size', 'big', "'big' is not a size: give HxW")):
        argv = ['--weights', junk, '--format', 'onnx', option, value]
        with pytest.raises(SystemExit) as stop:
            cli(capsys, 'export', *argv)
        assert stop.value.code == 2 and expected in capsys.readouterr().err

    weights = tmp_path / 'mirnet.pth'
    torch.save({'params': tiny(MIRNet).state_dict()}, weights)
    rc, _, err = cli(capsys, 'export', '--weights', weights, '--format', 'onnx', '--verify', tmp_path / 'no.png',
                     '--arch', 'MIRNet', '--arch-args', 'n_feat=8', 'n_RRG=1', 'n_MSRB=1')
    assert rc == 2 and "--verify image '" in err and 'does not exist' in err, err
