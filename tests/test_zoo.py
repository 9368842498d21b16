"""``basicsr-restore zoo``: the table of the authors' releases agrees with the network cards and the option files,
and the listing answers without torch."""
import importlib
import json
import os
import re
import sys

import pytest
import torch
import yaml
from conftest import ROOT, run

from basicsr_restore.archs.card import card_of, constructor_arguments
from basicsr_restore.commands import zoo
from basicsr_restore.commands.args import parse_arch_args
from basicsr_restore.commands.cli import build_parser, main

MODULES = {'IRNeXt': 'irnext_arch', 'ChaIR': 'chair_arch', 'MIRNet': 'mirnet_arch', 'DRCNet': 'drcnet_arch',
           'EIRN': 'eirn_arch'}
IDS = [f'{r.network}-{r.tag}' for r in zoo.RELEASES]


def network_class(name):
    return getattr(importlib.import_module(f'basicsr_restore.archs.{MODULES[name]}'), name)


def option_files(release):
    """Every option file a release names: its ``options`` and any in its advice."""
    named = re.findall(r'options/[\w./-]+\.yml', f'{release.adapt} {release.notes}')
    return list(release.options) + named


def network_g(path):
    with open(os.path.join(ROOT, path), encoding='utf-8') as f:
        return dict(yaml.safe_load(f)['network_g'])


def test_the_zoo_covers_every_network_of_the_package():
    assert set(zoo.NETWORKS) == set(MODULES) == set(zoo.SUMMARY)
    assert {r.network for r in zoo.RELEASES} == set(zoo.NETWORKS)
    assert len(set(IDS)) == len(IDS), 'two releases would convert to the same file'


@pytest.mark.parametrize('release', zoo.RELEASES, ids=IDS)
def test_every_release_fits_its_card(release):
    cls = network_class(release.network)
    card = card_of(cls)
    assert card is not None and card.name == release.network
    preset = card.preset(release.preset)  # raises for a preset the card does not have
    assert release.checkpoint_key == card.checkpoint_key
    if release.arch_args is not None:  # the --arch-args of the commands build exactly the preset
        assert constructor_arguments(cls, parse_arch_args(release.arch_args)) == \
            constructor_arguments(cls, preset.kwargs)
    assert release.released in ('yes', 'no', 'unknown')
    assert release.confidence in zoo.CONFIDENCE
    assert (not release.metrics) == (release.confidence in ('none published', 'not recorded here'))
    for name, psnr, ssim in release.metrics:
        assert name and 10 < psnr < 60 and 0 < ssim <= 1, (name, psnr, ssim)
    if release.released != 'yes':
        assert release.file is None
    if release.network == 'EIRN':  # nothing of EIRN was published
        assert release.released == 'no' and card.checkpoint_key is None
    if release.file:
        assert release.released == 'yes' and os.path.splitext(release.file)[1] in ('.pkl', '.pth')


@pytest.mark.parametrize('release', zoo.RELEASES, ids=IDS)
def test_every_named_option_file_exists_and_builds_that_network(release):
    cls = network_class(release.network)
    for path in option_files(release):
        assert os.path.isfile(os.path.join(ROOT, path)), path
        assert network_g(path)['type'] == release.network, path
    if release.released == 'yes' and release.options and not release.adapt and release.arch_args is not None:
        # "use it as it is": its network_g is the release's configuration
        args = network_g(release.options[0])
        args.pop('type')
        assert constructor_arguments(cls, args) == \
            constructor_arguments(cls, card_of(cls).presets[release.preset].kwargs)


@pytest.mark.parametrize('release', zoo.RELEASES, ids=IDS)
def test_the_table_names_no_address_to_download_from(release):
    words = json.dumps(release.as_dict())
    assert '://' not in words and 'www.' not in words and 'drive.google.com' not in words
    for command in release.commands():
        assert command.startswith(('basicsr-restore convert ', 'basicsr-restore infer ', 'python -m basicsr.train '))
    if release.released == 'yes':
        assert release.commands()[0].split()[2] == release.source


def test_an_unknown_network_is_a_clear_error():
    with pytest.raises(ValueError, match='IRNeXt, ChaIR, MIRNet, DRCNet, EIRN'):
        zoo.releases('NoSuchNet')
    assert zoo.releases('irnext') == zoo.releases('IRNeXt')
    proc = run(['python', '-m', 'basicsr_restore.commands.cli', 'zoo', 'NoSuchNet'], ROOT, check=False)
    assert proc.returncode == 2 and proc.stdout == ''
    assert "unknown network 'NoSuchNet'" in proc.stderr and all(n in proc.stderr for n in zoo.NETWORKS)


def test_the_listing_shows_every_network_and_release():
    out = run(['python', '-m', 'basicsr_restore.commands.cli', 'zoo'], ROOT).stdout
    for network in zoo.NETWORKS:
        assert f'\n{network}: ' in '\n' + out, network
    for release in zoo.RELEASES:
        assert f' -- {release.task}' in out
        if release.file:
            assert f'  {release.file} -- ' in out
        for command in release.commands():
            assert command in out
    one = run(['python', '-m', 'basicsr_restore.commands.cli', 'zoo', 'IRNeXt'], ROOT).stdout
    assert one.startswith('IRNeXt: ') and all(f'\n{n}: ' not in one for n in zoo.NETWORKS if n != 'IRNeXt')
    assert 'model_ots.pkl' in one and 'its4196.pkl' not in one


def test_json_lists_the_table():
    data = json.loads(run(['python', '-m', 'basicsr_restore.commands.cli', 'zoo', '--json'], ROOT).stdout)
    assert [(d['network'], d['tag']) for d in data] == [(r.network, r.tag) for r in zoo.RELEASES]
    assert all(d['next'] == ' && '.join(d['commands']) for d in data)
    chair = json.loads(run(['python', '-m', 'basicsr_restore.commands.cli', 'zoo', 'chair', '--json'], ROOT).stdout)
    assert {d['network'] for d in chair} == {'ChaIR'}
    its = next(d for d in chair if d['file'] == 'its4196.pkl')
    assert its['preset'] == 'dehaze' and its['checkpoint_key'] == 'model'
    assert its['metrics'] == [{'set': 'SOTS-Indoor', 'psnr': 41.95, 'ssim': 0.997}]


def test_the_listing_imports_no_torch():
    code = ('import io, sys, contextlib\n'
            'from basicsr_restore.commands.cli import main\n'
            'buf = io.StringIO()\n'
            'with contextlib.redirect_stdout(buf):\n'
            "    assert main(['zoo']) == 0 and main(['zoo', 'MIRNet', '--json']) == 0\n"
            "heavy = sorted(m for m in ('torch', 'basicsr', 'numpy', 'cv2', 'yaml') if m in sys.modules)\n"
            "print(len(buf.getvalue()), heavy)\n")
    out = run([sys.executable, '-c', code], ROOT).stdout.split()
    assert int(out[0]) > 1000 and out[1:] == ['[]'], out


def test_the_next_commands_turn_an_authors_file_into_weights_that_infer_opens(tmp_path, monkeypatch):
    """IRNeXt's OTS file: a file laid out as the authors' (``{'model': state_dict}`` of the preset) goes through
    the listed convert command as printed; the infer command that follows parses and names the file written,
    which records its network (restoring an image is ``infer``'s own tests' business)."""
    release = next(r for r in zoo.RELEASES if r.file == 'model_ots.pkl')
    cls = network_class('IRNeXt')
    torch.manual_seed(0)
    net = cls(**card_of(cls).presets[release.preset].kwargs)
    torch.save({'model': net.state_dict()}, tmp_path / release.file)
    monkeypatch.chdir(tmp_path)  # the commands name files relative to the current folder
    convert, infer = (command.split() for command in release.commands())
    assert convert[0] == infer[0] == 'basicsr-restore'
    assert main(convert[1:]) == 0
    args = build_parser('infer').parse_args(infer[1:])
    assert args.weights == release.converted and args.input == 'photo.png'
    saved = torch.load(args.weights, map_location='cpu', weights_only=True)
    assert saved['network_g']['type'] == 'IRNeXt'
    assert all(torch.equal(saved['params'][k], v) for k, v in net.state_dict().items())
