"""``basicsr-restore prepare dpdd SRC DST``: the Dual-Pixel Defocus Deblurring set (Abuolaim & Brown, ECCV
2020), 16-bit PNGs of 1680x1120, split 350 train / 74 val / 76 test.

Accepted layouts of ``SRC`` (names case-insensitive):

* the original ``dd_dp_dataset_canon`` release: ``{train,val,test}_c/source/<name>.png`` (the blurry
  combined image), ``{...}_c/target/<name>.png`` (all in focus), ``{...}_l/source/<name>_L.png`` and
  ``{...}_r/source/<name>_R.png`` (the dual-pixel views). Source and target carry *different* frame numbers
  (``1P0A0917`` vs ``1P0A0916``): like DPDNet, the images are paired in sorted order, each folder must hold
  the same number of images, and ``DST/<split>/pairs.txt`` records the pairing;
* Restormer's copy: ``{train,val,test}/{inputL,inputR,inputC,target}/`` (also below ``DPDD/`` or a doubled
  ``train/train/``), the four views under the same name; its test folder may hold ``indoor_labels.npy`` and
  ``outdoor_labels.npy`` (1-based indices in sorted order), written as the key lists
  ``DST/test/indoor.txt`` and ``outdoor.txt`` (use them with the dataset option ``meta_info_file``).

Every split gets four LMDBs with the same keys, 16 bits kept: ``gt.lmdb`` (target), ``lqC.lmdb`` (the
combined image, input of the single-image setting), ``lqL.lmdb`` and ``lqR.lmdb`` (the dual-pixel views).
Train images are cut into 512x512 crops with stride 204 (60 % overlap; the last row and column moved to the
border: 4 x 7 = 28 per image), then the 30 % least sharp crops of each image are dropped (DPDNet/Restormer's
filter on the target's Sobel energy; ``--drop-blurry 0`` keeps them all): 350 images -> 9,800 crops -> 7,000
kept. Val and test images are stored whole (validate on a centre crop with ``val_crop_size``).
"""
import os

import numpy as np

from basicsr_restore.commands.prepare.common import (
    LayoutError,
    Split,
    Verb,
    WriteOptions,
    crop_options,
    first_dir,
    image_files,
    no_layout,
    run_splits,
)

STREAMS = ('gt', 'lqC', 'lqL', 'lqR')
RESTORMER_DIRS = {'lqL': 'inputL', 'lqR': 'inputR', 'lqC': 'inputC', 'gt': 'target'}
OFFICIAL = {'train': '350 images of 1680x1120 -> 9,800 crops of 512x512 (stride 204) -> 7,000 after dropping the '
                     '30 % least sharp',
            'val': '74 images of 1680x1120, stored whole', 'test': '76 images of 1680x1120, stored whole'}
LAYOUTS = ['the original release: {train,val,test}_c/{source,target}/, {train,val,test}_l/source/, '
           '{train,val,test}_r/source/ (in SRC or one folder below)',
           "Restormer's copy: {train,val,test}/{inputL,inputR,inputC,target}/ (also {train,val,test}/DPDD/... or "
           'train/train/...)']


def restormer_split(src, split):
    """``{stream: folder}`` of Restormer's layout for ``split``, or None."""
    for rel in (f'{split}/DPDD', f'{split}/{split}', split, f'DPDD/{split}', f'{split}/{split}/DPDD'):
        base = first_dir(src, [rel])
        if base:
            dirs = {s: first_dir(base, [d]) for s, d in RESTORMER_DIRS.items()}
            if all(dirs.values()):
                return dirs
    return None


def canon_split(src, split):
    """``{stream: folder}`` of the original release for ``split``, or None."""
    for root in filter(None, [src] + [first_dir(src, [e]) for e in sorted(os.listdir(src)) if
                                      os.path.isdir(os.path.join(src, e))]):
        dirs = {'lqC': first_dir(root, [f'{split}_c/source']), 'gt': first_dir(root, [f'{split}_c/target']),
                'lqL': first_dir(root, [f'{split}_l/source']), 'lqR': first_dir(root, [f'{split}_r/source'])}
        if all(dirs.values()):
            return dirs
    return None


def view_stem(stem, source_stem, suffix):
    """True when ``stem`` names the ``suffix`` (``L``/``R``) view of ``source_stem``."""
    return stem == source_stem or stem.lower() == f'{source_stem}_{suffix}'.lower()


def pair_in_sorted_order(dirs, split):
    """``[(key, {stream: path})]`` pairing each folder's images in sorted order (DPDNet's rule)."""
    files = {s: image_files(d) for s, d in dirs.items()}
    counts = {s: len(f) for s, f in files.items()}
    if len(set(counts.values())) != 1 or not counts['gt']:
        found = ', '.join(f"{dirs[s]}: {counts[s]}" for s in STREAMS)
        raise LayoutError(f'DPDD {split}: every view folder must hold the same (non-zero) number of images; '
                          f'found {found}.')
    stems = {s: sorted(f) for s, f in files.items()}
    items = []
    for i, key in enumerate(stems['lqC']):
        for s, suffix in (('lqL', 'L'), ('lqR', 'R')):
            if not view_stem(stems[s][i], key, suffix):
                raise LayoutError(f"DPDD {split}: in sorted order, '{stems[s][i]}' in '{dirs[s]}' does not match the "
                                  f"combined image '{key}' (expected '{key}_{suffix}'); the folders do not hold the "
                                  'same scenes.')
        items.append((key, {s: files[s][stems[s][i]] for s in STREAMS}))
    return items


def pairing_record(items):
    lines = ['# key gt lqC lqL lqR (file names; DPDD pairs blurry and sharp frames in sorted order)']
    lines += [' '.join([key] + [os.path.basename(paths[s]) for s in STREAMS]) for key, paths in items]
    return '\n'.join(lines) + '\n'


def label_lists(test_dir, items):
    """``{'indoor.txt': ..., 'outdoor.txt': ...}`` from Restormer's 1-based label files, if present."""
    out = {}
    for kind in ('indoor', 'outdoor'):
        path = os.path.join(test_dir, f'{kind}_labels.npy')
        if os.path.isfile(path):
            labels = np.asarray(np.load(path)).astype(int).ravel()
            if labels.min() < 1 or labels.max() > len(items):
                raise ValueError(f"'{path}' holds indices outside 1..{len(items)}; it does not belong to this test "
                                 'set.')
            out[f'{kind}.txt'] = ''.join(f'{items[i - 1][0]}\n' for i in sorted(labels))
    return out


def run_dpdd(args):
    names = ['train', 'val', 'test'] if args.split in (None, 'all') else [args.split]
    if not 0 <= args.drop_blurry < 1:
        raise ValueError(f'--drop-blurry must be a fraction in [0, 1), got {args.drop_blurry}')
    if not os.path.isdir(args.src):
        raise no_layout('DPDD', args.src, LAYOUTS)
    splits = []
    for name in names:
        dirs = restormer_split(args.src, name) or canon_split(args.src, name)
        if dirs is None:
            raise no_layout(f'DPDD {name} split', args.src, LAYOUTS)
        items = pair_in_sorted_order(dirs, name)
        extra = {'pairs.txt': pairing_record(items)}
        if name == 'test':
            extra.update(label_lists(os.path.dirname(dirs['gt']), items))
        train = name == 'train'
        note = '' if not train or args.drop_blurry else 'sharpness filter off'
        splits.append(Split(name, items=lambda i=items: i, streams=STREAMS, crop=args.crop if train else None,
                            step=args.step if train else None, drop_blurry=args.drop_blurry if train else 0.0,
                            official=OFFICIAL[name], note=note, extra_files=extra))
    return run_splits('DPDD', args.dst, splits, WriteOptions.from_args(args))


# ------------------------------------------------------------------------------------------- verbs
def _dpdd_options(p):
    crop_options(512, 204, 'train images')(p)
    p.add_argument('--drop-blurry', type=float, default=0.3,
                   help='fraction of the least sharp train crops of each image to drop (default 0.3, the published '
                        'filter; 0 keeps all)')
    p.add_argument('--split', choices=('train', 'val', 'test', 'all'), default='all', help='default all')


VERBS = {
    'dpdd': Verb(run_dpdd, 'DPDD dual-pixel defocus set, 16-bit: train crops (stride 204, sharpness filter), '
                 'val and test whole', _dpdd_options),
}
