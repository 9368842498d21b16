"""``basicsr-restore prepare rain13k|rain100h|rain100l|test100|test1200|test2800 SRC DST``: the deraining sets
of the MSPFN/MPRNet protocol (train once on Rain13K, test on five sets), as distributed by MPRNet/Restormer.

Accepted layouts of ``SRC`` (names case-insensitive): Restormer's ``train/Rain13K/{input,target}`` and
``test/<Set>/{input,target}``, MPRNet's ``Rain13k/train/{input,target}``, or the set folders directly
(``Rain13K/``, ``Rain100H/``, ...). Images are paired by name (``rain-001`` also finds ``norain-001``).

Images are stored whole (the JPEGs decoded and stored as PNG, as NAFNet/HINet's ``create_lmdb`` does);
training takes random crops from them. ``rain13k`` writes ``DST/train/{gt,lq}.lmdb`` and, for each of the five
test sets it finds under ``SRC`` (a separate download in most copies), ``DST/test/<Set>/{gt,lq}.lmdb``; the
single-set commands write only their set. Rain sets are scored on the Y channel (MATLAB's ``rgb2ycbcr``), see
``basicsr_restore/metrics``.
"""
import os

from basicsr_restore.commands.prepare.common import (
    Split,
    Verb,
    WriteOptions,
    first_dir,
    no_layout,
    pair_dirs,
    pair_files,
    replace_rule,
    run_splits,
)
from basicsr_restore.data.lmdb_io import read_meta_info

LQ_NAMES = ('input', 'rain', 'rainy')
GT_NAMES = ('target', 'norain', 'gt', 'groundtruth', 'clean')
RULES = (replace_rule('rain', 'norain'), replace_rule('rain', 'clean'))

#: command -> (folder name, official size of the distributed copy)
TEST_SETS = {
    'rain100h': ('Rain100H', '100 test pairs'),
    'rain100l': ('Rain100L', '100 test pairs'),
    'test100': ('Test100', '100 test pairs (98 in some distributed copies)'),
    'test1200': ('Test1200', '1,200 test pairs'),
    'test2800': ('Test2800', '2,800 test pairs'),
}
TRAIN_OFFICIAL = '13,712 pairs (commonly cited; Rain14000 + Rain1800 + Rain800 + Rain12), stored whole'


def set_pairs(src, name, candidates):
    """Pairs of the set ``name`` from the first candidate folder holding ``{input,target}``, or None."""
    for rel in candidates:
        base = first_dir(src, [rel])
        dirs = pair_dirs(base, LQ_NAMES, GT_NAMES) if base else None
        if dirs:
            return pair_files(*dirs, gt_name_rules=RULES)
    return None


def test_candidates(folder):
    return [f'test/{folder}', folder, f'Rain13k/test/{folder}', f'Rain13K/test/{folder}']


def layouts(folder, split):
    return [f"Restormer: {split}/{folder}/{{input,target}}" if split == 'test' else
            'Restormer: train/Rain13K/{input,target}',
            f'MPRNet: Rain13k/{split}/' + (f'{folder}/' if split == 'test' else '') + '{input,target}',
            f'the set folder itself: {folder}/{{input,target}} in SRC, or SRC = that folder']


def run_rain13k(args):
    train = set_pairs(args.src, 'Rain13K', ['train/Rain13K', 'Rain13K/train', 'Rain13K', 'train', ''])
    if train is None:
        raise no_layout('Rain13K training set', args.src, layouts('Rain13K', 'train'))
    splits = [Split('train', pairs=lambda: train, crop=args.crop, step=args.step, official=TRAIN_OFFICIAL)]
    missing = []
    if not args.train_only:
        for folder, official in TEST_SETS.values():
            pairs = set_pairs(args.src, folder, test_candidates(folder))
            if pairs:
                splits.append(Split(f'test/{folder}', pairs=lambda p=pairs: p, official=official))
            else:
                missing.append(folder)
    rows = run_splits('Rain13K', args.dst, splits, WriteOptions.from_args(args))
    warn_small_images(os.path.join(args.dst, 'train', 'gt.lmdb'), patch=256)
    if missing:
        print(f"  test sets not found under '{args.src}' (skipped): {', '.join(missing)}; prepare them with "
              '`basicsr-restore prepare <set> SRC DST` once downloaded.')
    return rows


def warn_small_images(lmdb_path, patch):
    """Training takes random ``patch`` crops from whole images: say how many images are too small for it."""
    small = [(k, s) for k, s in read_meta_info(lmdb_path) if min(s[:2]) < patch]
    if small:
        smallest = min(min(s[:2]) for _, s in small)
        print(f'  note: {len(small)} training images are smaller than {patch} px on a side (e.g. {small[0][0]} '
              f'{small[0][1][1]}x{small[0][1][0]}); lower datasets.train.gt_size to {smallest} or leave those '
              'images out.')


def run_test_set(args):
    folder, official = TEST_SETS[args.dataset]
    pairs = set_pairs(args.src, folder, test_candidates(folder) + [''])
    if pairs is None:
        raise no_layout(folder, args.src, layouts(folder, 'test'))
    return run_splits(folder, args.dst, [Split(f'test/{folder}', pairs=lambda: pairs, official=official)],
                      WriteOptions.from_args(args))


# ------------------------------------------------------------------------------------------- verbs
def _rain13k_options(p):
    p.add_argument('--crop', type=int, default=None, help='cut the training images into sub-images (default: keep '
                                                          'them whole, as the published recipes do)')
    p.add_argument('--step', type=int, default=None, help='grid step of the sub-images (default: CROP)')
    p.add_argument('--train-only', action='store_true', help='skip the test sets even when they are found')


VERBS = {
    'rain13k': Verb(run_rain13k, 'Rain13K training set, plus the five test sets when found', _rain13k_options),
    'rain100h': Verb(run_test_set, 'Rain100H test set'),
    'rain100l': Verb(run_test_set, 'Rain100L test set'),
    'test100': Verb(run_test_set, 'Test100 test set'),
    'test1200': Verb(run_test_set, 'Test1200 test set'),
    'test2800': Verb(run_test_set, 'Test2800 test set'),
}
