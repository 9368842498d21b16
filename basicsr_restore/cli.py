"""``basicsr-restore <verb>``: prepare data, restore images, benchmark and convert networks, check the install.

Verbs: ``prepare`` (``paired``, ``demo``, ``gopro``, ``hide``, ``realblur``, ``sidd``, ``sidd-val``, ``rain13k``,
``rain100h``, ``rain100l``, ``test100``, ``test1200``, ``test2800``, ``dpdd``), ``infer``, ``bench``, ``convert``,
``manifest``, ``migrate``, ``report``, ``doctor``.
Each ``--help`` tells more.
"""
import argparse
import sys


def _add_prepare(sub):
    p = sub.add_parser('prepare', help='write training/validation data as LMDB')
    kinds = p.add_subparsers(dest='dataset', required=True, metavar='DATASET')

    from basicsr_restore.prepare.common import add_dataset_parsers  # every verb the preparer modules declare
    add_dataset_parsers(kinds)


def _prepare(args):
    from basicsr_restore.prepare.common import run_command
    run_command(args)
    return 0


def _add_report(sub):
    p = sub.add_parser('report', help="score a run's network on the validation sets of its option file")
    p.add_argument('-opt', required=True, help='the option file the run was trained with')
    p.add_argument('--weights', help='weights file (default: experiments/<name>/models/net_g_latest.pth)')
    p.add_argument('--out', help='folder for the strips (default: results/<name>_report)')
    p.add_argument('--device', default=None, help='cpu or cuda (default: cuda when available)')


def _add_tools(sub):
    """``infer``, ``bench``, ``convert``, ``manifest``, ``migrate``: each module defines its options
    (``add_arguments``) and ``run``.
    A module that fails to import leaves its verb reporting why, and the other verbs working."""
    import importlib
    for verb, help_ in (('infer', 'restore a file, folder or glob of images (any size, tiles, TTA, 16-bit)'),
                        ('bench', 'parameters, MACs, latency, peak memory and training speed of the networks'),
                        ('convert', 'official checkpoint -> BasicSR {params: ...} file, with a report'),
                        ('manifest', "write the checkpoint-layout manifest of a network's presets"),
                        ('migrate', "a BasicSR fork's option file (NAFNet, HINet, DRCNet, Restormer) in native terms")):
        p = sub.add_parser(verb, help=help_)
        try:
            module = importlib.import_module(f'basicsr_restore.{verb}')
        except Exception as exc:  # keep doctor & co. usable on a broken install
            p.set_defaults(broken=f'{type(exc).__name__}: {exc}')
            continue
        p.description = module.__doc__.split('\n\n')[0]
        module.add_arguments(p)


def main(argv=None):
    """The console script; Ctrl-C anywhere ends with one line (exit status 130) and nothing half-written."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        words = [a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith('-')]
        verb = words[0] if words and words[0] in INTERRUPTED else None
        print(f'\nbasicsr-restore{" " + verb if verb else ""}: interrupted. {INTERRUPTED[verb]}', file=sys.stderr)
        return 130


def _main(argv):
    parser = argparse.ArgumentParser(prog='basicsr-restore', description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest='verb', required=True, metavar='VERB')
    _add_prepare(sub)
    sub.add_parser('doctor', help='versions, plugin hook, compat fixes, registered names; exit 1 when broken')
    _add_report(sub)
    _add_tools(sub)
    args = parser.parse_args(argv)
    try:
        if args.verb == 'prepare':
            return _prepare(args)
        if args.verb == 'doctor':
            from basicsr_restore.doctor import run
            return run()
        if args.verb == 'report':
            from basicsr_restore.report import run
            return run(args)
        if args.verb in ('infer', 'bench', 'convert', 'manifest', 'migrate'):
            if getattr(args, 'broken', None):
                raise ValueError(f'this command cannot load ({args.broken}); run `basicsr-restore doctor`.')
            import importlib
            return importlib.import_module(f'basicsr_restore.{args.verb}').run(args)
    except (FileNotFoundError, FileExistsError, ValueError, KeyError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f'basicsr-restore {args.verb}: error: {message}', file=sys.stderr)
        return 2
    return 0


#: what an interrupted verb leaves behind (every file is written whole and then renamed into place)
INTERRUPTED = {
    'prepare': 'Finished LMDBs are complete and kept; the one being written stays as *.lmdb.partial (never used) and '
               'the same command starts it over.',
    'infer': 'The images written so far are complete; the one being restored was not written.',
    'convert': 'The output file was not written.',
    None: 'Nothing was left half-written.',
}


if __name__ == '__main__':
    sys.exit(main())
