"""``basicsr-restore prepare paired``: two folders of aligned images -> ``gt.lmdb`` and ``lq.lmdb``.

Pairs are matched by relative path without extension. With ``--crop N`` every pair is cut into N x N
sub-images on a grid of step ``--step`` (the last row/column is moved to the border when more than
``--thresh-size`` pixels would otherwise be left out), as basicsr's ``extract_subimages`` does; keys are
``<relative path>_s<index>`` made safe for basicsr. Images smaller than the crop are stored whole.
"""
import os

from basicsr_restore.commands.prepare.common import Verb, add_write_options
from basicsr_restore.commands.prepare.store import WriteOptions, format_summary, write_pairs
from basicsr_restore.core.imageio import images_in
from basicsr_restore.data.lmdb_io import recover


def match_pairs(gt_dir, lq_dir):
    for kind, folder in (('--gt', gt_dir), ('--lq', lq_dir)):
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"{kind} '{folder}' is not a folder")
    gts, lqs = images_in(gt_dir, recursive=True), images_in(lq_dir, recursive=True)
    missing = sorted(set(gts) ^ set(lqs))
    if missing:
        raise ValueError(f"{len(missing)} images have no counterpart between --gt '{gt_dir}' and --lq '{lq_dir}', "
                         f'e.g. {missing[:3]}; both folders must hold the same relative paths.')
    if not gts:
        raise ValueError(f"no images found in --gt '{gt_dir}'")
    return [(rel, gts[rel], lqs[rel]) for rel in sorted(gts)]


def run(args):
    finished = recover(args.out) if os.path.isdir(args.out) else []
    if finished and not args.overwrite:
        print(f"finished an interrupted preparation: {', '.join(finished)} in {args.out} are complete and were "
              'published together (nothing rebuilt; --overwrite rebuilds).')
        return None
    pairs = match_pairs(args.gt, args.lq)
    summary = write_pairs([(rel, g, q) for rel, g, q in pairs], args.out, args.crop, args.step, args.thresh_size,
                          WriteOptions.from_args(args))
    print(format_summary(summary))
    return summary


def _options(p):
    p.add_argument('--gt', required=True, help='folder of ground-truth images')
    p.add_argument('--lq', required=True, help='folder of degraded images (same relative paths)')
    p.add_argument('--out', required=True, help='output folder; gets gt.lmdb and lq.lmdb')
    p.add_argument('--crop', type=int, help='cut into CROP x CROP sub-images (default: keep whole images)')
    p.add_argument('--step', type=int, help='grid step of the sub-images (default: CROP)')
    p.add_argument('--thresh-size', type=int, default=0,
                   help='move the last row/column of crops to the border when more than this is left (default 0)')
    p.add_argument('--compress-level', type=int, default=1, help='PNG compression 0-9 (default 1, as basicsr)')
    p.add_argument('--overwrite', action='store_true',
                   help='replace existing LMDBs (only once the new ones are complete)')
    add_write_options(p)


VERBS = {'paired': Verb(run, 'two folders of aligned images -> gt.lmdb + lq.lmdb (optionally cropped)', _options,
                        src_dst=False)}
