"""Layers point one way: networks, losses and the inference path are plain torch (they import and run where
basicsr cannot be imported), registration happens in one place, and no tool imports another tool."""
import os
import shutil
import sys
import textwrap

from conftest import ROOT, run

WITHOUT_BASICSR = '''
import importlib.abc, sys

class NoBasicsr(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == 'basicsr' or name.startswith('basicsr.'):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, NoBasicsr())
import pkgutil
import torch
import basicsr_restore.archs, basicsr_restore.losses
from basicsr_restore.archs.card import card_of
from basicsr_restore.core.inference import Restorer
from basicsr_restore.core.registry import losses_of, networks_of

nets, losses = [], []
for package, suffix in ((basicsr_restore.archs, '_arch'), (basicsr_restore.losses, '_loss')):
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.endswith(suffix):
            module = importlib.import_module(f'{package.__name__}.{info.name}')
            nets += networks_of(module)
            losses += losses_of(module)
for cls in nets:
    torch.manual_seed(0)
    out = Restorer(cls(**cls.card.tiny), 'cpu')(torch.rand(1, 3, 37, 45))
    assert out.shape == (1, 3, 37, 45) and torch.isfinite(out).all()
for cls in losses:
    loss = cls(**getattr(cls, 'example_options', {}))
    x = torch.rand(1, 3, 16, 16)
    value = loss(x, x.flip(-1), x) if getattr(cls, 'needs_lq', False) else loss(x, x.flip(-1))
    assert torch.isfinite(value)
assert not [m for m in sys.modules if m == 'basicsr' or m.startswith('basicsr.')]
print(sorted(c.__name__ for c in nets), sorted(c.__name__ for c in losses))
'''


def test_networks_losses_and_inference_need_no_basicsr(tmp_path):
    script = tmp_path / 'without.py'
    script.write_text(textwrap.dedent(WITHOUT_BASICSR))
    proc = run(['python', str(script)], cwd=tmp_path, env={'BASICSR_RESTORE_NO_AUTOLOAD': '1'})
    assert "['ChaIR', 'DRCNet', 'EIRN', 'IRNeXt', 'MIRNet'] ['EdgeLoss', 'FFTLoss', 'IntraCRLoss', 'PSNRLoss']" \
        in proc.stdout


LINT = os.path.join(os.path.dirname(sys.executable), 'lint-imports')
#: the contracts of pyproject.toml, by the words their names begin with
CONTRACTS = ('Layers point one way', 'Networks and losses are plain torch', 'No verb imports another verb',
             'No import circle anywhere')


def lint(root):
    """``lint-imports`` over the package under ``root`` with the contracts of ``root/pyproject.toml``:
    ``{contract name: 'KEPT' or 'BROKEN'}`` and the whole report."""
    proc = run([LINT, '--no-cache'], cwd=root, env={'PYTHONPATH': str(root)}, check=False)
    verdicts = {}
    for line in proc.stdout.splitlines():
        verdict = line.rsplit(' ', 1)[-1]
        name = next((n for n in CONTRACTS if line.startswith(n)), None)
        if name and verdict in ('KEPT', 'BROKEN'):
            verdicts[name] = verdict
    return verdicts, proc.stdout + proc.stderr


def test_the_import_contracts_hold():
    verdicts, report = lint(ROOT)
    assert verdicts == {name: 'KEPT' for name in CONTRACTS}, report
    assert f'Contracts: {len(CONTRACTS)} kept, 0 broken.' in report


#: imports that break the layering, each with the contract that must catch it (file, line appended, contract)
UPWARD = [
    ('core/errors.py', 'from basicsr_restore.host import compat', 'Layers point one way'),
    ('data/lmdb_io.py', 'from basicsr_restore.host.registration import register_all', 'Layers point one way'),
    ('core/imageio.py', 'from basicsr_restore.commands import args', 'Layers point one way'),
    ('archs/layers.py', 'from basicsr_restore.core import errors', 'Layers point one way'),
    ('losses/fft_loss.py', 'import basicsr.utils.registry', 'Networks and losses are plain torch'),
    ('commands/convert.py', 'from basicsr_restore.commands.infer import build', 'No verb imports another verb'),
    ('core/errors.py', 'from basicsr_restore.core import checkpoints', 'No import circle anywhere'),
]


def test_an_upward_import_breaks_a_contract(tmp_path):
    """The contracts are not vacuous: each import above, added to a copy of the package (inside a function, where
    it hides from a reader), is reported by the contract named beside it."""
    shutil.copytree(os.path.join(ROOT, 'basicsr_restore'), tmp_path / 'basicsr_restore',
                    ignore=shutil.ignore_patterns('__pycache__'))
    shutil.copy(os.path.join(ROOT, 'pyproject.toml'), tmp_path / 'pyproject.toml')
    for relative, line, contract in UPWARD:
        path = tmp_path / 'basicsr_restore' / relative
        original = path.read_text(encoding='utf-8')
        path.write_text(original + f'\n\ndef _added():\n    {line}\n', encoding='utf-8')
        verdicts, report = lint(tmp_path)
        path.write_text(original, encoding='utf-8')
        assert verdicts.get(contract) == 'BROKEN', f'{relative}: {line}\n{report}'
        assert os.path.basename(relative)[:-3] in report.split('Broken contracts')[1], report  # names the importer
