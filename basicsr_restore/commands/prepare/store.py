"""Writing a split: every image of a scene decoded, cut on one grid, filtered, encoded and stored, on every core.

The expensive part of preparing a set is per image (decoding the source files, PNG encoding of the sub-images), so
:func:`write_streams` hands whole images to ``workers`` processes (:func:`cut_item`) and stores what comes back in
the order of the input: the LMDBs hold the same bytes whatever the number of workers. Values are stored in the
format asked for (``png`` or ``raw``, see ``data/lmdb_io``).
"""
import os
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from basicsr_restore.core.imageio import ImageError, decode
from basicsr_restore.data.lmdb_io import check_format, encode_value, image_shape, lmdb_group, safe_key


@dataclass(frozen=True)
class WriteOptions:
    """How a preparation writes: ``fmt`` (``raw``/``png``), PNG ``compress_level``, ``workers`` processes, and
    whether existing LMDBs are rebuilt (``overwrite``)."""
    fmt: str = 'png'
    compress_level: int = 1
    workers: int = 1
    overwrite: bool = False

    @classmethod
    def from_args(cls, args):
        workers = getattr(args, 'workers', None)
        workers = default_workers() if workers is None else workers
        if workers < 1:
            raise ValueError(f'--workers {workers}: give at least 1 (default: every core, {default_workers()}).')
        level = getattr(args, 'compress_level', 1)
        if not 0 <= level <= 9:
            raise ValueError(f'--compress-level {level}: PNG compression levels are 0 to 9.')
        return cls(check_format(getattr(args, 'format', 'png')), level, workers,
                   bool(getattr(args, 'overwrite', False)))


def default_workers():
    """Every core this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else (os.cpu_count() or 1)


def grid_positions(length, crop, step, thresh_size):
    """Offsets of the crops along one axis: every ``step``, plus one at the border when more than ``thresh_size``
    pixels would be left out (basicsr's ``extract_subimages`` grid)."""
    if length <= crop:
        return [0]
    positions = list(range(0, length - crop + 1, step))
    if length - (positions[-1] + crop) > thresh_size:
        positions.append(length - crop)
    return positions


def crops(img, crop, step, thresh_size):
    """Yield ``(index, sub_image)`` over the grid (index from 1); the whole image (index None) when ``crop`` is
    None or 0."""
    if not crop:
        yield None, img
        return
    h, w = img.shape[:2]
    index = 0
    for y in grid_positions(h, crop, step, thresh_size):
        for x in grid_positions(w, crop, step, thresh_size):
            index += 1
            yield index, img[y:y + crop, x:x + crop]


@dataclass(frozen=True)
class Cut:
    """What is done to each image of a split (sent to the worker processes with every image)."""
    streams: tuple
    crop: int = None
    step: int = None
    thresh_size: int = 0
    drop_blurry: float = 0.0
    fmt: str = 'png'
    compress_level: int = 1
    key_prefix: str = ''


def read_source(path, stream):
    """The source image file ``path`` of ``stream`` decoded, or one ``ImageError`` naming the file and what is wrong
    (a ``ValueError``: the CLI prints it as one line, also when a worker process raised it)."""
    where = f"{stream} source image '{path}'"
    try:
        with open(path, 'rb'):
            pass
    except OSError as exc:
        raise ImageError(f'{where}: cannot be read ({exc.strerror or exc}).') from None
    return decode(path, where)


def cut_item(item, cut):
    """One scene ``(key, {stream: image or path})`` -> ``(records, counts)``: ``records`` are ``(sub_key, {stream:
    (value, shape)})`` with the values encoded in ``cut.fmt``; runs in a worker process."""

    key, sources = item
    imgs = {s: read_source(sources[s], s) if isinstance(sources[s], str) else sources[s] for s in cut.streams}
    shapes = {s: img.shape for s, img in imgs.items()}
    if len({shape[:2] for shape in shapes.values()}) != 1:
        raise ValueError(f'{key}: the views differ in size ({shapes}); all views of one scene must be aligned '
                         'and of equal size.')
    counts = {'stored_whole': int(bool(cut.crop) and min(imgs['gt'].shape[:2]) < cut.crop), 'dropped': 0}
    windows = {s: list(crops(img, cut.crop, cut.step or cut.crop, cut.thresh_size)) for s, img in imgs.items()}
    indices = range(len(windows['gt']))
    if cut.crop and cut.drop_blurry:
        indices = keep_sharpest([w for _, w in windows['gt']], cut.drop_blurry)
        counts['dropped'] = len(windows['gt']) - len(indices)
    base = safe_key(cut.key_prefix + key)
    records = []
    for i in indices:
        index = windows['gt'][i][0]
        sub_key = base if index is None else f'{base}_s{index:03d}'
        values = {}
        for s in cut.streams:
            window = np.ascontiguousarray(windows[s][i][1])
            values[s] = (encode_value(window, cut.fmt, cut.compress_level, f'{sub_key} ({s})'), image_shape(window))
        records.append((sub_key, values))
    return records, counts


def _cut_star(job):
    return cut_item(*job)


def ordered_map(fn, jobs, workers):
    """``fn(job)`` for every job, in order, on ``workers`` processes (in this process when 1), with at most
    ``2 * workers`` results waiting, so memory stays bounded on large sets."""
    if workers <= 1:
        yield from map(fn, jobs)
        return
    from concurrent.futures import ProcessPoolExecutor
    with ProcessPoolExecutor(max_workers=workers) as pool:
        pending = deque()
        for job in jobs:
            pending.append(pool.submit(fn, job))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def write_streams(items, out_dir, cut, write=WriteOptions(), desc='images'):
    """The one LMDB writer of the preparers: ``[(key, {stream: image or path})]`` into ``out_dir/<stream>.lmdb``,
    every stream cut on the same grid (``<key>_s<index>``, the index of the window on the full grid, so dropped
    windows leave gaps) and, with ``cut.drop_blurry``, without the least sharp windows of each image (ranked on the
    ``gt`` stream). All LMDBs are published together (``lmdb_io.lmdb_group``). Returns the counts."""
    from tqdm import tqdm


    start = time.time()
    cut = Cut(**{**cut.__dict__, 'fmt': write.fmt, 'compress_level': write.compress_level})
    counts = {'pairs': 0, 'sub_images': 0, 'stored_whole': 0, 'dropped': 0}
    os.makedirs(out_dir, exist_ok=True)
    lmdb_paths = {s: os.path.join(out_dir, f'{s}.lmdb') for s in cut.streams}
    with lmdb_group(list(lmdb_paths.values()), write.compress_level, write.overwrite, write.fmt) as by_path:
        writers = {s: by_path[p] for s, p in lmdb_paths.items()}
        results = ordered_map(_cut_star, ((item, cut) for item in items), min(write.workers, max(len(items), 1)))
        for records, item_counts in tqdm(results, total=len(items), desc=desc, unit='img'):
            for sub_key, values in records:
                for s, (value, shape) in values.items():
                    writers[s].put_value(sub_key, value, shape)
            counts['sub_images'] += len(records)
            counts['pairs'] += 1
            counts['stored_whole'] += item_counts['stored_whole']
            counts['dropped'] += item_counts['dropped']
    counts['seconds'] = round(time.time() - start, 1)
    counts['format'] = write.fmt
    return counts


def folder_megabytes(paths):
    total = 0
    for path in paths:
        for folder, _, files in os.walk(path):
            total += sum(os.path.getsize(os.path.join(folder, f)) for f in files)
    return total / 2**20


def write_pairs(pairs, out_dir, crop=None, step=None, thresh_size=0, write=WriteOptions(), desc='pairs',
                key_prefix=''):
    """``[(name, gt image or path, lq image or path)]`` into ``out_dir/{gt,lq}.lmdb`` (:func:`write_streams`);
    the counts with ``out`` and ``megabytes``."""
    items = [(name, {'gt': gt, 'lq': lq}) for name, gt, lq in pairs]
    counts = write_streams(items, out_dir, Cut(('gt', 'lq'), crop, step, thresh_size, key_prefix=key_prefix), write,
                           desc)
    counts.update(out=out_dir, megabytes=folder_megabytes([os.path.join(out_dir, f'{k}.lmdb') for k in ('gt', 'lq')]))
    return counts


def format_summary(summary):
    """One line on what :func:`write_pairs` wrote."""
    return (f"wrote {summary['sub_images']} pairs from {summary['pairs']} images into {summary['out']}/gt.lmdb and "
            f"lq.lmdb ({summary['format']} values, {summary['megabytes']:.1f} MB, {summary['seconds']} s)"
            + (f"; {summary['stored_whole']} images smaller than the crop were stored whole"
               if summary['stored_whole'] else ''))


def sharpness_scores(gt_crops):
    """DPDNet's "sharpness energy" of each crop, as its and Restormer's patch filters compute it: on the grey
    image, the sum of Sobel gradient magnitudes for kernel sizes 3, 7, 11 and 15, each min-max normalised
    over the crops of one image, multiplied together. Higher is sharper."""
    import cv2
    total = np.ones(len(gt_crops))
    for ksize in (3, 7, 11, 15):
        energy = []
        for crop in gt_crops:
            grey = crop if crop.ndim == 2 else cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
            gx = cv2.Sobel(grey, cv2.CV_64F, 1, 0, ksize=ksize)
            gy = cv2.Sobel(grey, cv2.CV_64F, 0, 1, ksize=ksize)
            energy.append(np.sqrt(gx * gx + gy * gy).sum())
        energy = np.asarray(energy) - np.min(energy)
        top = energy.max()
        total *= energy / top if top > 0 else energy  # all equal: every score 0, the first ones are dropped
    return total


def keep_sharpest(gt_crops, drop_fraction):
    """Indices of the crops kept when the ``int(drop_fraction * n)`` least sharp ones are dropped (ties: the
    earlier crop goes first, as the official loop of ``argmin`` does)."""
    n = len(gt_crops)
    drop = int(drop_fraction * n)
    if drop <= 0:
        return list(range(n))
    order = np.argsort(sharpness_scores(gt_crops), kind='stable')
    dropped = set(order[:drop].tolist())
    return [i for i in range(n) if i not in dropped]
