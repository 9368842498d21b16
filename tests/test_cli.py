"""The command line is light and plain: ``--help`` of every verb imports neither torch nor basicsr, help texts
carry no reStructuredText markup, ``--version`` answers, errors are one plain line; shipped test options turn
on basicsr's progress bar."""
import glob
import json
import os
import re
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT

PROBE = r'''
import contextlib, io, json, sys
from basicsr_restore.commands.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        main(sys.argv[1:])
    except SystemExit:
        pass
heavy = sorted(m for m in ('torch', 'basicsr', 'cv2', 'torchvision', 'lmdb') if m in sys.modules)
print(json.dumps({'help': out.getvalue(), 'heavy': heavy}))
'''


def probe(*args):
    proc = subprocess.run([sys.executable, '-c', PROBE, *args], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def verbs():
    from basicsr_restore.commands.cli import VERBS
    return list(VERBS)


MARKUP = re.compile(r'``|:(mod|func|class|meth|data|attr):`|\*\*')


@pytest.mark.parametrize('args', [['--help']] + [[v, '--help'] for v in verbs()] + [['prepare', 'gopro', '--help']])
def test_help_is_light_and_plain(args):
    result = probe(*args)
    assert result['heavy'] == [], f'{" ".join(args)} imported {result["heavy"]}'
    text = result['help']
    assert text.startswith('usage: basicsr-restore'), text[:200]
    assert not MARKUP.search(text), f'markup in {" ".join(args)}: {MARKUP.search(text).group(0)!r}'
    assert len(text) < 6000, f'{" ".join(args)} prints {len(text)} characters: help should not be a whole docstring'


def test_version():
    from basicsr_restore import __version__
    proc = subprocess.run([sys.executable, '-m', 'basicsr_restore.commands.cli', '--version'], capture_output=True,
                          text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == f'basicsr-restore {__version__}'


@pytest.mark.parametrize('args, says', [
    (['infer', '-i', 'nothing-here.png', '-o', 'out'], "--input 'nothing-here.png' is neither a file"),
    (['convert', 'missing.pth', 'out.pth'], 'missing.pth'),
    (['zoo', 'NoSuchNet'], 'NoSuchNet'),
])
def test_errors_are_one_plain_line(tmp_path, args, says):
    proc = subprocess.run([sys.executable, '-m', 'basicsr_restore.commands.cli', *args], capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip()
    assert '\x1b[' not in err and 'Traceback' not in err, err
    line = [x for x in err.splitlines() if x.startswith(f'basicsr-restore {args[0]}: error: ')]
    assert line and says in line[0], err
    assert line[0].rstrip().endswith(('.', ')', ':')) or '\n  ' in err, f'cut sentence? {line[0]!r}'


def test_the_cli_tables_match_the_modules():
    from basicsr_restore.commands import bench, cli
    from basicsr_restore.core import speed
    assert cli.COMPILE_MODES == speed.COMPILE_MODES
    assert cli.BENCH_MODES == bench.MODE_FLAGS


def test_shipped_test_options_show_a_progress_bar():
    files = sorted(glob.glob(os.path.join(ROOT, 'options', 'test', '*', '*.yml')))
    assert files
    for path in files:
        with open(path, encoding='utf-8') as f:
            assert yaml.safe_load(f)['val'].get('pbar') is True, f'{os.path.relpath(path, ROOT)}: val.pbar is not on'
