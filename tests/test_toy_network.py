"""Adding a network takes its ``*_arch.py`` (with a card) and its generated manifest, nothing else: a toy network
outside the package, registered by a pytest plugin, goes through the whole conformance suite unedited."""
import importlib.util
import os
import sys
import textwrap

from conftest import ROOT, run

from basicsr_restore.commands.manifest import write_manifest

TOY = '''
"""A toy network of one's own: plain torch and a card."""
import os

from torch import nn

from basicsr_restore.archs.card import NetworkCard, Preset, SizeRule

CARD = NetworkCard(
    name='ToyNet', paper='none (a test)', size=lambda **_: SizeRule(4, 8, 'two 2x poolings'),
    presets={'default': Preset({'width': 16}, 16 * 27 + 16 + 3 * 16 * 9 + 3, 'ToyNet.json')},
    checkpoint_key=None, outputs=('half size', 'full size'), tiny={'width': 4}, checkpoint_blocks=('Body',))


class Body(nn.Sequential):
    pass


class ToyNet(nn.Module):
    card = CARD

    def __init__(self, width=16):
        super().__init__()
        self.size_rule = self.card.size()
        self.body = Body(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, 3, 3, padding=1))

    def forward(self, x):
        self.size_rule.check(type(self).__name__, x)
        out = self.body(x) + x
        return [out[..., ::2, ::2], out]


class ToyNetWrong(ToyNet):
    """The same network with a card that misstates its parameter count by one."""
    card = NetworkCard(**{**CARD.__dict__, 'name': 'ToyNetWrong', 'presets': {
        'default': Preset({'width': 16}, CARD.presets['default'].params + 1, 'ToyNetWrong.json')}})
'''

PLUGIN = '''
import toy_arch

from basicsr_restore.core.registry import register_module

register_module(toy_arch)
'''

NETWORK_TESTS = ('test_card_is_complete', 'test_preset_parameters_keys_and_shapes_equal_the_manifest',
                 'test_outputs_are_as_the_card_says_and_odd_sizes_restore', 'test_size_rule_errors_name_the_rule',
                 'test_training_gives_finite_gradients_and_eval_is_deterministic')


def test_a_toy_network_goes_through_the_whole_conformance_suite(tmp_path):
    (tmp_path / 'toy_arch.py').write_text(textwrap.dedent(TOY))
    (tmp_path / 'toy_plugin.py').write_text(textwrap.dedent(PLUGIN))
    env = {'PYTHONPATH': os.pathsep.join([str(tmp_path), os.path.join(ROOT, 'tests')])}
    # the manifest is generated, never typed: the verb writes it beside the toy's module
    made = run(['basicsr-restore', 'manifest', 'ToyNet', '--import', 'toy_arch'], cwd=tmp_path, env=env)
    assert (tmp_path / 'manifests' / 'ToyNet.json').is_file() and '883 parameters' in made.stdout
    spec = importlib.util.spec_from_file_location('toy_arch_here', tmp_path / 'toy_arch.py')
    toy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(toy)
    write_manifest(toy.ToyNetWrong, 'default', out=str(tmp_path / 'manifests' / 'ToyNetWrong.json'))

    suite = [sys.executable, '-m', 'pytest', '-p', 'toy_plugin', '-p', 'no:cacheprovider', '-q', '-rA', '--tb=no',
             '-k', 'ToyNet', os.path.join(ROOT, 'tests', 'test_conformance.py')]
    proc = run(suite, cwd=tmp_path, env=env, check=False)
    lines = proc.stdout.splitlines()
    passed = {t for t in NETWORK_TESTS for line in lines
              if line.startswith('PASSED') and (f'::{t}[ToyNet]' in line or f'::{t}[ToyNet-default]' in line)}
    assert passed == set(NETWORK_TESTS), proc.stdout[-3000:]
    # the suite can fail: the card that misstates the parameter count fails exactly the manifest test
    failed = [line for line in lines if line.startswith('FAILED')]
    assert proc.returncode == 1 and failed
    assert all('test_preset_parameters_keys_and_shapes_equal_the_manifest[ToyNetWrong-default]' in f
               for f in failed), failed
