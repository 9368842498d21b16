"""What every dataset preparer shares: finding folders in the layouts as distributed, pairing files,
writing splits safely (restartable, never replacing without ``--overwrite``) and the final summary.

A preparer describes each *split* (``train``, ``test``, ``test/Rain100H``, ...) as a :class:`Split`: where
it goes under the output folder, the LMDBs it holds, how to get its pairs and how to cut them. The
runner then writes every split with the project's LMDB writer (``data/lmdb_io.py``; an interrupted run
leaves only ``*.lmdb.partial`` folders, which the next run starts over) and prints one table.

Restart rule: a split whose LMDBs all exist is complete (the writer renames a folder only once it is
complete) and is kept, so re-running the same command after an interruption continues with the splits
that are missing. ``--overwrite`` rebuilds them (the old LMDB is replaced only once the new one is whole).
"""
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import basicsr_restore.commands.prepare as package
from basicsr_restore.commands.prepare.store import Cut, WriteOptions, folder_megabytes, write_streams
from basicsr_restore.core.imageio import ImageError, atomic_path, images_in
from basicsr_restore.data.lmdb_io import recover


class LayoutError(ValueError):
    """The source folder is not laid out as expected; the message says what was expected where and what
    was found. Raised as a ``ValueError`` so that the CLI prints it as one line, without a traceback."""


# ----------------------------------------------------------------------------------------- folders
def listing(folder, limit=8):
    """A short description of what ``folder`` holds, for error messages."""
    if not os.path.exists(folder):
        return f"'{folder}' does not exist"
    if not os.path.isdir(folder):
        return f"'{folder}' is a file, not a folder"
    entries = sorted(os.listdir(folder))
    if not entries:
        return f"'{folder}' is empty"
    shown = [e + '/' if os.path.isdir(os.path.join(folder, e)) else e for e in entries[:limit]]
    more = f', ... ({len(entries)} entries)' if len(entries) > limit else ''
    return f"'{folder}' holds {', '.join(shown)}{more}"


def child(folder, name):
    """``folder/name`` matched case-insensitively (``Rain13k`` finds ``Rain13K``), or None."""
    if not os.path.isdir(folder):
        return None
    exact = os.path.join(folder, name)
    if os.path.exists(exact):
        return exact
    for entry in os.listdir(folder):
        if entry.lower() == name.lower():
            return os.path.join(folder, entry)
    return None


def find(root, relative):
    """``root/relative`` (``a/b/c``), each part matched case-insensitively, or None."""
    path = root
    for part in relative.split('/'):
        path = child(path, part)
        if path is None:
            return None
    return path


def first_dir(root, candidates):
    """The first of ``candidates`` (relative paths) that is a folder under ``root``, or None."""
    for rel in candidates:
        path = find(root, rel) if rel else root
        if path and os.path.isdir(path):
            return path
    return None


def image_files(folder):
    """``{stem: path}`` of the images directly inside ``folder`` (not recursive); a stem used twice (``a.png``
    and ``a.jpg``) is a layout error, because both would get the same key."""
    try:
        return images_in(folder)
    except ImageError as exc:
        raise LayoutError(str(exc)) from None


def pair_dirs(base, lq_names, gt_names):
    """``(lq_dir, gt_dir)`` when ``base`` holds one folder named like ``lq_names`` and one like ``gt_names``."""
    if not base or not os.path.isdir(base):
        return None
    lq = first_dir(base, lq_names)
    gt = first_dir(base, gt_names)
    return (lq, gt) if lq and gt else None


def pair_files(lq_dir, gt_dir, gt_name_rules=(), key=None):
    """Pair the images of two flat folders: the GT of ``x`` is ``x`` itself or ``rule(x)`` for the first rule
    that names an existing GT. Returns ``[(key, gt_path, lq_path)]`` sorted by key; any image without a
    partner is an error listing a few of them."""
    lqs, gts = image_files(lq_dir), image_files(gt_dir)
    if not lqs:
        raise LayoutError(f"no images in '{lq_dir}' ({listing(lq_dir)}).")
    pairs, used = [], set()
    orphans = []
    for stem, lq_path in lqs.items():
        names = [stem] + [rule(stem) for rule in gt_name_rules]
        gt_stem = next((n for n in names if n in gts), None)
        if gt_stem is None:
            orphans.append(os.path.basename(lq_path))
            continue
        used.add(gt_stem)
        pairs.append(((key or (lambda s: s))(stem), gts[gt_stem], lq_path))
    if orphans:
        raise LayoutError(f"{len(orphans)} of {len(lqs)} images in '{lq_dir}' have no ground truth with the same name "
                          f"in '{gt_dir}', e.g. {orphans[:3]}; the two folders must hold the same file names.")
    extra = sorted(set(gts) - used)
    if extra:
        raise LayoutError(f"{len(extra)} images in '{gt_dir}' have no degraded counterpart in '{lq_dir}', e.g. "
                          f'{extra[:3]}; the two folders must hold the same file names.')
    return sorted(pairs)


def replace_rule(old, new):
    """A GT-name rule for :func:`pair_files`: replace the first ``old`` with ``new`` in the stem."""
    return lambda stem: stem.replace(old, new, 1)


# ------------------------------------------------------------------------------------------- splits
@dataclass
class Split:
    """One output folder ``<dst>/<name>`` of LMDBs.

    ``pairs``: a function returning ``[(key, gt, lq)]`` (paths or arrays) for two-stream splits written with
    ``write_pairs``; ``items`` instead: ``[(key, {stream: path})]`` for multi-stream splits (DPDD).
    ``crop``/``step``: sub-images (None keeps whole images). ``official``: what the full official download
    gives, printed next to what was written so that users can check their copy.
    """
    name: str
    pairs: Optional[Callable] = None
    items: Optional[Callable] = None
    streams: tuple = ('gt', 'lq')
    crop: Optional[int] = None
    step: Optional[int] = None
    official: str = ''
    drop_blurry: float = 0.0
    note: str = ''
    extra_files: dict = field(default_factory=dict)  # file name -> text, written beside the LMDBs


def split_state(out_dir, streams):
    """``'absent'``, ``'complete'`` (every LMDB exists) or ``'mixed'``, after finishing a publication that an
    interrupted run left half done (``lmdb_io.recover``)."""
    if os.path.isdir(out_dir):
        recover(out_dir)
    present = [s for s in streams if os.path.isdir(os.path.join(out_dir, f'{s}.lmdb'))]
    if not present:
        return 'absent'
    return 'complete' if len(present) == len(streams) else 'mixed'


def write_extra_files(out_dir, files, only_missing=False):
    """Small text files beside the LMDBs (pairing records, subset lists), each written atomically."""
    os.makedirs(out_dir, exist_ok=True)
    for name, text in files.items():
        path = os.path.join(out_dir, name)
        if only_missing and os.path.exists(path):
            continue
        with atomic_path(path) as tmp, open(tmp, 'w', encoding='utf-8') as f:
            f.write(text)


def run_splits(title, dst, splits, write=WriteOptions()):
    """Write every split (see the module docstring for the restart rule) and print the summary table."""
    start = time.time()
    rows = []
    for split in splits:
        out_dir = os.path.join(dst, split.name)
        state = split_state(out_dir, split.streams)
        lmdbs = ', '.join(f'{s}.lmdb' for s in split.streams)
        if state == 'mixed' and not write.overwrite:
            present = [s for s in split.streams if os.path.isdir(os.path.join(out_dir, f'{s}.lmdb'))]
            raise FileExistsError(f"'{out_dir}' holds only {', '.join(p + '.lmdb' for p in present)} of {lmdbs} (an "
                                  'earlier run stopped between them). Pass --overwrite to rebuild this split.')
        if state == 'complete' and not write.overwrite:
            write_extra_files(out_dir, split.extra_files, only_missing=True)
            rows.append(dict(split=split.name, status='kept', out=out_dir, note='already there; --overwrite rebuilds'))
            continue
        write_extra_files(out_dir, split.extra_files)
        if split.items is not None:
            items = split.items()
        else:
            items = [(name, {'gt': gt, 'lq': lq}) for name, gt, lq in split.pairs()]
        counts = write_streams(items, out_dir, Cut(split.streams, split.crop, split.step, 0, split.drop_blurry),
                               write, desc=split.name)
        rows.append(dict(split=split.name, status='written', out=out_dir, images=counts['pairs'],
                         stored=counts['sub_images'], whole=counts.get('stored_whole', 0),
                         dropped=counts.get('dropped', 0), official=split.official, note=split.note,
                         seconds=counts['seconds'],
                         mb=folder_megabytes([os.path.join(out_dir, f'{s}.lmdb') for s in split.streams])))
    print(format_table(title, dst, rows, time.time() - start, write))
    return rows


#: what each value format costs, printed under the prepare table
FORMAT_NOTES = {'raw': 'raw values: nothing to decode when training (patches are cut from the mapped LMDB); 2-3x '
                       'the disk of --format png for photos',
                'png': "png values (basicsr's): a third to half the disk of --format raw, but decoding is most "
                       "of a training sample's time"}


def format_table(title, dst, rows, seconds, write=WriteOptions()):
    lines = [f'{title} -> {dst}  ({seconds:.1f} s in all, {write.workers} worker(s))',
             f"  {'split':<16} {'images':>7} {'stored':>8} {'size':>10} {'time':>8}  official download / notes"]
    for r in rows:
        if r['status'] == 'kept':
            lines.append(f"  {r['split']:<16} {'-':>7} {'-':>8} {'-':>10} {'-':>8}  kept: {r['out']} {r['note']}")
            continue
        notes = [r['official']] if r['official'] else []
        if r['dropped']:
            notes.append(f"{r['dropped']} least sharp crops dropped")
        if r['whole']:
            notes.append(f"{r['whole']} images smaller than the crop stored whole")
        if r['note']:
            notes.append(r['note'])
        lines.append(f"  {r['split']:<16} {r['images']:>7} {r['stored']:>8} {r['mb']:>7.1f} MB {r['seconds']:>6.1f} s  "
                     + '; '.join(notes))
    if any(r['status'] == 'written' for r in rows):
        lines.append(f'  {FORMAT_NOTES[write.fmt]}')
    return '\n'.join(lines)


def no_layout(dataset, src, expected_layouts):
    """The one error for an unrecognised source folder: the layouts accepted and what ``src`` holds."""
    found = listing(src)
    if os.path.isdir(src):
        subs = [os.path.join(src, e) for e in sorted(os.listdir(src)) if os.path.isdir(os.path.join(src, e))][:4]
        found += ''.join(f'; {listing(s, 5)}' for s in subs)
    layouts = ''.join(f'\n  - {layout}' for layout in expected_layouts)
    return LayoutError(f"{dataset}: '{src}' is not laid out as expected. Accepted layouts (folder names are "
                       f'case-insensitive):{layouts}\nFound: {found}.')


# --------------------------------------------------------------------------------------------- CLI
def crop_options(crop, step, what):
    """``options`` of a :class:`Verb` that cuts sub-images: ``--crop`` and ``--step`` with these defaults."""
    def add(p):
        p.add_argument('--crop', type=int, default=crop, help=f'sub-image size of the {what} (default {crop})')
        p.add_argument('--step', type=int, default=step, help=f'grid step of the sub-images (default {step})')
    return add


@dataclass(frozen=True)
class Verb:
    """A ``basicsr-restore prepare <name>`` sub-command, declared by the preparer module that runs it in its
    ``VERBS`` dict. ``options(parser)`` adds its own options; ``src_dst``: it takes ``SRC DST`` and the common
    ``--overwrite``/``--compress-level`` (the dataset preparers)."""
    run: Callable
    help: str
    options: Optional[Callable] = None
    src_dst: bool = True


def preparer_modules():
    """Every module of ``basicsr_restore.commands.prepare`` that declares ``VERBS``, in name order."""
    import importlib
    import pkgutil

    modules = [importlib.import_module(f'basicsr_restore.commands.prepare.{m.name}')
               for m in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name)]
    return [m for m in modules if getattr(m, 'VERBS', None)]


def add_write_options(p):
    """``--format`` and ``--workers``, for every command that writes LMDBs."""
    p.add_argument('--format', default='raw', metavar='{raw,png}',
                   help='LMDB values: raw pixels (default; nothing to decode when training, 2-3x the disk) or png '
                        "(basicsr's format, half the disk, decoded for every sample)")
    p.add_argument('--workers', type=int, default=None,
                   help='processes that decode, cut and encode the images (default: every core); the output is the '
                        'same whatever the number')


def add_dataset_parsers(kinds):
    """One ``prepare <name>`` sub-command per verb that the preparer modules declare."""
    for module in preparer_modules():
        for name, verb in module.VERBS.items():
            summary = module.__doc__.strip().split('\n\n')[0].split(': ', 1)[-1].replace('\n', ' ')
            p = kinds.add_parser(name, help=verb.help, description=f'{verb.help[0].upper()}{verb.help[1:]}: {summary} '
                                 'Accepted folder layouts and what is written: datasets/README.md.')
            if verb.src_dst:
                p.add_argument('src', metavar='SRC', help='the download as unpacked (see datasets/README.md)')
                p.add_argument('dst', metavar='DST', help='output folder, e.g. datasets/GoPro')
                p.add_argument('--overwrite', action='store_true', help='rebuild splits that exist already (each is '
                               'replaced only once its new copy is complete)')
                p.add_argument('--compress-level', type=int, default=1,
                               help='PNG compression 0-9 (default 1, as basicsr)')
                add_write_options(p)
            if verb.options:
                verb.options(p)
            p.set_defaults(prepare_verb=verb.run)


def run_command(args):
    """Run the verb chosen by :func:`add_dataset_parsers`."""
    return args.prepare_verb(args)
