"""``basicsr-restore prepare gopro|hide|realblur SRC DST``: motion-deblurring sets as distributed -> LMDB.

GoPro (Nah et al., CVPR 2017). Accepted layouts of ``SRC`` (names case-insensitive):

* the original ``GOPRO_Large``: ``{train,test}/<sequence>/{blur,blur_gamma,sharp}/<frame>.png`` (``blur`` is
  used, as every published recipe does; ``blur_gamma`` is ignored);
* the flattened copies: ``{train,test}/{input,target}/<sequence>-<frame>.png`` (MPRNet/Restormer/HINet/
  NAFNet) or ``{train,test}/{blur,sharp}/<sequence>_<frame>.png`` (MIMO-UNet and Cui's repositories; a
  sharp name may also be the blur name with ``blur`` replaced by ``gt``), also below ``GoPro/`` or
  ``GOPRO_Large/``; Restormer's test copy ``test/GoPro/{input,target}``. With ``--split train`` (or
  ``test``) ``SRC`` may itself be that split's folder.

Keys are ``<sequence>-<frame>`` whatever the layout (frame numbers repeat across sequences), e.g.
``GOPR0372_07_00-000047``; train frames are cut into 512x512 crops with step 256 (8 per 1280x720 frame,
``..._s001`` to ``_s008``: 2,103 frames -> 16,824 crops), test frames are stored whole (1,111).
Output: ``DST/train/{gt,lq}.lmdb``, ``DST/test/{gt,lq}.lmdb``.

HIDE (Shen et al., ICCV 2019; 2,025 test pairs) from ``HIDE_dataset/{test/<subset>/*.png, GT/*.png}`` or a
flattened ``{input,target}`` copy (e.g. Restormer's ``test/HIDE``) -> ``DST/test/{gt,lq}.lmdb``.
RealBlur-J/R (Rim et al., ECCV 2020; 980 test pairs each) from the original release with its
``RealBlur_{J,R}_test_list.txt`` or from flattened ``RealBlur_{J,R}/{input,target}`` copies ->
``DST/test/RealBlur_{J,R}/{gt,lq}.lmdb``. Both test sets are stored whole.
"""
import os
import re

from basicsr_restore.commands.prepare.common import (
    LayoutError,
    Split,
    Verb,
    WriteOptions,
    crop_options,
    first_dir,
    image_files,
    listing,
    no_layout,
    pair_dirs,
    pair_files,
    replace_rule,
    run_splits,
)

LQ_NAMES = ('input', 'blur')
GT_NAMES = ('target', 'sharp', 'gt', 'groundtruth')
_SEQUENCE_FRAME = re.compile(r'^(GOPR\d+_\d+_\d+)[-_](\d+)$')

GOPRO_OFFICIAL = {'train': '2,103 frames of 1280x720 -> 16,824 crops of 512x512 (step 256)',
                  'test': '1,111 frames of 1280x720, stored whole'}
GOPRO_LAYOUTS = ['GOPRO_Large: {train,test}/<sequence>/{blur,sharp}/<frame>.png',
                 'flattened: {train,test}/{input,target}/<sequence>-<frame>.png (MPRNet/Restormer/NAFNet copies)',
                 'flattened: {train,test}/{blur,sharp}/<sequence>_<frame>.png (MIMO-UNet, IRNeXt, ChaIR copies)',
                 'the same below GoPro/ or GOPRO_Large/; with --split, SRC may be the split folder itself']


def gopro_key(stem):
    """``GOPR0372_07_00_000047`` and ``GOPR0372_07_00-000047`` both become ``GOPR0372_07_00-000047``."""
    m = _SEQUENCE_FRAME.match(stem)
    return f'{m[1]}-{m[2]}' if m else stem


def sequence_pairs(split_dir):
    """Pairs of the original layout (``<sequence>/{blur,sharp}``) or None when it is not that layout."""
    sequences = [e for e in sorted(os.listdir(split_dir))
                 if pair_dirs(os.path.join(split_dir, e), ('blur',), ('sharp',))]
    if not sequences:
        return None
    pairs = []
    for seq in sequences:
        blur, sharp = pair_dirs(os.path.join(split_dir, seq), ('blur',), ('sharp',))
        pairs += pair_files(blur, sharp, key=lambda stem, seq=seq: f'{seq}-{stem}')
    return pairs


def flat_pairs(split_dir, rules=(replace_rule('blur', 'gt'),), key=gopro_key):
    """Pairs of a flattened ``{input,target}`` / ``{blur,sharp}`` folder, or None."""
    dirs = pair_dirs(split_dir, LQ_NAMES, GT_NAMES)
    return pair_files(*dirs, gt_name_rules=rules, key=key) if dirs else None


def gopro_split_pairs(src, split, explicit):
    """Pairs of one split: the first candidate folder that holds a known layout (``SRC`` itself too when the
    split was named explicitly)."""
    candidates = [split, f'{split}/GoPro', f'GOPRO_Large/{split}', f'GoPro/{split}', f'GOPRO/{split}']
    folders = [first_dir(src, [c]) for c in candidates] + ([src] if explicit else [])
    for folder in filter(None, folders):
        pairs = sequence_pairs(folder) or flat_pairs(folder)
        if pairs:
            return pairs
    raise no_layout(f'GoPro {split} split', src, GOPRO_LAYOUTS)


def splits_from(arg, known):
    if arg in (None, 'all'):
        return list(known), False
    return [arg], True


def run_gopro(args):
    names, explicit = splits_from(args.split, ('train', 'test'))
    resolved = {name: gopro_split_pairs(args.src, name, explicit) for name in names}  # check the layout first
    splits = [Split(name, pairs=lambda p=resolved[name]: p, crop=args.crop if name == 'train' else None,
                    step=args.step if name == 'train' else None, official=GOPRO_OFFICIAL[name]) for name in names]
    return run_splits('GoPro', args.dst, splits, WriteOptions.from_args(args))


# ---------------------------------------------------------------------------------------------- HIDE
HIDE_LAYOUTS = ['HIDE_dataset: test/<subset>/*.png with the ground truth of the same name in GT/',
                'flattened: {input,target}/ (e.g. Restormer\'s test/HIDE/{input,target}), in SRC, SRC/HIDE or '
                'SRC/test/HIDE']


def hide_pairs(src):
    base = first_dir(src, ['test/HIDE', 'HIDE', '', 'test'])
    dirs = pair_dirs(base, LQ_NAMES, GT_NAMES) if base else None
    if dirs:
        return pair_files(*dirs)
    root = first_dir(src, ['HIDE_dataset', ''])
    test, gt = first_dir(root, ['test']), first_dir(root, ['GT'])
    if not (test and gt):
        raise no_layout('HIDE', src, HIDE_LAYOUTS)
    subsets = [os.path.join(test, e) for e in sorted(os.listdir(test)) if os.path.isdir(os.path.join(test, e))]
    gts = image_files(gt)
    pairs, orphans = [], []
    for subset in subsets or [test]:
        for stem, path in image_files(subset).items():
            if stem in gts:
                pairs.append((stem, gts[stem], path))
            else:
                orphans.append(os.path.relpath(path, root))
    if orphans or not pairs:
        raise LayoutError(f"HIDE: {len(orphans)} test images have no ground truth of the same name in '{gt}', e.g. "
                          f'{orphans[:3]}; {listing(test)}.')
    return sorted(pairs)


def run_hide(args):
    pairs = hide_pairs(args.src)
    split = Split('test', pairs=lambda: pairs, official='2,025 test pairs of 1280x720, stored whole')
    return run_splits('HIDE', args.dst, [split], WriteOptions.from_args(args))


# ------------------------------------------------------------------------------------------ RealBlur
REALBLUR_LAYOUTS = ['flattened: RealBlur_J/{input,target} and/or RealBlur_R/{input,target}, in SRC or SRC/test '
                    "(Restormer's copies)",
                    'the original release: RealBlur_J_test_list.txt / RealBlur_R_test_list.txt in SRC, each line '
                    '"<gt path> <blur path>" relative to SRC']


def realblur_list_pairs(src, variant):
    listed = next((os.path.join(src, n) for n in sorted(os.listdir(src))
                   if n.lower() == f'realblur_{variant.lower()}_test_list.txt'), None)
    if listed is None:
        return None
    pairs, missing = [], []
    with open(listed, encoding='utf-8') as f:
        for line in f:
            parts = line.split()
            if len(parts) < 2:
                continue
            first, second = parts[:2]
            if '/blur/' in first.replace(os.sep, '/') and '/gt/' in second.replace(os.sep, '/'):
                first, second = second, first  # the release lists "<gt> <blur>"; accept the other order too
            gt, blur = (os.path.join(src, p) for p in (first, second))
            if not (os.path.isfile(gt) and os.path.isfile(blur)):
                missing.append(parts[1])
                continue
            scene = os.path.basename(os.path.dirname(os.path.dirname(blur)))
            pairs.append((f'{scene}-{os.path.splitext(os.path.basename(blur))[0]}', gt, blur))
    if missing:
        raise LayoutError(f"RealBlur-{variant}: {len(missing)} files named in '{listed}' are missing under '{src}', "
                          f'e.g. {missing[:3]}; unpack the whole release into SRC.')
    return sorted(pairs)


def realblur_pairs(src, variant):
    base = first_dir(src, [f'test/RealBlur_{variant}', f'RealBlur_{variant}', f'test/RealBlur-{variant}',
                           f'RealBlur-{variant}'])
    dirs = pair_dirs(base, LQ_NAMES, GT_NAMES) if base else None
    if dirs:
        return pair_files(*dirs)
    return realblur_list_pairs(src, variant) if os.path.isdir(src) else None


def run_realblur(args):
    variants = ['J', 'R'] if args.variant == 'both' else [args.variant]
    found = {v: realblur_pairs(args.src, v) for v in variants}
    if not any(found.values()) or (args.variant != 'both' and not found[args.variant]):
        raise no_layout(f"RealBlur-{'/'.join(variants)}", args.src, REALBLUR_LAYOUTS)
    splits = [Split(f'test/RealBlur_{v}', pairs=lambda p=p: p, official=f'980 test pairs (RealBlur-{v}), stored whole')
              for v, p in found.items() if p]
    return run_splits('RealBlur', args.dst, splits, WriteOptions.from_args(args))


# ------------------------------------------------------------------------------------------- verbs
def _gopro_options(p):
    crop_options(512, 256, 'train frames')(p)
    p.add_argument('--split', choices=('train', 'test', 'all'), default='all',
                   help='prepare one split only (then SRC may be that split\'s folder itself); default all')


def _realblur_options(p):
    p.add_argument('--variant', choices=('J', 'R', 'both'), default='both', help='RealBlur-J, -R or both (default)')


VERBS = {
    'gopro': Verb(run_gopro, 'GoPro: train cut into 512x512 crops (step 256), test whole', _gopro_options),
    'hide': Verb(run_hide, 'HIDE test set (GoPro-trained models), whole images'),
    'realblur': Verb(run_realblur, 'RealBlur-J/R test sets, whole images', _realblur_options),
}
