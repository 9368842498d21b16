"""``basicsr-restore prepare paired``: two folders of aligned images -> ``gt.lmdb`` and ``lq.lmdb``.

Pairs are matched by relative path without extension. With ``--crop N`` every pair is cut into N x N
sub-images on a grid of step ``--step`` (the last row/column is moved to the border when more than
``--thresh-size`` pixels would otherwise be left out), as basicsr's ``extract_subimages`` does; keys are
``<relative path>_s<index>`` made safe for basicsr. Images smaller than the crop are stored whole.
"""
import os
import time

import cv2
from tqdm import tqdm

from basicsr_restore.data.lmdb_io import lmdb_group, recover, safe_key
from basicsr_restore.data.paired_dataset import list_images


def grid_positions(length, crop, step, thresh_size):
    if length <= crop:
        return [0]
    positions = list(range(0, length - crop + 1, step))
    if length - (positions[-1] + crop) > thresh_size:
        positions.append(length - crop)
    return positions


def read_image(path):
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError(f"'{path}' is not a readable image")
    return img


def crops(img, crop, step, thresh_size):
    """Yield ``(index, sub_image)`` over the grid; the whole image when ``crop`` is None."""
    if not crop:
        yield None, img
        return
    h, w = img.shape[:2]
    index = 0
    for y in grid_positions(h, crop, step, thresh_size):
        for x in grid_positions(w, crop, step, thresh_size):
            index += 1
            yield index, img[y:y + crop, x:x + crop]


def match_pairs(gt_dir, lq_dir):
    for kind, folder in (('--gt', gt_dir), ('--lq', lq_dir)):
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"{kind} '{folder}' is not a folder")
    gts, lqs = list_images(gt_dir), list_images(lq_dir)
    missing = sorted(set(gts) ^ set(lqs))
    if missing:
        raise ValueError(f"{len(missing)} images have no counterpart between --gt '{gt_dir}' and --lq '{lq_dir}', "
                         f'e.g. {missing[:3]}; both folders must hold the same relative paths.')
    if not gts:
        raise ValueError(f"no images found in --gt '{gt_dir}'")
    return [(rel, gts[rel], lqs[rel]) for rel in sorted(gts)]


def write_pairs(pairs, out_dir, crop=None, step=None, thresh_size=0, compress_level=1, overwrite=False,
                desc='pairs', key_prefix=''):
    """Write ``[(name, gt_img_or_path, lq_img_or_path)]`` into ``out_dir/{gt,lq}.lmdb``; return a summary."""
    start = time.time()
    step = step or crop
    os.makedirs(out_dir, exist_ok=True)
    counts = {'pairs': 0, 'sub_images': 0, 'stored_whole': 0}
    paths = [os.path.join(out_dir, 'gt.lmdb'), os.path.join(out_dir, 'lq.lmdb')]
    with lmdb_group(paths, compress_level, overwrite) as writers:
        gt_w, lq_w = writers[paths[0]], writers[paths[1]]
        for name, gt, lq in tqdm(pairs, desc=desc, unit='img'):
            gt = read_image(gt) if isinstance(gt, str) else gt
            lq = read_image(lq) if isinstance(lq, str) else lq
            if gt.shape[:2] != lq.shape[:2]:
                raise ValueError(f'{name}: GT is {gt.shape[1]}x{gt.shape[0]} but LQ is {lq.shape[1]}x{lq.shape[0]}; '
                                 'pairs must be aligned and of equal size.')
            if crop and min(gt.shape[:2]) < crop:
                counts['stored_whole'] += 1
            base = safe_key(key_prefix + name)
            for (index, gt_crop), (_, lq_crop) in zip(crops(gt, crop, step, thresh_size),
                                                      crops(lq, crop, step, thresh_size)):
                key = base if index is None else f'{base}_s{index:03d}'
                gt_w.put(key, gt_crop)
                lq_w.put(key, lq_crop)
                counts['sub_images'] += 1
            counts['pairs'] += 1
    size = sum(os.path.getsize(os.path.join(d, f)) for k in ('gt', 'lq')
               for d, _, fs in os.walk(os.path.join(out_dir, f'{k}.lmdb')) for f in fs)
    counts.update(out=out_dir, megabytes=round(size / 2**20, 1), seconds=round(time.time() - start, 1))
    return counts


def format_summary(summary):
    return (f"wrote {summary['sub_images']} pairs from {summary['pairs']} images into {summary['out']}/gt.lmdb and "
            f"lq.lmdb ({summary['megabytes']} MB, {summary['seconds']} s)"
            + (f"; {summary['stored_whole']} images smaller than the crop were stored whole"
               if summary['stored_whole'] else ''))


def run(args):
    finished = recover(args.out) if os.path.isdir(args.out) else []
    if finished and not args.overwrite:
        print(f"finished an interrupted preparation: {', '.join(finished)} in {args.out} are complete and were "
              'published together (nothing rebuilt; --overwrite rebuilds).')
        return None
    pairs = match_pairs(args.gt, args.lq)
    summary = write_pairs([(rel, g, q) for rel, g, q in pairs], args.out, args.crop, args.step, args.thresh_size,
                          args.compress_level, args.overwrite)
    print(format_summary(summary))
    return summary
