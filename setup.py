"""The build of basicsr-restore (setuptools): ``pip install .``, ``pip install -e .`` or ``python setup.py develop``.

Besides the package, every install puts the startup hook at the root of site-packages: ``basicsr_restore.pth``
(one line that calls ``basicsr_restore_autoload.install()`` at interpreter start, so that stock ``python -m
basicsr.train`` finds the plugin) and ``basicsr_restore.start`` (the same entry point for interpreters that
read ``*.start`` files). Both are listed in the wheel's RECORD, so ``pip uninstall`` removes them:

* regular wheels: :class:`BuildWithHook` copies them into the build folder's root (they land in purelib);
* editable wheels (PEP 660; ``pip install -e .``, which ``setup.py develop`` runs on setuptools >= 80):
  setuptools' editable wheel carries only its own path file, so :class:`EditableWithHook` adds the hook files
  to the wheel and to its RECORD after setuptools wrote it.
"""
import base64
import hashlib
import os
import re
import zipfile

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py
from setuptools.command.develop import develop
from setuptools.command.editable_wheel import editable_wheel

HERE = os.path.dirname(os.path.abspath(__file__))
HOOK_FILES = ('basicsr_restore.pth', 'basicsr_restore.start')


def version():
    with open(os.path.join(HERE, 'basicsr_restore', '__init__.py'), encoding='utf-8') as f:
        return re.search(r"^__version__ = '([^']+)'", f.read(), re.M).group(1)


class BuildWithHook(build_py):
    """build_py that also places the hook files at the root of the build folder."""

    def run(self):
        super().run()
        for name in HOOK_FILES:
            self.copy_file(os.path.join(HERE, name), os.path.join(self.build_lib, name))


def _record_line(name, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()
    return f'{name},sha256={digest},{len(data)}'


def add_to_wheel(wheel_path, files):
    """Rewrite the wheel at ``wheel_path`` with ``files`` (name -> bytes) added at its root and in its RECORD."""
    with zipfile.ZipFile(wheel_path) as z:
        entries = [(info, z.read(info)) for info in z.infolist()]
    record_name = next(info.filename for info, _ in entries if info.filename.endswith('.dist-info/RECORD'))
    tmp = wheel_path + '.tmp'
    with zipfile.ZipFile(tmp, 'w', zipfile.ZIP_DEFLATED) as z:
        for info, data in entries:
            if info.filename == record_name:  # the hook files' lines, then RECORD's own line (no hash) last
                lines = [line for line in data.decode().splitlines()
                         if line and line.split(',')[0] not in files and line.split(',')[0] != record_name]
                lines += [_record_line(n, d) for n, d in files.items()] + [f'{record_name},,']
                data = ('\n'.join(lines) + '\n').encode()
            elif info.filename in files:
                continue
            z.writestr(info, data)
        for name, data in files.items():
            z.writestr(name, data)
    os.replace(tmp, wheel_path)


class EditableWithHook(editable_wheel):
    """editable_wheel whose wheel also carries the hook files (and lists them in its RECORD)."""

    def run(self):
        before = set(os.listdir(self.dist_dir)) if os.path.isdir(self.dist_dir) else set()
        super().run()
        files = {}
        for name in HOOK_FILES:
            with open(os.path.join(HERE, name), 'rb') as f:
                files[name] = f.read()
        for name in set(os.listdir(self.dist_dir)) - before:
            if name.endswith('.whl'):
                add_to_wheel(os.path.join(self.dist_dir, name), files)


class DevelopWithHook(develop):
    """``setup.py develop``: setuptools >= 80 runs ``pip install -e .`` (the editable wheel above carries the hook);
    older setuptools link the source folder instead, and the hook files are copied beside the link."""

    def run(self):
        super().run()
        if hasattr(self, 'install_for_development'):  # the old, link-based develop
            for name in HOOK_FILES:
                self.copy_file(os.path.join(HERE, name), os.path.join(self.install_dir, name))


with open(os.path.join(HERE, 'README.md'), encoding='utf-8') as f:
    LONG_DESCRIPTION = f.read()

setup(
    name='basicsr-restore',
    version=version(),
    description='MIRNet, ChaIR, IRNeXt, DRCNet and EIRN for BasicSR\'s own runners: networks, losses, model, LMDB '
                'datasets and tools',
    long_description=LONG_DESCRIPTION,
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.9',
    packages=find_packages(include=['basicsr_restore', 'basicsr_restore.*']),
    py_modules=['basicsr_restore_autoload'],
    package_data={'basicsr_restore.archs': ['manifests/*.json'], 'basicsr_restore.commands': ['serve_page.html']},
    include_package_data=False,
    install_requires=[
        'basicsr>=1.4.2',
        'torch>=2.0',
        'torchvision>=0.15',
        'numpy',
        'opencv-python',
        'lmdb',
        'pyyaml',
        'scikit-image',
        'tqdm',
        'matplotlib>=3.6',
        'safetensors>=0.4',
        "setuptools; python_version >= '3.12'",
    ],
    extras_require={
        'export': ['onnx>=1.23', 'onnxruntime>=1.20', 'onnxscript>=0.7'],
        'spandrel': ['spandrel>=0.4.2'],
        'test': ['pytest>=7', 'pytest-xdist>=3.2', 'jsonschema>=4', 'spandrel>=0.4.2', 'build', 'setuptools>=64', 'wheel', 'pyflakes',
                 'import-linter>=2.1',
                 'onnx>=1.23', 'onnxruntime>=1.20', 'onnxscript>=0.7', 'selenium>=4.11'],
    },
    entry_points={
        'console_scripts': ['basicsr-restore = basicsr_restore.commands.cli:main'],
        'basicsr.plugins': ['basicsr_restore = basicsr_restore.host.registration:register_all'],
    },
    cmdclass={'build_py': BuildWithHook, 'editable_wheel': EditableWithHook, 'develop': DevelopWithHook},
)
