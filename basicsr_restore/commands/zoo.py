"""basicsr-restore zoo [NETWORK] [--json]: the checkpoints the authors of each network released, what each was
trained for, where the authors published it, the preset and option file of this package it goes with, the key
that holds its weights, the numbers reported for it, and the commands that turn it into a restored image.

Nothing is downloaded: the table says where each file was published, in words, and the commands start from the
file once you have it. Where the authors released no checkpoint (DRCNet, EIRN, MIRNet's x2 super-resolution) the
listing says so and gives the commands that train one here instead. Reported numbers carry their confidence:
``README table`` (copied from the official README), ``recalled, unverified`` (attributed to the paper, not
checked against its text), ``recalled, low confidence``, ``not recorded here`` or ``none published``.

Only the standard library is imported: the listing answers at once, without torch. The tests check the table
against the network cards (presets, checkpoint keys, constructor arguments) and the option files.
"""
import json
import os
import sys
import textwrap
from dataclasses import asdict, dataclass
from typing import Optional, Tuple

#: the networks of this package, in the order of the README's table
NETWORKS = ('IRNeXt', 'ChaIR', 'MIRNet', 'DRCNet', 'EIRN')

#: where the converted files go (the commands use it)
PRETRAINED = 'experiments/pretrained_models'

#: what ``confidence`` says about the ``metrics`` of a release
CONFIDENCE = {
    'README table': "copied from the results table of the authors' README",
    'recalled, unverified': 'attributed to the paper but not checked against its text',
    'recalled, low confidence': 'attributed to the paper, not checked, and doubtful',
    'not recorded here': 'the paper reports numbers for it; this table does not record them',
    'none published': 'no number was ever published for this network and task',
}

#: one line per network, printed above its releases
SUMMARY = {
    'IRNeXt': "dehazing and motion-deblurring releases; the authors' Drive folder also holds the other tasks' files",
    'ChaIR': 'dehazing (ITS, OTS) and motion-deblurring (GoPro) releases',
    'MIRNet': 'one architecture for every task; five released files (denoising, SR x3 and x4, LOL, FiveK)',
    'DRCNet': 'no checkpoint was released: the official repository has the code and option files only',
    'EIRN': 'no code, checkpoint or paper was ever published; EIRN here is EIRN-R, a reconstruction',
}


@dataclass(frozen=True)
class Release:
    """One checkpoint of the authors (or, with ``released`` 'no', the note that there is none).

    ``file`` is the name the authors give the file (None when it is not known here or there is no file);
    ``released`` is 'yes', 'no' or 'unknown'; ``arch_args`` the ``--arch-args`` that give ``preset`` (None when
    the authors did not publish the configuration: ``convert`` then reads it from the file's keys); ``options``
    the option files of this package that go with it, used as they are unless ``adapt`` says what to change;
    ``metrics`` the reported ``(test set, PSNR dB, SSIM)``; ``tag`` names the converted file."""
    network: str
    file: Optional[str]
    task: str
    trained_on: str
    published: str
    preset: str
    options: Tuple[str, ...]
    checkpoint_key: Optional[str]
    metrics: Tuple[Tuple[str, float, float], ...]
    confidence: str
    notes: str = ''
    released: str = 'yes'
    arch_args: Optional[Tuple[str, ...]] = ()
    adapt: str = ''
    tag: str = ''

    @property
    def source(self):
        """The file name the commands start from: the authors' name, else one to save the download as."""
        return self.file or f'{self.network}_{self.tag}.pkl'

    @property
    def converted(self):
        return f'{PRETRAINED}/{self.network}_{self.tag}.pth'

    def commands(self):
        """The commands that follow, in order."""
        if self.released != 'yes':
            train = [o for o in self.options if o.startswith('options/train/')]
            test = [o for o in self.options if o.startswith('options/test/')]
            if not train:
                return []
            out = [f'python -m basicsr.train -opt {train[0]}']
            if test:
                out.append(f'basicsr-restore infer -opt {test[0]} -i photo.png -o out/')
            return out
        convert = f'basicsr-restore convert {self.source} {self.converted}'
        if self.arch_args is not None:
            convert += f' --arch {self.network}'
            if self.arch_args:
                convert += ' --arch-args ' + ' '.join(self.arch_args)
        return [convert, f'basicsr-restore infer --weights {self.converted} -i photo.png -o out/']

    def next_command(self):
        """The commands as one line."""
        return ' && '.join(self.commands())

    def options_text(self):
        if not self.options:
            return 'none here' + (f'; {self.adapt}' if self.adapt else '')
        files = ', '.join(self.options)
        if self.released != 'yes':
            return f'{files} (train your own)' + (f'; {self.adapt}' if self.adapt else '')
        if self.adapt:
            return f'adapt {files}: {self.adapt}'
        return (f'{files} as it is, with path.pretrain_network_g: {self.converted} '
                f'(then python -m basicsr.test -opt {self.options[0]})')

    def metrics_text(self):
        if not self.metrics:
            return f'none: {CONFIDENCE[self.confidence]}'
        sets = '; '.join(f'{name} {psnr:.2f} dB / {ssim:g}' for name, psnr, ssim in self.metrics)
        return f'{sets} ({self.confidence})'

    def as_dict(self):
        d = asdict(self)
        d['metrics'] = [{'set': name, 'psnr': psnr, 'ssim': ssim} for name, psnr, ssim in self.metrics]
        d.update(options=list(self.options), arch_args=None if self.arch_args is None else list(self.arch_args),
                 commands=self.commands(), next=self.next_command())
        return d


# ------------------------------------------------------------------------------------------ the table
_CYN_DEHAZE = ("the Google Drive folder linked from Dehazing/README.md of the official GitHub repository "
               "({repo})")
_CYN_DEBLUR = ("the same Google Drive folder, linked from the motion-deblurring README that the authors added in "
               "2024, after the dehazing code ({ref}; seen in the fork {fork})")
_DEMO_NAME = 'file name as a third-party demo script loads it ({fork}, demo_{net}.py)'
_NUM_RES = ('The configuration of this task is not published: convert (without --arch) reads num_res from the '
            'keys and reports what it found; the preset is a starting point')
_IRNEXT_OTHER = 'the same Google Drive folder as the dehazing files (the authors say so in c-yn/IRNeXt issue #2)'
_IRNEXT_NOTE = ('file name not recorded here. ' + _NUM_RES + '. The key layout cannot show the low-pass mode: '
                "if the file uses the GoPro release's local mean, convert with --arch IRNeXt --arch-args "
                'num_res=N low_pass=local instead')
_IRNEXT_ADAPT = 'set network_g to what convert reports'

RELEASES = (
    # ---------------------------------------------------------------------------------------------- IRNeXt
    Release('IRNeXt', None, 'dehazing (indoor)', 'RESIDE ITS; tested on SOTS-Indoor',
            _CYN_DEHAZE.format(repo='c-yn/IRNeXt'), 'dehaze', ('options/test/GoPro/IRNeXt.yml',), 'model',
            (('SOTS-Indoor', 41.21, 0.996),), 'recalled, unverified',
            notes='file name not recorded here: save the ITS file of that folder as IRNeXt_its.pkl',
            adapt='network_g num_res: 4, low_pass: global (the defaults), SOTS-Indoor pairs as the test set',
            tag='its'),
    Release('IRNeXt', 'model_ots.pkl', 'dehazing (outdoor)', 'RESIDE OTS; tested on SOTS-Outdoor',
            _CYN_DEHAZE.format(repo='c-yn/IRNeXt'), 'dehaze', ('options/test/GoPro/IRNeXt.yml',), 'model',
            (('SOTS-Outdoor', 39.18, 0.996),), 'recalled, unverified',
            notes=_DEMO_NAME.format(fork='shaunhwq/IRNeXt', net='irnext') + '; loads into the default IRNeXt()',
            adapt='network_g num_res: 4, low_pass: global (the defaults), SOTS-Outdoor pairs as the test set',
            tag='ots'),
    Release('IRNeXt', None, 'motion deblurring', 'GoPro; HIDE tested with the same model',
            _CYN_DEBLUR.format(ref='c-yn/IRNeXt issues #4 and #6', fork='shaunhwq/IRNeXt'), 'deblur',
            ('options/test/GoPro/IRNeXt.yml',), 'model',
            (('GoPro', 33.16, 0.962),), 'recalled, unverified',
            notes='file name not recorded here: save it as IRNeXt_GoPro.pkl. 14 blocks per stage (13 plain + 1 '
                  "with the module: the paper's N=13) and the local low-pass mean",
            arch_args=('num_res=14', 'low_pass=local'), tag='GoPro'),
    Release('IRNeXt', None, 'deraining', 'the Rain13K training set; tested on Rain100H/L, Test100/1200/2800',
            _IRNEXT_OTHER, 'deblur', ('options/test/Rain13K/IRNeXt.yml',), 'model', (), 'not recorded here',
            notes=_IRNEXT_NOTE, arch_args=None, adapt=_IRNEXT_ADAPT, tag='derain'),
    Release('IRNeXt', None, 'desnowing', 'CSD, SRRS and Snow100K', _IRNEXT_OTHER, 'deblur', (), 'model', (),
            'not recorded here', notes=_IRNEXT_NOTE, arch_args=None,
            adapt='no desnowing option file here: start from options/test/Rain13K/IRNeXt.yml', tag='desnow'),
    Release('IRNeXt', None, 'single-image defocus deblurring', 'DPDD (centre view)', _IRNEXT_OTHER, 'deblur',
            ('options/test/DPDD/IRNeXt.yml',), 'model', (), 'not recorded here', notes=_IRNEXT_NOTE,
            arch_args=None, adapt=_IRNEXT_ADAPT, tag='DPDD'),
    # ----------------------------------------------------------------------------------------------- ChaIR
    Release('ChaIR', 'its4196.pkl', 'dehazing (indoor)', 'RESIDE ITS; tested on SOTS-Indoor',
            _CYN_DEHAZE.format(repo='c-yn/ChaIR'), 'dehaze', ('options/test/GoPro/ChaIR.yml',), 'model',
            (('SOTS-Indoor', 41.95, 0.997),), 'README table',
            notes=_DEMO_NAME.format(fork='shaunhwq/ChaIR', net='chair') + '; the name suggests 41.96 dB on '
                  'their run; loads into the default ChaIR() (num_res 16)',
            adapt='SOTS-Indoor pairs as the test set (num_res: 16 stays)', tag='its'),
    Release('ChaIR', 'model_ots_4073_9968.pkl', 'dehazing (outdoor)', 'RESIDE OTS; tested on SOTS-Outdoor',
            _CYN_DEHAZE.format(repo='c-yn/ChaIR'), 'dehaze', ('options/test/GoPro/ChaIR.yml',), 'model',
            (('SOTS-Outdoor', 40.73, 0.997),), 'README table',
            notes=_DEMO_NAME.format(fork='shaunhwq/ChaIR', net='chair') + '; the name suggests 40.73 dB / '
                  '0.9968; loads into the default ChaIR() (num_res 16)',
            adapt='SOTS-Outdoor pairs as the test set (num_res: 16 stays)', tag='ots'),
    Release('ChaIR', None, 'motion deblurring', 'GoPro; HIDE tested with the same model',
            _CYN_DEBLUR.format(ref='c-yn/ChaIR issue #6', fork='shaunhwq/ChaIR'), 'dehaze',
            ('options/test/GoPro/ChaIR.yml',), 'model', (('GoPro', 33.28, 0.963), ('HIDE', 30.97, 0.941)),
            'README table',
            notes='file name not recorded here: save it as ChaIR_GoPro.pkl. The same blocks as the dehazing '
                  'files; num_res 16 is likely but unconfirmed. ' + _NUM_RES + '.',
            arch_args=None, adapt='as it is when convert reports num_res 16; else set network_g num_res to the '
                                  'value it reports', tag='GoPro'),
    Release('ChaIR', None, 'other tasks of the paper: RSBlur deblurring, deraining, desnowing, DPDD, real haze',
            'RSBlur; Rain100L/H training sets; CSD, SRRS, Snow100K; DPDD (centre view); Dense-Haze, NHR',
            'no checkpoint for these tasks is known (the README links their result images only)', 'dehaze',
            ('options/train/Rain13K/ChaIR.yml', 'options/test/Rain13K/ChaIR.yml', 'options/train/DPDD/ChaIR.yml',
             'options/test/DPDD/ChaIR.yml'), 'model',
            (('RSBlur', 34.25, 0.871), ('Rain100L', 38.20, 0.973), ('Rain100H', 31.74, 0.906),
             ('CSD', 39.24, 0.99), ('SRRS', 31.91, 0.98), ('Snow100K', 33.79, 0.95), ('DPDD', 26.29, 0.816),
             ('Dense-Haze', 17.50, 0.62), ('NHR', 28.18, 0.98)), 'README table',
            notes='the num_res of these models is not published; the option files here use 16 (a guess)',
            released='unknown', tag='other'),
    # ---------------------------------------------------------------------------------------------- MIRNet
    Release('MIRNet', 'model_denoising.pth', 'real denoising (sRGB)', 'SIDD-Medium; tested on SIDD validation and DND',
            "the Google Drive folder named in pretrained_models/download_models.txt of the official GitHub "
            "repository (swz30/MIRNet)", 'default', ('options/test/SIDD/MIRNet.yml',), 'state_dict',
            (('SIDD validation', 39.72, 0.959), ('DND (online server)', 39.88, 0.956)), 'recalled, unverified',
            notes="{'epoch', 'state_dict', 'optimizer'}; a module. prefix, when present, is stripped",
            tag='denoising'),
    Release('MIRNet', 'model_SR_x3.pth', 'real super-resolution x3', 'RealSR version 1 (Canon + Nikon)',
            "the Google Drive folder named in pretrained_models/download_models.txt (swz30/MIRNet)", 'default',
            ('options/test/SIDD/MIRNet.yml',), 'state_dict', (('RealSR x3', 31.16, 0.885),), 'recalled, low confidence',
            notes='no upsampler: the input is the low-resolution image already resized to the output size '
                  '(as RealSR version 1 ships it)',
            adapt='RealSR x3 pairs as the test set (inputs resized to the output size)', tag='SR_x3'),
    Release('MIRNet', 'model_SR_x4.pth', 'real super-resolution x4', 'RealSR version 1 (Canon + Nikon)',
            "the Google Drive folder named in pretrained_models/download_models.txt (swz30/MIRNet)", 'default',
            ('options/test/SIDD/MIRNet.yml',), 'state_dict', (('RealSR x4', 29.14, 0.843),), 'recalled, low confidence',
            notes='no upsampler: resize the input to the output size first (bicubic), as RealSR version 1 does',
            adapt='RealSR x4 pairs as the test set (inputs resized to the output size)', tag='SR_x4'),
    Release('MIRNet', None, 'real super-resolution x2', 'RealSR version 1 (Canon + Nikon)',
            'never released: the x2 file is missing from the folder (swz30/MIRNet issue #22)', 'default', (),
            'state_dict', (('RealSR x2', 34.35, 0.935),), 'recalled, low confidence',
            notes='no option file here trains MIRNet for super-resolution; adapt options/train/SIDD/MIRNet.yml',
            released='no', tag='SR_x2'),
    Release('MIRNet', 'model_lol.pth', 'low-light enhancement', 'LOL (485 training pairs, 15 test images)',
            "the Google Drive folder named in pretrained_models/download_models.txt (swz30/MIRNet)", 'default',
            ('options/test/SIDD/MIRNet.yml',), 'state_dict', (('LOL', 24.14, 0.830),), 'recalled, unverified',
            notes='users report that this file scores below the released result images (swz30/MIRNet issue #15); '
                  "the authors' numbers come from MATLAB",
            adapt='LOL test pairs as the test set', tag='lol'),
    Release('MIRNet', 'model_fivek.pth', 'photo enhancement', 'MIT-Adobe FiveK, expert C retouches',
            "the Google Drive folder named in pretrained_models/download_models.txt (swz30/MIRNet)", 'default',
            ('options/test/SIDD/MIRNet.yml',), 'state_dict', (('MIT-Adobe FiveK', 23.73, 0.925),),
            'recalled, unverified',
            notes='the 4,500 / 500 split is recalled, not checked',
            adapt='FiveK expert C test pairs as the test set', tag='fivek'),
    # ---------------------------------------------------------------------------------------------- DRCNet
    Release('DRCNet', None, 'motion deblurring', 'GoPro',
            'none: the official repository (leefly072/DRCNet) links no weights', 'default',
            ('options/train/GoPro/DRCNet.yml', 'options/test/GoPro/DRCNet.yml'), 'params', (), 'not recorded here',
            notes='the GoPro recipe uses region '
                  'normalisation on levels 2..3 (same layout as the preset)',
            released='no', tag='GoPro'),
    Release('DRCNet', None, 'deraining', 'Rain13K; tested on Test100, Rain100H/L, Test1200, Test2800',
            'none: the official repository (leefly072/DRCNet) links no weights', 'default',
            ('options/train/Rain13K/DRCNet.yml', 'options/test/Rain13K/DRCNet.yml'), 'params', (), 'not recorded here',
            notes='scored on the Y channel, as the authors do', released='no', tag='Rain13K'),
    Release('DRCNet', None, 'real denoising', 'SIDD',
            'none: the official repository (leefly072/DRCNet) links no weights', 'default',
            ('options/train/SIDD/DRCNet.yml', 'options/test/SIDD/DRCNet.yml'), 'params', (), 'not recorded here',
            released='no', tag='SIDD'),
    # ------------------------------------------------------------------------------------------------ EIRN
    Release('EIRN', None, 'motion deblurring', 'GoPro',
            'none: the official repository (XinyueZhangqdu/EIRN) holds a README only; the three trained models '
            'it promised were never posted', 'deblur', ('options/train/GoPro/EIRN.yml', 'options/test/GoPro/EIRN.yml'),
            None, (), 'none published',
            notes="EIRN-R (this package's reconstruction): its numbers are not EIRN's", released='no', tag='GoPro'),
    Release('EIRN', None, 'real denoising', 'SIDD',
            'none: the official repository (XinyueZhangqdu/EIRN) holds a README only', 'denoise',
            ('options/train/SIDD/EIRN.yml', 'options/test/SIDD/EIRN.yml'), None, (), 'none published',
            notes="EIRN-R (this package's reconstruction): its numbers are not EIRN's", released='no',
            arch_args=('n_feat=80',), tag='SIDD'),
    Release('EIRN', None, 'deraining', 'Rain13K',
            'none: the official repository (XinyueZhangqdu/EIRN) holds a README only', 'derain',
            ('options/train/Rain13K/EIRN.yml', 'options/test/Rain13K/EIRN.yml'), None, (), 'none published',
            notes="EIRN-R (this package's reconstruction): its numbers are not EIRN's", released='no',
            arch_args=('n_feat=40', 'scale_unetfeats=20', 'scale_orsnetfeats=16'), tag='Rain13K'),
)


def releases(network=None):
    """The releases of ``network`` (any case), or of every network; a clear error for an unknown name."""
    if network is None:
        return list(RELEASES)
    found = [n for n in NETWORKS if n.lower() == network.lower()]
    if not found:
        raise ValueError(f"unknown network {network!r}; the zoo knows: {', '.join(NETWORKS)}.")
    return [r for r in RELEASES if r.network == found[0]]


# ------------------------------------------------------------------------------------------ the listing
#: what the listing names a release by when there is no file name
_NO_NAME = {'yes': '(file name not recorded here)', 'no': 'no checkpoint', 'unknown': 'no checkpoint known'}


def _preset_text(r):
    if r.arch_args is None:
        how = 'a starting point: the configuration of this file is not published'
    else:
        how = 'the defaults' if not r.arch_args else ' '.join(r.arch_args)
    return f'{r.network} preset `{r.preset}` ({how})'


def text(chosen, width=110):
    """The listing of ``chosen`` (releases), grouped by network; values wrapped at ``width`` (not commands)."""
    lines = []
    indent = ' ' * 17
    for network in NETWORKS:
        group = [r for r in chosen if r.network == network]
        if not group:
            continue
        lines += [f'{network}: {SUMMARY[network]}', '']
        for r in group:
            lines.append(f'  {r.file or _NO_NAME[r.released]} -- {r.task}')
            rows = [('trained on', r.trained_on), ('published', r.published), ('preset', _preset_text(r)),
                    ('options', r.options_text()), ('weights key', r.checkpoint_key or 'none (no official file)'),
                    ('reported', r.metrics_text())]
            if r.notes:
                rows.append(('notes', r.notes))
            for label, value in rows:
                lines += textwrap.wrap(value, width, initial_indent=f'    {label + ":":<13}', subsequent_indent=indent,
                                       break_on_hyphens=False)
            commands = r.commands() or ['none (see the notes)']
            lines += [f'    {"next:" if i == 0 else "":<13}{c}' for i, c in enumerate(commands)]
            lines.append('')
    lines.append('Nothing is downloaded: fetch a file from where it was published, then run the next commands.')
    return '\n'.join(lines)


def add_arguments(p):
    """The ``zoo`` options (used by ``basicsr_restore.commands.cli``)."""
    p.add_argument('network', nargs='?', metavar='NETWORK', help=f"one network ({', '.join(NETWORKS)}; default: all)")
    p.add_argument('--json', action='store_true', help='print the table as JSON (a list of releases)')


def run(args):
    chosen = releases(args.network)
    out = json.dumps([r.as_dict() for r in chosen], indent=2) if args.json else text(chosen)
    try:
        print(out, flush=True)
    except BrokenPipeError:  # `zoo | head`: the reader has what it wanted
        sys.stdout = open(os.devnull, 'w')
    return 0
