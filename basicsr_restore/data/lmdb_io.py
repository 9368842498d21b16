"""LMDB of images in basicsr's layout, written safely and read without losing bit depth.

Layout (what basicsr's ``make_lmdb_from_imgs`` writes and ``paired_paths_from_lmdb`` reads): a folder
``<name>.lmdb`` holding the LMDB files and ``meta_info.txt`` with one line ``<key>.png (h,w,c) <level>``
per image. Each value is stored in one of two formats (:data:`FORMATS`), recorded in ``value_format.json`` beside
``meta_info.txt`` so that a reader never guesses (an LMDB without that file is basicsr's: PNG):

* ``png``: the image encoded as PNG (16-bit images stay 16-bit), what basicsr writes; small on disk, but
  decoding is most of a training sample's time;
* ``raw``: the pixels as stored in memory (uint8 or uint16, H x W x C, BGR as OpenCV decodes a PNG) after a
  32-byte header (:class:`RawImage`: a magic word, the pixel type and the shape). Nothing to decode: a training
  patch is cut from the memory-mapped value and only the patch is copied. Larger on disk (2-3x PNG for photos).

What this writer adds:

* the map grows when full (basicsr sizes it from the first image and fails on small sets);
* keys are made safe: basicsr cuts keys at the first dot, so any character other than letters, digits,
  ``-``, ``_`` and ``/`` becomes ``_``, and two images that would share a key are an error;
* an interrupted write never looks complete: everything goes to ``<name>.lmdb.partial`` and the folder
  is renamed only after ``meta_info.txt`` was written; an existing LMDB is never replaced unless asked;
* the LMDBs of one pair (``gt.lmdb`` + ``lq.lmdb``, or DPDD's four) are published together
  (:func:`lmdb_group`): all are written completely as ``*.partial`` first, then a commit record
  (``.basicsr-restore-commit``) names them, then they are renamed, then the record goes. A process killed
  between the renames leaves the record: readers refuse the half-published folder (:func:`check_published`)
  and the next preparation finishes the renames (:func:`recover`) without ``--overwrite``.
"""
import json
import os
import re
import shutil
import struct
from contextlib import ExitStack, contextmanager

import numpy as np

from basicsr_restore.core.imageio import atomic_path, decode

_UNSAFE = re.compile(r'[^A-Za-z0-9_\-/]')
_META = re.compile(r'^(?P<key>\S+?)(?:\.png)?\s+\((?P<h>\d+),\s*(?P<w>\d+),\s*(?P<c>\d+)\)')
META_NAME = 'meta_info.txt'
COMMIT_NAME = '.basicsr-restore-commit'
FORMAT_NAME = 'value_format.json'
#: value formats: what each costs is said in the module docstring
FORMATS = ('png', 'raw')


def safe_key(text):
    """A key basicsr can read back: ASCII letters, digits, ``-``, ``_`` and ``/`` only."""
    key = _UNSAFE.sub('_', str(text).replace(os.sep, '/')).strip('/')
    if not key:
        raise ValueError(f'cannot make an LMDB key out of {text!r}')
    return key


def image_shape(img):
    return (img.shape[0], img.shape[1], 1 if img.ndim == 2 else img.shape[2])


def encode_png(img, compress_level=1, where='image'):
    if img.dtype not in (np.uint8, np.uint16):
        raise ValueError(f'{where}: only 8- and 16-bit images can be stored, got {img.dtype}')
    import cv2
    ok, buf = cv2.imencode('.png', img, [cv2.IMWRITE_PNG_COMPRESSION, compress_level])
    if not ok:
        raise ValueError(f'{where}: PNG encoding failed')
    return buf.tobytes()


def check_format(fmt, what='--format'):
    if fmt not in FORMATS:
        raise ValueError(f"{what} {fmt!r}: use one of {', '.join(FORMATS)}.")
    return fmt


class RawImage:
    """A ``raw`` LMDB value: 32 bytes of header (magic, pixel type, channels, height, width), then the pixels
    row-major, H x W x C. :meth:`parse` checks the value against its header (and the shape ``meta_info.txt``
    promises) without copying the pixels; :meth:`window` copies only the part asked for."""

    MAGIC = b'BRSRRAW1'
    HEADER = struct.Struct('<8sBBHII')  # magic, pixel type, reserved, channels, height, width
    SIZE = 32
    DTYPES = {1: np.dtype(np.uint8), 2: np.dtype(np.uint16)}

    def __init__(self, array):
        self.array = array

    @property
    def shape(self):
        return self.array.shape

    @property
    def dtype(self):
        return self.array.dtype

    @classmethod
    def encode(cls, img, where='image'):
        if img.dtype not in (np.uint8, np.uint16):
            raise ValueError(f'{where}: only 8- and 16-bit images can be stored, got {img.dtype}')
        h, w, c = image_shape(img)
        code = next(k for k, v in cls.DTYPES.items() if v == img.dtype)
        header = cls.HEADER.pack(cls.MAGIC, code, 0, c, h, w).ljust(cls.SIZE, b'\0')
        return header + np.ascontiguousarray(img).tobytes()

    @classmethod
    def is_raw(cls, buf):
        return bytes(buf[:len(cls.MAGIC)]) == cls.MAGIC

    @classmethod
    def parse(cls, buf, where, expected_shape=None):
        """The value ``buf`` (bytes or a memoryview of the mapped LMDB) as an image, or one clear error."""
        fix = 'The LMDB is damaged: prepare it again (`basicsr-restore prepare ... --overwrite`).'
        if len(buf) < cls.SIZE or not cls.is_raw(buf):
            raise ValueError(f'{where}: the value is not a raw image (no raw header; {len(buf)} bytes) although '
                             f'{FORMAT_NAME} says raw. {fix}')
        _, code, _, c, h, w = cls.HEADER.unpack_from(buf)
        dtype = cls.DTYPES.get(code)
        if dtype is None:
            raise ValueError(f'{where}: unknown pixel type code {code} in the raw header. {fix}')
        need = cls.SIZE + h * w * c * dtype.itemsize
        if len(buf) != need:
            raise ValueError(f'{where}: the raw value holds {len(buf)} bytes but its header says {h}x{w}x{c} '
                             f'{dtype.name} ({need} bytes): it is truncated or damaged. {fix}')
        if expected_shape is not None and tuple(expected_shape) != (h, w, c):
            raise ValueError(f'{where}: the raw value is {h}x{w}x{c} but {META_NAME} says '
                             f"{'x'.join(map(str, expected_shape))}. {fix}")
        return cls(np.frombuffer(buf, dtype, count=h * w * c, offset=cls.SIZE).reshape(h, w, c))

    def window(self, top, left, height, width):
        """A copy of ``[top:top+height, left:left+width]`` (what is cut, nothing else, is copied)."""
        return np.array(self.array[top:top + height, left:left + width])

    def whole(self):
        return np.array(self.array)


def encode_value(img, fmt, compress_level=1, where='image'):
    """The LMDB value of ``img`` in format ``fmt``."""
    return RawImage.encode(img, where) if fmt == 'raw' else encode_png(img, compress_level, where)


def decode_value(buf, fmt, where):
    """The image (uint8/uint16, HxWxC BGR, a copy) of one stored value in format ``fmt``."""
    if fmt == 'raw':
        return RawImage.parse(buf, where).whole()
    return decode(buf, where)


def read_format(lmdb_path):
    """``'png'`` or ``'raw'``: what ``value_format.json`` of ``lmdb_path`` records (``png`` without the file, an
    LMDB of basicsr's)."""
    path = os.path.join(lmdb_path, FORMAT_NAME)
    if not os.path.isfile(path):
        return 'png'
    try:
        with open(path, encoding='utf-8') as f:
            fmt = json.load(f).get('format')
    except (ValueError, AttributeError) as exc:
        raise ValueError(f"{path} is damaged ({exc}); it must hold {{\"format\": \"png\"}} or "
                         '{"format": "raw"}. Prepare the LMDB again.') from None
    if fmt not in FORMATS:
        raise ValueError(f"{path}: format {fmt!r} is not one of {', '.join(FORMATS)}; prepare the LMDB again.")
    return fmt


def read_meta_info(lmdb_path):
    """``[(key, (h, w, c)), ...]`` from ``<lmdb_path>/meta_info.txt``."""
    meta = os.path.join(lmdb_path, META_NAME)
    if not os.path.isfile(meta):
        raise FileNotFoundError(f"{meta} is missing: '{lmdb_path}' is not a complete LMDB written by basicsr "
                                'or basicsr-restore (an interrupted write?). Prepare it again.')
    entries = []
    with open(meta, encoding='utf-8') as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            m = _META.match(line.strip())
            if m is None:
                raise ValueError(f"{meta} line {number}: expected '<key>.png (h,w,c) level', got {line.strip()!r}")
            entries.append((m['key'], (int(m['h']), int(m['w']), int(m['c']))))
    return entries


def open_lmdb(path, readonly=True):
    import lmdb
    return lmdb.open(path, readonly=readonly, lock=False, readahead=False, meminit=False)


_ENVS = {}


def _env_key(path):
    data = os.path.join(path, 'data.mdb')
    stat = os.stat(data) if os.path.exists(data) else None
    return os.getpid(), os.path.realpath(path), stat and stat.st_ino, stat and stat.st_mtime_ns  # a rewrite is new


def shared_env(path):
    """One read-only LMDB environment per file and process: lmdb refuses to open the same environment twice in
    a process, which happens when several datasets (a test set and its indoor/outdoor subsets) read one LMDB.
    Worker processes (another pid) open their own."""
    key = _env_key(path)
    if key not in _ENVS:
        _ENVS[key] = open_lmdb(path)
    return _ENVS[key]


def count_entries(path):
    """Entries stored in an LMDB, without leaving it open (DataLoader workers forked later must open it
    themselves), unless this process reads it already."""
    env = _ENVS.get(_env_key(path))
    if env is not None:
        return env.stat()['entries']
    env = open_lmdb(path)
    try:
        return env.stat()['entries']
    finally:
        env.close()



class LmdbWriter:
    """Write images into ``path`` (``*.lmdb``) in format ``fmt`` (``png`` or ``raw``), with basicsr's meta_info and
    the format record; see the module docstring.

    Use as a context manager; the LMDB appears under its final name only when the block ends without error::

        with LmdbWriter('train/gt.lmdb') as w:
            w.put('scene1_000_s001', img)
    """

    def __init__(self, path, compress_level=1, overwrite=False, map_size=64 << 20, commit_every=200,
                 publish_on_exit=True, fmt='png'):
        self.fmt = check_format(fmt)
        if not str(path).endswith('.lmdb'):
            raise ValueError(f"LMDB output '{path}' must end with .lmdb (basicsr's readers require it)")
        if os.path.exists(path) and not overwrite:
            raise FileExistsError(f"'{path}' already exists; it is left untouched. Remove it or pass --overwrite.")
        self.path, self.partial = str(path), f'{path}.partial'
        self.compress_level, self.map_size, self.commit_every = compress_level, map_size, commit_every
        self.meta, self._keys, self._pending = [], set(), []
        self.publish_on_exit = publish_on_exit

    def __enter__(self):
        if os.path.exists(self.partial):
            shutil.rmtree(self.partial)  # leftovers of an interrupted run: start over
        os.makedirs(self.partial)
        import lmdb
        self.env = lmdb.open(self.partial, map_size=self.map_size)
        return self

    def put(self, key, img):
        self.put_value(key, encode_value(img, self.fmt, self.compress_level, f'{self.path}:{key}'), image_shape(img))

    def put_value(self, key, value, shape):
        """Store an already encoded value (:func:`encode_value` in this writer's format) of an image of ``shape``."""
        if key in self._keys:
            raise ValueError(f"{self.path}: two images map to the key '{key}'; keys must be unique")
        self._keys.add(key)
        self._pending.append((key.encode('ascii'), value))
        self.meta.append(f'{key}.png ({",".join(map(str, shape))}) {self.compress_level}')
        if len(self._pending) >= self.commit_every:
            self._commit()

    def keep_meta_info(self, lines):
        """Write ``lines`` as ``meta_info.txt`` (a conversion keeps the source's file line for line); they must name
        the keys stored, in the order stored."""
        keys = [line.split()[0] for line in lines]
        if [k[:-4] if k.endswith('.png') else k for k in keys] != [m.split()[0][:-4] for m in self.meta]:
            raise ValueError(f'{self.path}: the meta_info lines to keep do not name the keys stored, in order.')
        self.meta = list(lines)

    def _commit(self):
        import lmdb
        while self._pending:
            try:
                with self.env.begin(write=True) as txn:
                    for key, value in self._pending:
                        txn.put(key, value)
                self._pending = []
            except lmdb.MapFullError:
                self.map_size *= 2
                self.env.set_mapsize(self.map_size)

    def finish(self):
        """Commit, close, write ``meta_info.txt``: ``<path>.partial`` is now complete (not yet published)."""
        self._commit()
        self.env.sync()
        self.env.close()
        with open(os.path.join(self.partial, FORMAT_NAME), 'w', encoding='utf-8') as f:
            json.dump({'format': self.fmt, 'writer': 'basicsr-restore'}, f)
        with open(os.path.join(self.partial, META_NAME), 'w', encoding='utf-8') as f:
            f.write('\n'.join(self.meta) + '\n')

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.env.close()
            return False  # the .partial folder stays, clearly incomplete; the next run starts it over
        self.finish()
        if self.publish_on_exit:
            publish_partial(self.path)
        return False


def publish_partial(path):
    """Rename the complete ``<path>.partial`` to ``path`` (replacing an older ``path`` only once it is whole)."""
    partial, old = f'{path}.partial', f'{path}.old'
    if os.path.isdir(partial):
        if os.path.exists(path):
            if os.path.exists(old):
                shutil.rmtree(old)
            os.replace(path, old)
        os.replace(partial, path)
    if os.path.exists(old):
        shutil.rmtree(old)


def _write_commit_record(folder, paths):
    record = os.path.join(folder, COMMIT_NAME)
    with atomic_path(record) as tmp, open(tmp, 'w', encoding='utf-8') as f:
        json.dump({'publish': [os.path.basename(p) for p in paths]}, f)
        f.flush()
        os.fsync(f.fileno())


def recover(folder):
    """Finish a group publication that a killed process left half done. Returns the LMDB names it published."""
    record = os.path.join(folder, COMMIT_NAME)
    if not os.path.isfile(record):
        return []
    with open(record, encoding='utf-8') as f:
        names = json.load(f)['publish']
    for name in names:
        path = os.path.join(folder, name)
        if os.path.isdir(f'{path}.partial') and not os.path.isfile(os.path.join(f'{path}.partial', META_NAME)):
            raise ValueError(f"'{path}.partial' is named in {record} but is incomplete; remove the folder "
                             f"'{folder}' and prepare it again.")
        publish_partial(path)
    os.remove(record)
    return names


def check_published(lmdb_path, where):
    """Refuse an LMDB whose folder holds an unfinished group publication (its partner may be older or absent)."""
    record = os.path.join(os.path.dirname(os.path.abspath(str(lmdb_path).rstrip('/'))), COMMIT_NAME)
    if os.path.isfile(record):
        raise ValueError(f"{where}: '{lmdb_path}' belongs to a preparation that was interrupted while its LMDBs were "
                         f"being published ({record} is still there). Run the same `basicsr-restore prepare` command "
                         'again: it finishes the job without rebuilding anything.')


@contextmanager
def lmdb_group(paths, compress_level=1, overwrite=False, fmt='png'):
    """``{path: LmdbWriter}`` for LMDBs in one folder that must appear together; see the module docstring."""
    folders = {os.path.dirname(os.path.abspath(p)) for p in paths}
    if len(folders) != 1:
        raise ValueError(f'lmdb_group: the LMDBs of a group must share one folder, got {sorted(folders)}')
    folder = folders.pop()
    recover(folder)
    with ExitStack() as stack:
        writers = {p: stack.enter_context(LmdbWriter(p, compress_level, overwrite, publish_on_exit=False, fmt=fmt))
                   for p in paths}
        yield writers
    # every writer has finished its .partial folder: publish them as one
    _write_commit_record(folder, paths)
    for path in paths:
        publish_partial(path)
    os.remove(os.path.join(folder, COMMIT_NAME))
