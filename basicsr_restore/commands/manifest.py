"""``basicsr-restore manifest NAME``: write the checkpoint-layout manifest of a network's presets.

A manifest (``manifests/<file>`` beside the network's module, named by its card) pins what a preset's
checkpoints hold: every key with its shape, the parameter count and the checkpoint key. The conformance tests
compare each preset with it, so a layout is never typed by hand: write it from the authors' released file
(``--weights``: read through the package's one checkpoint reader and loaded strictly into the preset, so a
file that does not fit is refused) or, for a network without released weights, from the network itself.
``--import MODULE`` first imports a module of one's own and registers its networks (``register_module``).
"""
import importlib
import json
import os

from basicsr_restore.archs.card import card_of, manifest_of, manifest_path
from basicsr_restore.core import checkpoints, state_dicts
from basicsr_restore.core.imageio import atomic_path
from basicsr_restore.core.registry import register_module


def write_manifest(cls, preset, weights=None, param_key=None, source=None, out=None, overwrite=False):
    """Write the manifest of ``cls``'s ``preset``; returns ``(path, manifest)``."""
    path = out or manifest_path(cls, preset)
    old = {}
    if os.path.isfile(path):
        if not overwrite:
            raise FileExistsError(f"manifest '{path}' exists; pass --overwrite to write it again.")
        with open(path, encoding='utf-8') as f:
            old = json.load(f)
    state = None
    if weights:
        state, _ = checkpoints.read_state_dict(weights, param_key, cls.card.checkpoint_key)
        state_dicts.load_into(cls(**cls.card.preset(preset).kwargs), state, f"--weights '{weights}'", strict=True)
    manifest = manifest_of(cls, preset, state, source if source is not None else old.get('source', ''))
    for key, value in old.items():  # facts only a person can state (e.g. the official constructor) stay
        manifest.setdefault(key, value)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, 'w', encoding='utf-8') as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write('\n')
    return path, manifest


def run(args):
    if args.import_module:
        try:
            module = importlib.import_module(args.import_module)
        except ImportError as exc:
            raise ValueError(f'--import {args.import_module}: {exc}') from None
        register_module(module)
    cls = checkpoints.arch_class(args.name)
    card = card_of(cls)
    if card is None:
        raise ValueError(f'{args.name} has no network card (class attribute card); manifests are written from it.')
    presets = list(card.presets) if args.preset == 'all' else [args.preset]
    if args.out and len(presets) > 1:
        raise ValueError('--out names one file: give --preset too.')
    if args.weights and len(presets) > 1:
        raise ValueError('--weights is a checkpoint of one preset: give --preset too.')
    for preset in presets:
        path, manifest = write_manifest(cls, preset, args.weights, args.param_key, args.source, args.out,
                                        args.overwrite)
        print(f"{args.name} {preset}: {len(manifest['state_dict'])} keys, {manifest['param_count']:,} parameters "
              f"-> {path}")
    return 0
