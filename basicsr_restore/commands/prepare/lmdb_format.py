"""``basicsr-restore prepare lmdb-format SRC DST --format raw|png``: LMDBs already prepared, in the other value format.

``SRC`` is one LMDB group (a folder holding ``gt.lmdb`` + ``lq.lmdb``, or DPDD's four) or a whole prepared set
(``datasets/GoPro``): every folder below it that holds ``*.lmdb`` folders is converted into the same place under
``DST``, with the same keys and the same ``meta_info.txt``; the other files of those folders (subset lists, pairing
records) are copied. The LMDBs of a group are published together, as ``prepare`` does, and an existing LMDB is
replaced only with ``--overwrite`` and only once its new copy is complete; ``DST`` may be ``SRC`` (then
``--overwrite`` is needed). Pixels are unchanged: a raw value holds exactly what the PNG decodes to.
"""
import os
import shutil

from basicsr_restore.commands.prepare.common import Verb, WriteOptions, add_write_options
from basicsr_restore.commands.prepare.store import folder_megabytes, ordered_map
from basicsr_restore.data.lmdb_io import (
    META_NAME,
    check_published,
    decode_value,
    encode_value,
    lmdb_group,
    open_lmdb,
    read_format,
    read_meta_info,
)


def groups_in(src):
    """``{folder: [lmdb names]}`` of every folder at or below ``src`` holding ``*.lmdb`` folders."""
    if str(src).rstrip('/').endswith('.lmdb'):
        raise ValueError(f"SRC '{src}' is one LMDB; give the folder that holds it with its partners (e.g. "
                         f"'{os.path.dirname(str(src).rstrip('/')) or '.'}'): the LMDBs of a pair are converted "
                         'together.')
    if not os.path.isdir(src):
        raise FileNotFoundError(f"SRC '{src}' is not a folder.")
    found = {}
    for folder, dirs, _ in os.walk(src):
        lmdbs = sorted(d for d in dirs if d.endswith('.lmdb'))
        if lmdbs:
            found[folder] = lmdbs
        dirs[:] = [d for d in dirs if not d.endswith('.lmdb') and not d.endswith('.partial')]
    if not found:
        raise FileNotFoundError(f"no *.lmdb folders at or below '{src}'.")
    return found


def _recode(job):
    values, src_fmt, write, where = job
    out = []
    for key, value in values:
        img = decode_value(value, src_fmt, f'{where}: {key}')
        out.append((key, encode_value(img, write.fmt, write.compress_level, f'{where}: {key}')))
    return out


def convert_group(src_dir, names, dst_dir, write, chunk=16):
    """Convert the LMDBs ``names`` of ``src_dir`` into ``dst_dir``; returns ``{name: source format}``."""
    from tqdm import tqdm

    sources = {}
    for name in names:
        path = os.path.join(src_dir, name)
        check_published(path, 'lmdb-format')
        with open(os.path.join(path, META_NAME), encoding='utf-8') as f:
            lines = [line.rstrip('\n') for line in f if line.strip()]
        sources[name] = (read_format(path), read_meta_info(path), lines)
    os.makedirs(dst_dir, exist_ok=True)
    targets = [os.path.join(dst_dir, name) for name in names]
    with lmdb_group(targets, write.compress_level, write.overwrite, write.fmt) as writers:
        for name, target in zip(names, targets):
            src_fmt, entries, lines = sources[name]
            env = open_lmdb(os.path.join(src_dir, name))
            try:
                with env.begin() as txn:
                    def jobs():
                        for start in range(0, len(entries), chunk):
                            part = []
                            for key, _ in entries[start:start + chunk]:
                                value = txn.get(key.encode('ascii'))
                                if value is None:
                                    raise KeyError(f"{src_dir}/{name}: key '{key}' is listed in {META_NAME} but not "
                                                   'stored; the LMDB is incomplete. Prepare it again.')
                                part.append((key, value))
                            yield part, src_fmt, write, f'{src_dir}/{name}'

                    bar = tqdm(total=len(entries), desc=f'{name} -> {write.fmt}', unit='img')
                    shapes = dict(entries)
                    for part in ordered_map(_recode, jobs(), write.workers):
                        for key, value in part:
                            writers[target].put_value(key, value, shapes[key])
                        bar.update(len(part))
                    bar.close()
            finally:
                env.close()
            writers[target].keep_meta_info(lines)  # meta_info.txt as it was, line for line
    return {name: sources[name][0] for name in names}


def run(args):
    write = WriteOptions.from_args(args)
    groups = groups_in(args.src)
    same_place = os.path.realpath(args.src) == os.path.realpath(args.dst)
    if same_place and not write.overwrite:
        raise FileExistsError(f"DST is SRC ('{args.src}'): converting in place replaces its LMDBs; pass --overwrite "
                              '(each is replaced only once its new copy is complete).')
    rows = []
    for folder, names in groups.items():
        rel = os.path.relpath(folder, args.src)
        out = os.path.normpath(os.path.join(args.dst, rel))
        before = folder_megabytes([os.path.join(folder, n) for n in names])
        formats = convert_group(folder, names, out, write)
        if not same_place:
            for entry in sorted(os.listdir(folder)):
                path = os.path.join(folder, entry)
                if os.path.isfile(path) and not entry.startswith('.'):
                    shutil.copyfile(path, os.path.join(out, entry))
        after = folder_megabytes([os.path.join(out, n) for n in names])
        rows.append((rel, ', '.join(names), '/'.join(sorted(set(formats.values()))), before, after))
    print(f'{args.src} -> {args.dst} ({write.fmt} values, {write.workers} worker(s))')
    for rel, names, old, before, after in rows:
        print(f'  {rel:<20} {names:<28} {old} {before:8.1f} MB -> {write.fmt} {after:8.1f} MB')
    return rows


def _options(p):
    p.add_argument('src', metavar='SRC', help='a folder of LMDBs (gt.lmdb, lq.lmdb, ...) or a prepared set')
    p.add_argument('dst', metavar='DST', help='output folder (the same layout); may be SRC with --overwrite')
    p.add_argument('--overwrite', action='store_true',
                   help='replace existing LMDBs in DST (each only once its new copy is complete)')
    p.add_argument('--compress-level', type=int, default=1, help='PNG compression 0-9 (default 1, as basicsr)')
    add_write_options(p)


VERBS = {'lmdb-format': Verb(run, 'prepared LMDBs into the other value format (raw <-> png), keys and meta_info kept',
                             _options, src_dst=False)}
