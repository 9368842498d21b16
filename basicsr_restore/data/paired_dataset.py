"""PairedRestorationDataset: degraded/clean pairs from LMDBs or folders, 8- or 16-bit.

The dataset reads N aligned *streams* of each scene (:attr:`PairedRestorationDataset.STREAMS`): the target
``gt`` and the degraded views, which are cut, flipped and rotated together and stacked along the channels into
``lq``. This class has one view (``lq``); DPDD's dual-pixel dataset is the same class with the streams ``gt``,
``lqL``, ``lqR`` declared (``dpdd_dataset.py``).

Options (``datasets.<phase>``), a superset of basicsr's PairedImageDataset:

* ``dataroot_gt``, ``dataroot_lq``: two ``*.lmdb`` folders (written by ``basicsr-restore prepare`` or by
  basicsr's ``make_lmdb_from_imgs``) or two image folders (searched recursively, paired by relative
  path; ``filename_tmpl`` maps an LQ stem to its GT stem, default ``'{}'``);
* ``io_backend.type``: ``lmdb`` or ``disk`` (default: ``lmdb`` when both roots end with ``.lmdb``);
* ``gt_size``: training patch size (training only); ``use_hflip``/``use_flip``, ``use_rot``
  (``geometric_augs`` turns both on);
* ``channels``: channels every image must have (default 3); ``scale``: LQ size x scale = GT size (1);
* ``val_crop_size``: outside training, score a centre crop of this size (top/left ``(size - crop) // 2``, as
  Restormer's validation crops; images smaller than the crop are used whole); default: whole images;
* ``bit_depth: 8``: reduce 16-bit images to 8 bits by the package's one rule (the top byte, as OpenCV's
  ``IMREAD_COLOR`` does), the
  convention of the published single-image DPDD numbers; default: keep what is stored;
* ``meta_info_file``: a text file listing the keys to use (first word of each line, ``.png`` optional), e.g.
  the ``indoor.txt`` / ``outdoor.txt`` subsets of DPDD's test set; default: every pair.

* ``integer_batches``: samples hold the integer pixels (uint8/uint16, C x H x W, RGB) and the model converts the
  batch to float on its device (a quarter of the bytes to move for 8-bit data; default in training), or ``false``:
  float32 in [0, 1] here (default outside training, and what a model that is not this package's needs).

LMDBs in both value formats are read (``png``, basicsr's, and ``raw``, see ``lmdb_io``; the format is what the LMDB
records). Images are never converted before they are cut: a raw value is a view of the memory-mapped LMDB and only
the training patch (or validation crop) is copied; a PNG is decoded, then cut. Patches are flipped while the pixels
are still integers; uint8 becomes float as ``value / 255``, uint16 as ``value / 65535`` (16-bit data stays 16-bit),
the same numbers in every format and on every device.
Any problem with the data raises one error naming the dataset, the image key and the option to fix.
"""
import os
import random
from contextlib import ExitStack

import numpy as np
import torch
from basicsr.data.transforms import augment
from basicsr.utils import img2tensor
from torch.utils import data

from basicsr_restore.core.errors import DataError
from basicsr_restore.core.imageio import decode, images_in, to_8bit, to_float
from basicsr_restore.core.option_rules import Bool, Choice, Int, Items, Mapping, Path, Text
from basicsr_restore.core.registry import register
from basicsr_restore.data.lmdb_io import (
    FORMAT_NAME,
    RawImage,
    check_published,
    count_entries,
    read_format,
    read_meta_info,
    shared_env,
)


def centre_window(h, w, size, scale=1):
    """``(top, left, height, width)`` of the centre ``size`` x ``size`` window of an ``h`` x ``w`` degraded view (the
    GT is ``scale`` times larger), at Restormer's position ``((h - size) // 2, (w - size) // 2)``; smaller sides are
    kept whole."""
    ch, cw = min(size // scale, h), min(size // scale, w)
    return (h - ch) // 2, (w - cw) // 2, ch, cw


@register('dataset')
class PairedRestorationDataset(data.Dataset):
    """Aligned streams of one scene: the target ``gt`` and one or more degraded views, stacked along the channels
    into ``lq``. This class: ``gt`` and ``lq``; a subclass with other streams is a declaration (:attr:`STREAMS`,
    its option keys, :meth:`file_candidates`). See the module docstring for the options."""

    #: stream -> the option naming its root; the first is the target, the others the degraded views (``lq`` is
    #: their channels stacked, in this order), matched on disk by the relative paths of the first view
    STREAMS = {'gt': 'dataroot_gt', 'lq': 'dataroot_lq'}
    #: stream -> what to say when its option is missing
    STREAM_HINTS = {}
    #: the keys of a dataset section this class reads (with the dataloader's; anything else is an option error)
    #: the keys of a dataset section this class reads, with what they take (with the dataloader's; anything else is
    #: an option error)
    OPTION_KEYS = {
        'dataroot_gt': Path('folder'), 'dataroot_lq': Path('folder'), 'io_backend': Mapping(),
        'gt_size': Int(1, null=True), 'use_hflip': Bool(), 'use_flip': Bool(), 'use_rot': Bool(),
        'geometric_augs': Bool(), 'channels': Int(1), 'val_crop_size': Int(1, null=True),
        'bit_depth': Choice(8, 16, None), 'meta_info_file': Path('file', null=True), 'filename_tmpl': Text(),
        'mini_batch_sizes': Items(Int(1), at_least=1), 'iters': Items(Int(1), at_least=1),
        'gt_sizes': Items(Int(1), at_least=1), 'integer_batches': Bool()}
    #: ``io_backend.type``
    BACKENDS = ('lmdb', 'disk')

    def __init__(self, opt):
        super().__init__()
        self.opt = opt
        self.name = opt.get('name', 'paired')
        self.phase = opt.get('phase', 'train')
        self.where = f"dataset '{self.name}' ({self.phase})"
        self.scale = int(opt.get('scale') or 1)
        self.channels = int(opt.get('channels', 3))
        self.gt_size = opt.get('gt_size')
        self.hflip = bool(opt.get('use_hflip', opt.get('use_flip', opt.get('geometric_augs', False))))
        self.rot = bool(opt.get('use_rot', opt.get('geometric_augs', False)))
        self.val_crop_size = opt.get('val_crop_size')
        self.bit_depth = opt.get('bit_depth')
        if self.bit_depth not in (None, 8, 16):
            raise ValueError(f'{self.where}: option bit_depth must be 8 or 16 (or absent), got {self.bit_depth!r}.')
        self.check_options(opt)
        self.roots = {stream: self._root(stream, option) for stream, option in self.STREAMS.items()}
        self.views = list(self.STREAMS)[1:]
        default = 'lmdb' if all(str(r).rstrip('/').endswith('.lmdb') for r in self.roots.values()) else 'disk'
        self.backend = (opt.get('io_backend') or {}).get('type', default)
        if self.phase == 'train':
            if not self.gt_size:
                raise ValueError(f'{self.where}: option gt_size (the training patch size) is missing.')
            if self.gt_size % self.scale:
                raise ValueError(f'{self.where}: gt_size {self.gt_size} must be a multiple of scale {self.scale}.')
        self.integer_batches = opt.get('integer_batches', self.phase == 'train')
        if not isinstance(self.integer_batches, bool):
            raise ValueError(f'{self.where}: option integer_batches must be true or false, got '
                             f'{self.integer_batches!r}.')
        self.shapes = {}
        if self.backend == 'lmdb':
            self.keys = self._lmdb_keys()
        elif self.backend == 'disk':
            self.keys = self._disk_files()
        else:
            raise ValueError(f"{self.where}: io_backend.type must be 'lmdb' or 'disk', got {self.backend!r}.")
        if opt.get('meta_info_file'):
            self.keys = self._select_keys(opt['meta_info_file'])
        if not self.keys:
            raise ValueError(f"{self.where}: no image pairs found in {', '.join(self.roots.values())}.")
        self._envs, self._formats = None, None

    def batch_collate(self):
        """The training loader's collate function for this set (:func:`collate_one_buffer` for integer batches), or
        None for the default one."""
        return collate_one_buffer if self.integer_batches else None

    def check_options(self, opt):
        """Rules of a subclass's own (called before the roots are looked at)."""

    def _root(self, stream, option):
        root = self.opt.get(option)
        if root is None:
            raise ValueError(f'{self.where}: option {option} is missing{self.STREAM_HINTS.get(stream, "")}.')
        if not os.path.isdir(root):
            raise FileNotFoundError(f"{self.where}: {option} '{root}' does not exist. Prepare the data "
                                    '(`basicsr-restore prepare ...`) or fix the option.')
        return root

    @staticmethod
    def label(stream):
        return stream.upper() if stream in ('gt', 'lq') else stream

    # ------------------------------------------------------------------------------------ indexing
    def _lmdb_keys(self):
        keys = {}
        for stream, root in self.roots.items():
            if not str(root).rstrip('/').endswith('.lmdb'):
                raise ValueError(f"{self.where}: io_backend lmdb needs {self.STREAMS[stream]} ending with .lmdb, "
                                 f"got '{root}'.")
            check_published(root, self.where)
            entries = read_meta_info(root)
            stored = count_entries(root)
            if stored < len(entries):
                raise ValueError(f"{self.where}: {root}/meta_info.txt lists {len(entries)} images but the LMDB holds "
                                 f'{stored}: it is incomplete. Prepare it again.')
            keys[stream] = [k for k, _ in entries]
            self.shapes[stream] = dict(entries)
        for view in self.views:
            only_gt = sorted(set(keys['gt']) - set(keys[view]))
            only_view = sorted(set(keys[view]) - set(keys['gt']))
            if only_gt or only_view:
                label = self.label(view)
                raise ValueError(f'{self.where}: the GT and {label} LMDBs hold different keys (only in GT: '
                                 f'{only_gt[:3]}, only in {label}: {only_view[:3]}); dataroot_gt and '
                                 f'{self.STREAMS[view]} must come from the same preparation.')
        return sorted(keys['gt'])

    def file_candidates(self, stream, rel):
        """Relative stems (no extension) that can hold ``stream``'s image of the pair indexed ``rel`` (the first
        view's relative stem). Default: the same stem."""
        return [rel]

    def _disk_files(self):
        found = {stream: images_in(root, recursive=True) for stream, root in self.roots.items()}
        first = self.views[0]
        tmpl = self.opt.get('filename_tmpl', '{}')
        self.paths, missing = {}, {}
        for rel, path in found[first].items():
            head, stem = os.path.split(rel)
            gt_rel = '/'.join(p for p in (head, tmpl.format(stem)) if p)
            if gt_rel not in found['gt']:
                raise FileNotFoundError(f"{self.where}: {self.label(first)} image '{path}' has no GT counterpart "
                                        f"'{gt_rel}.*' in dataroot_gt '{self.roots['gt']}' (filename_tmpl {tmpl!r}).")
            self.paths[rel] = {'gt': found['gt'][gt_rel], first: path}
            for view in self.views[1:]:
                match = next((found[view][c] for c in self.file_candidates(view, rel) if c in found[view]), None)
                if match is None:
                    missing.setdefault(view, []).append(rel)
                self.paths[rel][view] = match
        for view, rels in missing.items():
            raise FileNotFoundError(f"{self.where}: no {self.label(view)} image in {self.STREAMS[view]} "
                                    f"'{self.roots[view]}' for {len(rels)} images, e.g. {rels[:3]} (expected one of "
                                    f'the names {self.file_candidates(view, rels[0])}).')
        return sorted(self.paths)

    def _select_keys(self, path):
        """The pairs named in ``meta_info_file`` (basicsr's meta_info format or plain keys), in its order."""
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{self.where}: meta_info_file '{path}' does not exist.")
        with open(path, encoding='utf-8') as f:
            wanted = [line.split()[0] for line in f if line.strip() and not line.startswith('#')]
        wanted = [w[:-4] if w.lower().endswith('.png') else w for w in wanted]
        held = set(self.keys)
        unknown = [w for w in wanted if w not in held]
        if unknown:
            raise ValueError(f"{self.where}: meta_info_file '{path}' names {len(unknown)} images that the dataset "
                             f'does not hold, e.g. {unknown[:3]}; it belongs to another preparation.')
        return wanted

    def __len__(self):
        return len(self.keys)

    # ------------------------------------------------------------------------------------ reading
    def _read(self, stream, key, stack):
        """``(image, where)``: a PNG or a file is decoded now (:class:`Decoded`); a raw LMDB value is a view of the
        mapped value (:class:`~basicsr_restore.data.lmdb_io.RawImage`, valid while ``stack`` holds its
        transaction), from which only the patch is copied."""
        where = f'{self.where}: {stream} image {key!r}'
        if self.backend != 'lmdb':
            path = self.paths[key][stream]
            where = f"{self.where}: {stream} image '{path}'"
            with open(path, 'rb') as f:
                return Decoded(decode(f.read(), where)), where
        if self._envs is None:  # opened lazily, once per worker process
            self._envs = {k: shared_env(r) for k, r in self.roots.items()}
            self._formats = {k: read_format(r) for k, r in self.roots.items()}
        raw = self._formats[stream] == 'raw'
        txn = stack.enter_context(self._envs[stream].begin(write=False, buffers=raw))
        buf = txn.get(key.encode('ascii'))
        if buf is None:
            raise KeyError(f"{where} is listed in {self.roots[stream]}/meta_info.txt but not stored in the LMDB. "
                           'Prepare it again.')
        where = f'{where} in {self.roots[stream]}'
        if raw:
            return RawImage.parse(buf, where, self.shapes[stream].get(key)), where
        if RawImage.is_raw(buf):
            raise ValueError(f'{where} is a raw value but the LMDB has no {FORMAT_NAME} saying so (a folder copied '
                             'without it?). Prepare it again, or convert it with `basicsr-restore prepare '
                             'lmdb-format`.')
        return Decoded(decode(buf, where)), where

    def _check(self, key, stored, wheres):
        """Channels and alignment of the stored images, from their shapes (nothing is read)."""
        for img, where in zip(stored, wheres):
            if img.shape[2] != self.channels:
                raise ValueError(f'{where} has {img.shape[2]} channels, the dataset expects {self.channels} '
                                 '(option channels). Convert the images or set the option.')
        gt = stored[0].shape
        for view, img in zip(self.views, stored[1:]):
            lh, lw = img.shape[:2]
            if gt[:2] != (lh * self.scale, lw * self.scale):
                raise ValueError(f'{self.where}: image {key!r}: GT is {gt[0]}x{gt[1]} but {self.label(view)} is '
                                 f'{lh}x{lw} (scale {self.scale}); the images must be aligned.')

    def _window(self, key, stored):
        """``(top, left, height, width)`` in the degraded views of the part to keep, or None for all of it: a random
        ``gt_size`` patch in training, the centre ``val_crop_size`` crop when that is set."""
        lh, lw = stored[1].shape[:2]
        if self.phase == 'train':
            size = self.gt_size // self.scale
            if lh < size or lw < size:
                raise ValueError(f"{self.where}: image {key!r} in {self.roots['gt']} is {stored[0].shape[0]}x"
                                 f'{stored[0].shape[1]}, smaller than gt_size {self.gt_size}. Lower gt_size or prepare '
                                 'larger crops (or whole frames: --crop 0).')
            return random.randint(0, lh - size), random.randint(0, lw - size), size, size
        if self.val_crop_size:
            return centre_window(lh, lw, self.val_crop_size, self.scale)
        return None

    def __getitem__(self, index):
        """One sample (:meth:`_sample`). Whatever is wrong with its data is one
        :class:`~basicsr_restore.core.errors.DataError` naming the dataset, its phase, the key and the problem, which
        the runners print as one line, also when a DataLoader worker read the sample (the traceback goes to the run's
        log file)."""
        try:
            return self._sample(index)
        except DataError:
            raise
        except (ValueError, KeyError, OSError, _lmdb_error()) as exc:
            text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            if not text.startswith(self.where):
                text = f'{self.where}: image {self.keys[index]!r}: {text}'
            raise DataError(text) from exc

    def _sample(self, index):
        key = self.keys[index]
        with ExitStack() as stack:
            read = [self._read(stream, key, stack) for stream in self.STREAMS]
            stored, wheres = [img for img, _ in read], [where for _, where in read]
            self._check(key, stored, wheres)
            window = self._window(key, stored)
            if window is None:
                imgs = [img.whole() for img in stored]
            else:
                top, left, h, w = window
                s = self.scale
                imgs = [stored[0].window(top * s, left * s, h * s, w * s)] + [
                    img.window(top, left, h, w) for img in stored[1:]]
        if self.bit_depth == 8:
            imgs = [to_8bit(img) for img in imgs]
        if self.phase == 'train':
            imgs = augment(imgs, self.hflip, self.rot)
        tensors = self._convert(imgs, wheres)
        lmdb = self.backend == 'lmdb'
        return {'lq': torch.cat(tensors[1:], 0) if len(tensors) > 2 else tensors[1], 'gt': tensors[0],
                'lq_path': key if lmdb else self.paths[key][self.views[0]],
                'gt_path': key if lmdb else self.paths[key]['gt']}

    def _convert(self, imgs, wheres):
        """HxWxC integer images -> C x H x W tensors (RGB): kept as integers (``integer_batches``, the model converts
        them on its device, :func:`~basicsr_restore.core.imageio.batch_to_float`), or float32 in [0, 1] here."""
        if not self.integer_batches:
            imgs = self._to_float(imgs, wheres)
        return img2tensor([np.ascontiguousarray(img) for img in imgs], bgr2rgb=self.channels == 3, float32=False)

    @staticmethod
    def _to_float(imgs, wheres):
        return [to_float(img, where) for img, where in zip(imgs, wheres)]


def _lmdb_error():
    import lmdb
    return lmdb.Error


class Decoded:
    """A decoded image (PNG value or file), with the interface of :class:`~basicsr_restore.data.lmdb_io.RawImage`."""

    def __init__(self, img):
        self.array = img[:, :, None] if img.ndim == 2 else img

    @property
    def shape(self):
        return self.array.shape

    def window(self, top, left, height, width):
        return self.array[top:top + height, left:left + width]

    def whole(self):
        return self.array


def collate_one_buffer(items):
    """``default_collate``, with the integer pixel tensors of a training batch (``lq`` and ``gt`` of the same dtype)
    stacked into one buffer: a worker process then hands the main process one shared storage per batch instead of one
    per tensor, which is what the loader's cost per batch comes down to once nothing is decoded. The tensors are the
    same as ``default_collate``'s; other batches are ``default_collate``'s."""
    from torch.utils.data import default_collate, get_worker_info
    keys = [k for k in ('lq', 'gt') if k in items[0]]
    first = [items[0][k] for k in keys]
    if len(keys) < 2 or any(t.is_floating_point() for t in first) or len({t.dtype for t in first}) > 1:
        return default_collate(items)
    batch = default_collate([{k: v for k, v in item.items() if k not in keys} for item in items])
    shapes = [(len(items),) + tuple(t.shape) for t in first]
    sizes = [int(np.prod(shape)) for shape in shapes]
    buffer = torch.empty(sum(sizes), dtype=first[0].dtype)
    if get_worker_info() is not None:
        buffer.share_memory_()
    offset = 0
    for key, shape, size in zip(keys, shapes, sizes):
        batch[key] = buffer[offset:offset + size].view(shape)
        torch.stack([item[key] for item in items], out=batch[key])
        offset += size
    return batch

