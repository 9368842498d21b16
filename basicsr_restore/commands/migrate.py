"""``basicsr-restore migrate FORK.yml [-o OUT.yml]``: the native option file of a BasicSR fork's file.

The fork's files run as written already (``docs/forks.md``); ``migrate`` writes the same recipe in this package's
own terms, so that a migrated recipe reads like the shipped ones: ``model_type: RestorationModel`` (with
``train.use_grad_clip: true`` where the fork clipped by default), ``PairedRestorationDataset`` for the forks' dataset
names, ``use_hflip`` for ``use_flip``, ``val.metric_input`` for ``val.use_image``; keys that only restated the
default (``use_shuffle: true``, ``rgb2bgr: true``) are dropped. Every translated key gets a ``# migrate:`` comment
above it. Everything else (the forks' schedulers, Restormer's progressive and mixup keys, grids) is read by this
package under its own name and stays as it is. What cannot be translated is an error naming the key.
"""
import os
import sys

import yaml

from basicsr_restore.core.imageio import atomic_path
from basicsr_restore.core.option_files import read_option_file

#: the forks' model names -> whether they clip the gradients (max-norm 0.01) when ``use_grad_clip`` is absent
FORK_MODELS = {'ImageRestorationModel': True, 'ImageCleanModel': False}
#: the forks' dataset names that are this package's PairedRestorationDataset
FORK_DATASETS = ('PairedImageDataset_SIDD', 'Dataset_PairedImage')


class Migration:
    """The migrated options and the comment of every translated key (``{path: text}``, path as a tuple)."""

    def __init__(self, opt):
        self.opt = opt
        self.notes = {}

    def note(self, path, text):
        key = tuple(path)
        self.notes[key] = f'{self.notes[key]}; {text}' if key in self.notes else text


def rename(section, old, new, value=None):
    """``section`` with ``old`` replaced by ``new`` at the same place (optionally a new value)."""
    return {(new if k == old else k): (value if k == old and value is not None else v) for k, v in section.items()}


def _model(m):
    opt = m.opt
    fork = opt.get('model_type')
    if fork not in FORK_MODELS:
        return
    opt['model_type'] = 'RestorationModel'
    m.note(['model_type'], f'was {fork}; RestorationModel is the same model')
    train = opt.get('train')
    if FORK_MODELS[fork] and isinstance(train, dict) and 'use_grad_clip' not in train and 'grad_clip' not in train:
        train['use_grad_clip'] = True
        m.note(['train', 'use_grad_clip'], f'{fork} clips the gradients at max-norm 0.01 unless told not to; '
                                           'RestorationModel only when asked')


def _datasets(m):
    for key, spec in list((m.opt.get('datasets') or {}).items()):
        if not isinstance(spec, dict):
            continue
        where = ['datasets', key]
        if spec.get('type') in FORK_DATASETS:
            m.note(where + ['type'], f"was {spec['type']}, which this package reads with PairedRestorationDataset")
            spec['type'] = 'PairedRestorationDataset'
        if 'use_flip' in spec:
            if 'use_hflip' in spec:
                raise ValueError(f'datasets.{key}: use_flip and use_hflip mean the same; keep one.')
            spec = rename(spec, 'use_flip', 'use_hflip')
            m.note(where + ['use_hflip'], "was use_flip (the forks' name of basicsr's horizontal flips)")
        if 'use_shuffle' in spec:
            if spec['use_shuffle'] is not True:
                raise ValueError(f'datasets.{key}.use_shuffle: false cannot be migrated (basicsr always shuffles the '
                                 'training set).')
            del spec['use_shuffle']
            m.note(where, 'use_shuffle: true dropped (basicsr always shuffles the training set)')
        m.opt['datasets'][key] = spec


def _val(m):
    val = m.opt.get('val')
    if not isinstance(val, dict):
        return
    if 'use_image' in val:
        if 'metric_input' in val:
            raise ValueError('val.use_image and val.metric_input both set: keep one.')
        value = 'uint8' if val['use_image'] else 'float'
        m.opt['val'] = val = rename(val, 'use_image', 'metric_input', value)
        m.note(['val', 'metric_input'], f"was use_image: {str(value == 'uint8').lower()} (metrics on the "
                                        f"{'rounded images' if value == 'uint8' else 'unrounded outputs'})")
    if 'rgb2bgr' in val:
        if val['rgb2bgr'] is not True:
            raise ValueError('val.rgb2bgr: false cannot be migrated (this package scores BGR files of RGB outputs).')
        del val['rgb2bgr']
        m.note(['val'], 'rgb2bgr: true dropped (what this package does)')


def migrate(opt):
    """A :class:`Migration` of the fork's options ``opt`` (a dict, changed in place)."""
    m = Migration(opt)
    for step in (_model, _datasets, _val):
        step(m)
    return m


# ------------------------------------------------------------------------------------------- writing
def _scalar(value):
    text = yaml.safe_dump(value, default_flow_style=True, width=10 ** 6).strip()
    return text[:-4].strip() if text.endswith('\n...') else text


def emit(opt, notes, path=(), indent=0):
    """YAML lines of ``opt`` in its own order, each noted key preceded by its ``# migrate:`` comment."""
    lines = []
    for key, value in opt.items():
        here = path + (key,)
        pad = ' ' * indent
        if here in notes:
            lines.append(f'{pad}# migrate: {notes[here]}')
        if isinstance(value, dict) and value:
            lines.append(f'{pad}{_scalar(key)}:')
            lines += emit(value, notes, here, indent + 2)
        else:
            lines.append(f'{pad}{_scalar(key)}: {_scalar(value)}')
    return lines


def migrated_text(path):
    """The migrated option file of ``path`` as text (a header, then the options with their comments)."""
    m = migrate(read_option_file(path, what='FORK.yml'))
    header = [f'# migrated by basicsr-restore from {os.path.basename(path)}: {len(m.notes)} translated key(s), '
              'marked "# migrate:"; every other key is read as in the fork']
    return '\n'.join(header + emit(m.opt, m.notes)) + '\n'


def run(args):
    text = migrated_text(args.src)
    if not args.output:
        sys.stdout.write(text)
        return 0
    if os.path.exists(args.output) and not args.overwrite:
        raise FileExistsError(f"-o '{args.output}' exists; pass --overwrite to replace it.")
    with atomic_path(args.output) as tmp, open(tmp, 'w', encoding='utf-8') as f:
        f.write(text)
    print(f'wrote {args.output}')
    return 0


def add_arguments(p):
    p.add_argument('src', metavar='FORK.yml', help="an option file of NAFNet, HINet, DRCNet or Restormer")
    p.add_argument('-o', '--output', help='write the migrated file here (default: print it)')
    p.add_argument('--overwrite', action='store_true', help='replace an existing output file')
