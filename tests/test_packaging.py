"""setup.py is the build: the wheel and the editable wheel carry the startup hook (and list it in RECORD), and
``pip install .``, ``pip install -e .`` and ``python setup.py develop`` each leave a working hook, console script
and entry point that ``pip uninstall`` removes again.

Each install goes into a bare virtual environment of its own (no pip inside) whose interpreter borrows this
environment's packages through a path file, so pip and setuptools come from here and nothing of this
environment is touched.
"""
import base64
import hashlib
import os
import subprocess
import sys
import sysconfig
import tarfile
import zipfile

import pytest
from conftest import ROOT

HOOK_LINE = 'import basicsr_restore_autoload; basicsr_restore_autoload.install()'
OUTER_SITE = sysconfig.get_paths()['purelib']


@pytest.fixture(scope='module')
def source(tmp_path_factory):
    """A copy of the project's files (what a clone has), so builds write nothing into the repository."""
    dst = tmp_path_factory.mktemp('src') / 'basicsr-restore'
    files = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard'], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split('\n')
    dst.mkdir()
    archive = dst.parent / 'files.tar'
    with tarfile.open(archive, 'w') as tar:
        for name in filter(None, files):
            if os.path.isfile(os.path.join(ROOT, name)):
                tar.add(os.path.join(ROOT, name), arcname=name)
    with tarfile.open(archive) as tar:
        tar.extractall(dst, filter='data')
    return dst


def build(source, kind, out):
    code = f'from setuptools import build_meta; print(build_meta.build_{kind}({str(out)!r}))'
    proc = subprocess.run([sys.executable, '-c', code], cwd=source, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out / proc.stdout.strip().splitlines()[-1]


def record_of(z):
    name = next(n for n in z.namelist() if n.endswith('.dist-info/RECORD'))
    return {line.split(',')[0]: line.split(',')[1:] for line in z.read(name).decode().splitlines() if line}


def check_hook_in(wheel):
    with zipfile.ZipFile(wheel) as z:
        names, record = set(z.namelist()), record_of(z)
        for hook in ('basicsr_restore.pth', 'basicsr_restore.start'):
            assert hook in names, f'{wheel.name} lacks {hook}'
            data = z.read(hook)
            digest = 'sha256=' + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()
            assert record.get(hook) == [digest, str(len(data))], f'{hook} is not (rightly) in RECORD'
        assert z.read('basicsr_restore.pth').decode().strip() == HOOK_LINE
        entry_points = z.read(next(n for n in names if n.endswith('entry_points.txt'))).decode()
        assert '[basicsr.plugins]\nbasicsr_restore = basicsr_restore.host.registration:register_all' in entry_points
        assert 'basicsr-restore = basicsr_restore.commands.cli:main' in entry_points
        assert set(record) == names  # every file listed, nothing listed that is absent
        return names


def test_wheel_and_editable_wheel_carry_the_hook(source, tmp_path):
    names = check_hook_in(build(source, 'wheel', tmp_path))
    assert {'basicsr_restore_autoload.py', 'basicsr_restore/__init__.py',
            'basicsr_restore/archs/manifests/IRNeXt_dehaze.json', 'basicsr_restore/commands/serve_page.html'} <= names
    editable = check_hook_in(build(source, 'editable', tmp_path))
    assert any(n.startswith('__editable__') and n.endswith('.pth') for n in editable)
    assert 'basicsr_restore/__init__.py' not in editable  # the package stays in the source folder


def bare_venv(path):
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(path)], check=True)
    python = path / 'bin' / 'python'
    site = subprocess.run([str(python), '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
                          capture_output=True, text=True, check=True).stdout.strip()
    with open(os.path.join(site, 'zz_borrowed.pth'), 'w') as f:  # pip, setuptools (last on sys.path)
        f.write(OUTER_SITE + '\n')
    return python, site


def in_venv(python, *args, cwd=None):
    env = dict(os.environ, PIP_NO_BUILD_ISOLATION='false', PIP_DISABLE_PIP_VERSION_CHECK='1')
    env.pop('BASICSR_RESTORE_NO_AUTOLOAD', None)
    proc = subprocess.run([str(python), *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, f'{args} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}'
    return proc.stdout


@pytest.mark.parametrize('how', ['pip install .', 'pip install -e .', 'python setup.py develop'])
def test_every_install_gives_a_working_hook_that_uninstall_removes(source, tmp_path, how):
    python, site = bare_venv(tmp_path / 'venv')
    if how == 'python setup.py develop':
        in_venv(python, 'setup.py', 'develop', '--no-deps', cwd=source)
    else:
        in_venv(python, '-m', 'pip', 'install', '-q', '--no-deps', *how.split()[2:-1], str(source))
    for hook in ('basicsr_restore.pth', 'basicsr_restore.start'):
        assert os.path.isfile(os.path.join(site, hook)), f'{how}: {hook} not installed'
    out = in_venv(python, '-c', 'import basicsr_restore_autoload as a, basicsr_restore, importlib.metadata as m; '
                  'print(a.STATE["installed"], basicsr_restore.__file__); '
                  'print([e.value for e in m.entry_points(group="basicsr.plugins")])', cwd=tmp_path)
    installed, package = out.split('\n')[0].split(' ', 1)
    assert installed == 'True', f'{how}: the startup hook did not run'
    expected_home = str(source) if '-e' in how or 'develop' in how else site
    assert package.startswith(expected_home), (how, package)
    assert 'basicsr_restore.host.registration:register_all' in out
    assert in_venv(tmp_path / 'venv' / 'bin' / 'basicsr-restore', '--version', cwd=tmp_path).startswith('basicsr-r')
    in_venv(python, '-m', 'pip', 'uninstall', '-q', '-y', 'basicsr-restore')
    left = [n for n in os.listdir(site) if n.startswith(('basicsr_restore', '__editable__'))]
    assert not left, f'{how}: pip uninstall left {left}'
