"""``basicsr-restore convert``: official layouts -> BasicSR files, the report, trust and overwrite rules."""
import argparse

import pytest
import torch

import basicsr_restore  # noqa: F401
from basicsr_restore.archs.irnext_arch import IRNeXt
from basicsr_restore.commands.cli import main
from basicsr_restore.core import checkpoints

TINY = ['--arch-args', *[f'{k}={v}' for k, v in IRNeXt.card.tiny.items()]]


def cli(capsys, *args):
    rc = main([str(a) for a in args])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


@pytest.fixture
def official(tmp_path):
    """A tiny IRNeXt saved the way the authors' training scripts save: DataParallel keys under 'model'."""
    torch.manual_seed(3)
    sd = IRNeXt(num_res=1, base_channel=8).state_dict()
    path = tmp_path / 'official.pkl'
    torch.save({'model': {f'module.{k}': v for k, v in sd.items()}, 'optimizer': {'state': {}}, 'epoch': 7}, path)
    return path, sd


def test_round_trip_with_report(tmp_path, official, capsys):
    src, sd = official
    dst = tmp_path / 'converted.pth'
    rc, out, err = cli(capsys, 'convert', src, dst, '--ema', '--arch', 'IRNeXt', *TINY)
    assert rc == 0, err
    assert "key 'model' (the architecture's official key)" in out
    assert f"'module.' stripped from {len(sd)} keys" in out
    assert 'top-level keys: model, optimizer, epoch' in out
    assert f'matches IRNeXt(num_res=1, base_channel=8): all {len(sd)} keys and shapes (strict)' in out
    saved = torch.load(dst, weights_only=True)
    assert sorted(saved) == ['network_g', 'params', 'params_ema']
    assert saved['network_g'] == {'type': 'IRNeXt', 'num_res': 1, 'base_channel': 8}  # the file names its network
    assert list(saved['params']) == list(sd) and all(torch.equal(saved['params'][k], v) for k, v in sd.items())
    # the converted file loads as a plain BasicSR checkpoint and converts again to the same thing
    net, info = checkpoints.load_network('IRNeXt', {'num_res': 1, 'base_channel': 8}, str(dst), 'params')
    assert info['key'] == 'params' and not info['stripped']
    again = tmp_path / 'again.pth'
    assert cli(capsys, 'convert', dst, again)[0] == 0
    assert all(torch.equal(torch.load(again, weights_only=True)['params'][k], v) for k, v in sd.items())


def test_never_overwrites_without_the_flag(tmp_path, official, capsys):
    src, _ = official
    dst = tmp_path / 'out.pth'
    dst.write_bytes(b'precious')
    rc, _, err = cli(capsys, 'convert', src, dst)
    assert rc == 2 and 'exists; pass --overwrite' in err
    assert dst.read_bytes() == b'precious'
    assert cli(capsys, 'convert', src, dst, '--overwrite')[0] == 0
    assert 'params' in torch.load(dst, weights_only=True)


def test_pickled_objects_need_trusted(tmp_path, capsys):
    sd = IRNeXt(num_res=1, base_channel=8).state_dict()
    src = tmp_path / 'with_args.pth'
    torch.save({'state_dict': sd, 'args': argparse.Namespace(lr=1e-4)}, src)
    rc, _, err = cli(capsys, 'convert', src, tmp_path / 'a.pth')
    assert rc == 2 and 'not a weights-only file' in err and '--trusted' in err
    assert not (tmp_path / 'a.pth').exists()
    rc, out, err = cli(capsys, 'convert', src, tmp_path / 'a.pth', '--trusted')
    assert rc == 0, err
    assert 'trusted, full unpickling' in out and "key 'state_dict'" in out
    whole = tmp_path / 'module.pth'
    torch.save(IRNeXt(num_res=1, base_channel=8), whole)  # a whole pickled network, as some releases ship
    assert cli(capsys, 'convert', whole, tmp_path / 'b.pth')[0] == 2
    rc, out, _ = cli(capsys, 'convert', whole, tmp_path / 'b.pth', '--trusted', '--arch', 'IRNeXt', *TINY)
    assert rc == 0 and 'a bare state dict' in out


def test_wrong_architecture_and_non_checkpoints(tmp_path, official, capsys):
    src, _ = official
    rc, _, err = cli(capsys, 'convert', src, tmp_path / 'x.pth', '--arch', 'IRNeXt', '--arch-args', 'num_res=2',
                     'base_channel=8')
    assert rc == 2 and 'does not fit IRNeXt' in err and 'missing keys' in err
    assert not (tmp_path / 'x.pth').exists()
    text = tmp_path / 'notes.txt'
    text.write_text('hello')
    rc, _, err = cli(capsys, 'convert', text, tmp_path / 'y.pth')
    assert rc == 2 and 'is not a PyTorch checkpoint' in err
    torch.save({'epoch': 3, 'lr': [0.1]}, tmp_path / 'no_weights.pth')
    rc, _, err = cli(capsys, 'convert', tmp_path / 'no_weights.pth', tmp_path / 'y.pth')
    assert rc == 2 and 'no state dict found' in err and "['epoch', 'lr']" in err
