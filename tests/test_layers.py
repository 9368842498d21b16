"""Layers point one way: networks, losses and the inference path are plain torch (they import and run where
basicsr cannot be imported), registration happens in one place, and no tool imports another tool."""
import ast
import glob
import os
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
from basicsr_restore.inference import Restorer
from basicsr_restore.register import losses_of, networks_of

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


def imports_of(path):
    """The ``basicsr_restore`` modules a file imports (top level and inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(open(path, encoding='utf-8').read())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith('basicsr_restore'):
            found |= {node.module} | {f'{node.module}.{a.name}' for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith('basicsr_restore')}
    return found


#: the verbs' modules: none of them may import another
TOOLS = {'infer', 'bench', 'convert', 'report', 'doctor', 'manifest', 'migrate', 'cli'}


def test_no_tool_imports_another_tool_and_archs_import_no_registry():
    package = os.path.join(ROOT, 'basicsr_restore')
    crossing = []
    for tool in TOOLS - {'cli'}:
        others = {f'basicsr_restore.{t}' for t in TOOLS - {tool}}
        crossing += [f'{tool} -> {m}' for m in imports_of(os.path.join(package, f'{tool}.py')) if m in others]
    preparers = glob.glob(os.path.join(package, 'prepare', '*.py'))
    verbs = {f'basicsr_restore.prepare.{os.path.basename(p)[:-3]}' for p in preparers
             if '\nVERBS = ' in open(p, encoding='utf-8').read()}  # common.py, store.py: shared, not verbs
    assert len(verbs) >= 6
    for path in preparers:
        own = f'basicsr_restore.prepare.{os.path.basename(path)[:-3]}'
        crossing += [f'{own} -> {m}' for m in imports_of(path) if m in verbs - {own}]
    assert crossing == []
    plain = glob.glob(os.path.join(package, 'archs', '*.py')) + glob.glob(os.path.join(package, 'losses', '*.py'))
    for path in plain + [os.path.join(package, 'inference.py'), os.path.join(package, 'imageio.py')]:
        bad = {m for m in imports_of(path) if m.startswith(('basicsr_restore.register', 'basicsr_restore.models',
                                                            'basicsr_restore.data'))}
        source = open(path, encoding='utf-8').read()
        assert not bad and '\nimport basicsr\n' not in source and '\nfrom basicsr.' not in source, path
    assert sys.modules  # the walk above ran over real files
    assert len(plain) >= 10
