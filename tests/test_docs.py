"""The repository explains itself: a page per shipped network that agrees with its card, and no reference to
files that are not in the repository."""
import os
import re
import subprocess

import pytest
from basicsr.utils.registry import ARCH_REGISTRY
from conftest import ROOT

import basicsr_restore  # noqa: F401
from basicsr_restore.archs.card import constructor_arguments
from basicsr_restore.core.registry import network_names

SHIPPED = [n for n in network_names() if ARCH_REGISTRY.get(n).__module__.startswith('basicsr_restore.')]


@pytest.mark.parametrize('name', SHIPPED)
def test_every_network_has_a_page_that_agrees_with_its_card(name):
    path = os.path.join(ROOT, 'docs', 'networks', f'{name}.md')
    assert os.path.isfile(path), f'docs/networks/{name}.md is missing'
    text = open(path, encoding='utf-8').read()
    card = ARCH_REGISTRY.get(name).card
    for preset_name, preset in card.presets.items():
        assert f'`{preset_name}`' in text and f'{preset.params:,}' in text, f'{name} preset {preset_name}'
    if card.checkpoint_key:
        assert f'`{card.checkpoint_key}`' in text or f"'{card.checkpoint_key}'" in text
    readme = open(os.path.join(ROOT, 'README.md'), encoding='utf-8').read()
    assert f'docs/networks/{name}.md' in readme
    row = [line for line in readme.splitlines() if line.startswith(f'| `{name}` |')]
    assert row and all(f'{p.params:,}' in '\n'.join(row) for p in card.presets.values()), 'README network table'
    assert f'| {card.size(**constructor_arguments(ARCH_REGISTRY.get(name), {})).multiple}' in '\n'.join(row)


def test_no_file_points_at_files_outside_the_repository():
    files = subprocess.run(['git', 'ls-files'], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    if not files:
        pytest.skip('not a git checkout')
    cited = []
    for rel in files:
        if rel.endswith(('.py', '.md', '.yml', '.txt', '.toml')) and os.path.isfile(os.path.join(ROOT, rel)):
            text = open(os.path.join(ROOT, rel), encoding='utf-8').read()
            cited += [f'{rel}: {m}' for m in re.findall(r'\bspecs/\w+\.md|\.\./shared\b', text)]
    assert cited == []
