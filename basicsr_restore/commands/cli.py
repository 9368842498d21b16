"""``basicsr-restore <verb>``: prepare data, restore images, benchmark, convert and export networks, check the
install.

The command line of every verb is declared here or, for the light modules, by the module itself
(``add_arguments``); only the chosen verb's module is imported, and only when it runs, so that ``--help`` and
``--version`` answer at once (torch and basicsr are imported by the verbs that need them).
"""
import argparse
import importlib
import re
import sys

from basicsr_restore import __version__

#: verb -> (one-line help, module that runs it, where its arguments come from: a function here, or None when
#: the module declares them itself with ``add_arguments``)
VERBS = {}


def verb(name, help_, module=None):
    def deco(arguments):
        VERBS[name] = (help_, module or f'basicsr_restore.commands.{name}', arguments)
        return arguments
    return deco


def _own_arguments(name):
    """Arguments declared by a light module itself (``add_arguments``)."""
    return lambda p: importlib.import_module(VERBS[name][1]).add_arguments(p)


# ------------------------------------------------------------------------------------------ the verbs
@verb('prepare', 'write training/validation data as LMDB', 'basicsr_restore.commands.prepare.common')
def _prepare_arguments(p):
    kinds = p.add_subparsers(dest='dataset', required=True, metavar='DATASET')
    # only `prepare` imports the preparers (each declares its verbs); other verbs' --help stays light
    from basicsr_restore.commands.prepare.common import add_dataset_parsers
    add_dataset_parsers(kinds)


@verb('infer', 'restore a file, folder or glob of images (any size, tiles, TTA, 16-bit)')
def _infer_arguments(p):
    p.add_argument('-i', '--input', required=True, help='an image file, a folder of images, or a glob ("photos/*.png")')
    p.add_argument('-o', '--output', required=True, help='output folder (created)')
    p.add_argument('-opt', help='test option file: network_g, path.pretrain_network_g, path.param_key_g')
    p.add_argument('--arch', help='network name (e.g. IRNeXt); default: the one the checkpoint records or its key '
                                  'layout shows')
    p.add_argument('--arch-args', nargs='+', metavar='K=V', default=[],
                   help='constructor arguments: key=value ... or one JSON object (put this option last)')
    p.add_argument('--weights', help='checkpoint (BasicSR params/params_ema, official layouts, bare state dict)')
    p.add_argument('--param-key', help='key that holds the weights (default: detected; EMA preferred)')
    p.add_argument('--trusted', action='store_true',
                   help='the weights file is trusted: allow pickled Python objects (torch.load weights_only=False)')
    p.add_argument('--tile', type=int, default=0, help='tile size in pixels for bounded memory (0 = whole image)')
    p.add_argument('--tile-overlap', type=int, default=32,
                   help='overlap of the tiles (default 32); blending is exact for receptive-field radii < overlap/4')
    p.add_argument('--tta', action='store_true', help='x8 self-ensemble (flips and rotations; 8x slower)')
    p.add_argument('--device', default='auto', help='cpu, cuda or cuda:N (default: cuda when available)')
    p.add_argument('--speed', help='best: the fastest switches of this device that keep the accuracy; fp32: none '
                                   "(default: the -opt file's speed block, else fp32)")
    p.add_argument('--amp', choices=('bf16', 'fp16', 'false'), help='autocast dtype (false: fp32)')
    p.add_argument('--channels-last', action='store_true', help='NHWC memory format')
    p.add_argument('--compile', choices=('false',) + COMPILE_MODES, help='torch.compile mode')
    p.add_argument('--cudnn-benchmark', action='store_true', help='cuDNN autotuning (GPU)')
    p.add_argument('--tf32', action='store_true', help='TF32 matmuls and convolutions (GPU)')
    p.add_argument('--compare', action='store_true', help='write input|output[|gt] strips to OUTPUT/compare/')
    p.add_argument('--gt', help='folder of ground-truth images (same names): PSNR/SSIM, metrics.csv and metrics.md')
    p.add_argument('--suffix', default='', help='added to the output file names (before the extension)')
    p.add_argument('--overwrite', action='store_true', help='replace existing output files')


#: torch.compile modes (``basicsr_restore.core.speed.COMPILE_MODES``; a test keeps the two equal)
COMPILE_MODES = ('default', 'max-autotune', 'reduce-overhead')
#: ``bench --mode`` flags (``basicsr_restore.commands.bench.MODE_FLAGS``; a test keeps the two equal)
BENCH_MODES = ('fp32', 'bf16', 'fp16', 'channels_last', 'compile', 'max-autotune', 'reduce-overhead', 'checkpoint',
               'cudnn_benchmark', 'tf32')


@verb('bench', 'parameters, MACs, latency, peak memory and training speed of the networks')
def _bench_arguments(p):
    p.add_argument('--arch', help='one registered network (default: every network of this package)')
    p.add_argument('-opt', help="an option file: measure its network_g")
    p.add_argument('--size', default='256', help='forward input size N or HxW (default 256; rounded up to the '
                                                 "network's multiple)")
    p.add_argument('--patch', help='training patch N or HxW (default: --size)')
    p.add_argument('--train-batch', type=int, default=2, help='training batch (default 2: BatchNorm needs 2)')
    p.add_argument('--no-train', action='store_true', help='skip the training measurement')
    p.add_argument('--warmup', type=int, default=3, help='untimed runs first (default 3; compile happens here)')
    p.add_argument('--runs', type=int, default=10, help='timed runs (default 10)')
    p.add_argument('--mode', default='fp32', help=f"{', '.join(BENCH_MODES)}, a combination with + "
                                                  '(bf16+channels_last+compile), or best')
    p.add_argument('--suite', action='store_true', help='every network x {fp32, best}, inference and training, and '
                   'the data pipeline of the recipes: a Markdown report and a JSON file (--json, default '
                   'bench-suite.json)')
    p.add_argument('--data', action='store_true', help='measure the training DataLoader of -opt (samples/s, per '
                                                       'worker, decode share)')
    p.add_argument('--data-opt', nargs='+', metavar='FILE', help='--suite: the recipes whose data pipeline is measured '
                                                                 '(default: every shipped recipe with its data here)')
    p.add_argument('--workers', type=int, default=2, help='--data/--suite: DataLoader worker processes (default 2)')
    p.add_argument('--batches', type=int, default=20, help='--data/--suite: timed batches (default 20)')
    p.add_argument('--vs', metavar='MODE_OR_FILE', help='a second mode to run, or a results JSON to compare with')
    p.add_argument('--load', metavar='FILE', help='read results from FILE instead of running (with --vs FILE2)')
    p.add_argument('--device', default='auto', help='cpu, cuda or cuda:N (default: cuda when available)')
    p.add_argument('--threads', type=int, help='CPU threads (torch.set_num_threads)')
    p.add_argument('--json', metavar='FILE', help='write every figure to FILE')
    p.add_argument('--overwrite', action='store_true', help='replace an existing --json FILE')
    p.add_argument('--arch-args', nargs='+', metavar='K=V', default=[],
                   help='constructor arguments of --arch: key=value ... or one JSON object (put this option last)')


@verb('convert', 'any checkpoint -> a BasicSR {params: ...} file that records its network, with a report')
def _convert_arguments(p):
    p.add_argument('src', help='checkpoint to convert (.pth, .pkl, .pt, .safetensors)')
    p.add_argument('dst', help='BasicSR weights file to write')
    p.add_argument('--to', choices=['pth', 'safetensors'],
                   help="format of DST: torch's zip file or safetensors (default: by DST's extension)")
    p.add_argument('--param-key', help='key that holds the weights (default: detected)')
    p.add_argument('--arch', help='check the weights against this registered network (strict)')
    p.add_argument('--arch-args', nargs='+', metavar='K=V', default=[],
                   help='constructor arguments of --arch: key=value ... or one JSON object (put this option last)')
    p.add_argument('--ema', action='store_true', help='also write the weights as params_ema')
    p.add_argument('--trusted', action='store_true',
                   help='the source is trusted: allow pickled Python objects (torch.load weights_only=False)')
    p.add_argument('--overwrite', action='store_true', help='replace an existing DST')


@verb('manifest', "write the checkpoint-layout manifest of a network's presets")
def _manifest_arguments(p):
    p.add_argument('name', metavar='NAME', help='registered network, e.g. IRNeXt')
    p.add_argument('--preset', default='all', help="one preset of the network's card (default: all)")
    p.add_argument('--weights', help="take the layout from this checkpoint (e.g. the authors' release)")
    p.add_argument('--param-key', help='key that holds the weights in --weights (default: detected)')
    p.add_argument('--source', help='where the layout comes from (kept in the manifest)')
    p.add_argument('--out', help="file to write (default: the card's manifest file)")
    p.add_argument('--overwrite', action='store_true', help='replace an existing manifest')
    p.add_argument('--import', dest='import_module', metavar='MODULE',
                   help='import this module first and register the networks it defines')


@verb('report', "score a run's network on the validation sets of its option file; draw its training curves")
def _report_arguments(p):
    p.add_argument('-opt', required=True, help='the option file the run was trained with')
    p.add_argument('--weights', help='weights file (default: experiments/<name>/models/net_g_latest.pth or '
                   '.safetensors)')
    p.add_argument('--out', help='folder for the strips and curves (default: results/<name>_report)')
    p.add_argument('--device', default=None, help='cpu or cuda (default: cuda when available)')


@verb('doctor', 'versions, plugin hook, compat fixes, registered names; exit 1 when broken')
def _doctor_arguments(p):
    pass


for _name, _help in (('migrate', "a BasicSR fork's option file (NAFNet, HINet, DRCNet, Restormer) in native terms"),
                     ('export', 'a trained network -> ONNX, torch.export program or TorchScript, verified on a photo'),
                     ('serve', 'a browser demo: drop a photo, see before/after, download the PNG (127.0.0.1)'),
                     ('zoo', "the authors' released checkpoints: task, where, preset, option file, paper metrics"),
                     ('schema', 'the JSON Schema of option files, for editors that complete and check keys as you '
                                'type')):
    verb(_name, _help)(_own_arguments(_name))


# ------------------------------------------------------------------------------------------ plain help
_MARKUP = [(re.compile(r':(?:mod|func|class|meth|data|attr):`~?([^`]+)`'), r'\1'), (re.compile(r'``([^`]+)``'), r'\1'),
           (re.compile(r'`([^`]+)`'), r'\1'), (re.compile(r'\*\*([^*]+)\*\*'), r'\1')]


def plain(text):
    """Help text without reStructuredText markup (``x``, :mod:`x`, **x** -> x)."""
    for pattern, repl in _MARKUP:
        text = pattern.sub(repl, text)
    return text


def _plain_parser(parser):
    """Make every description and help of ``parser`` and its sub-parsers plain text."""
    if parser.description:
        parser.description = plain(parser.description)
    for action in parser._actions:
        if action.help:
            action.help = plain(action.help)
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                choice.help = plain(choice.help or '')
            for sub in set(action.choices.values()):
                _plain_parser(sub)


# ------------------------------------------------------------------------------------------ the command
def build_parser(chosen=None):
    """The parser; only ``chosen``'s arguments are declared (the others are listed by name and help)."""
    parser = argparse.ArgumentParser(prog='basicsr-restore', description=__doc__.split('\n\n')[0].replace('\n', ' '))
    parser.add_argument('--version', action='version', version=f'basicsr-restore {__version__}')
    sub = parser.add_subparsers(dest='verb', required=True, metavar='VERB')
    for name, (help_, _, arguments) in VERBS.items():
        p = sub.add_parser(name, help=help_, description=help_[0].upper() + help_[1:] + '.')
        if name == chosen:
            try:
                arguments(p)
            except ImportError as exc:  # keep doctor & co. usable on a broken install
                p.set_defaults(broken=f'{type(exc).__name__}: {exc}')
    _plain_parser(parser)
    return parser


def main(argv=None):
    """The console script; Ctrl-C anywhere ends with one line (exit status 130) and nothing half-written."""
    try:
        return _main(sys.argv[1:] if argv is None else list(argv))
    except KeyboardInterrupt:
        words = [a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith('-')]
        verb_ = words[0] if words and words[0] in INTERRUPTED else None
        print(f'\nbasicsr-restore{" " + verb_ if verb_ else ""}: interrupted. {INTERRUPTED[verb_]}', file=sys.stderr)
        return 130


def _main(argv):
    chosen = next((a for a in argv if not a.startswith('-')), None)
    args = build_parser(chosen if chosen in VERBS else None).parse_args(argv)
    try:
        if getattr(args, 'broken', None):
            raise ValueError(f'this command cannot load ({args.broken}); run `basicsr-restore doctor`.')
        if args.verb == 'prepare':
            from basicsr_restore.commands.prepare.common import run_command  # as above: only for prepare
            run_command(args)
            return 0
        status = importlib.import_module(VERBS[args.verb][1]).run(*(() if args.verb == 'doctor' else (args,)))
        return 0 if status is None else status
    except (FileNotFoundError, FileExistsError, ValueError, KeyError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f'basicsr-restore {args.verb}: error: {message}', file=sys.stderr)
        return 2


#: what an interrupted verb leaves behind (every file is written whole and then renamed into place)
INTERRUPTED = {
    'prepare': 'Finished LMDBs are complete and kept; the one being written stays as *.lmdb.partial (never used) and '
               'the same command starts it over.',
    'infer': 'The images written so far are complete; the one being restored was not written.',
    'convert': 'The output file was not written.',
    'export': 'The output file was not written.',
    None: 'Nothing was left half-written.',
}


if __name__ == '__main__':
    sys.exit(main())
