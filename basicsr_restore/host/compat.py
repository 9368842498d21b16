"""The few fixes basicsr 1.4.2 needs on today's stack. Each one detects whether it is needed.

Import-time fixes (installed before basicsr is imported; see ``basicsr_restore_autoload``):

* ``torchvision.transforms.functional_tensor`` alias (torchvision >= 0.17 removed the module that
  ``basicsr.data.degradations`` imports, so ``import basicsr`` fails without it);
* ``distutils.version`` fallback (Python >= 3.12 without setuptools' distutils).

Runner fixes (wrappers around ``basicsr.utils.options.parse_options``; nothing on disk is patched):

* **root redirect**: ``python -m basicsr.train`` computes its root as the folder that holds the
  ``basicsr`` package, which is ``site-packages`` for an installed basicsr, so experiments, results and
  tb_logger would land there and ``--auto_resume`` (which looks under the current directory) would never
  find its states. When that root is a ``site-packages``/``dist-packages`` folder, the current directory
  is used instead. ``BASICSR_RESTORE_NO_ROOT_REDIRECT=1`` turns this off.
* **runner helpers** (``runner_helpers.adopt``): CPU-safe, exact resume; the seeded training loader of this package's
  models; ``make_exp_dirs`` that survives non-folder ``path`` options; test runs that go on past a missing set;
* **distributed start** (``distributed.init_dist``): device from ``LOCAL_RANK``, ``dist_params.backend``
  honoured (gloo on the CPU);
* **option check** (``option_checks``): unknown keys, type names and arguments stop the run before it starts,
  and errors of this package print as one message without a traceback (``errors``);
* **--local-rank**: ``torch.distributed.launch`` on torch >= 2 passes ``--local-rank=N``, which basicsr's
  argument parser rejects; it is rewritten to ``--local_rank=N``.

Reader fix (:func:`read_raw_values_in_basicsr`): basicsr's own datasets (``PairedImageDataset`` and the others that
decode LMDB values with ``imfrombytes``) read this package's ``raw`` LMDB values too, with the numbers they would get
from the same image stored as PNG (OpenCV's decoding would return None and crash the next line).
"""
import os
import sys
from collections import OrderedDict

import basicsr_restore_autoload as _autoload
from basicsr_restore.core import errors, option_files
from basicsr_restore.host import option_checks

#: human-readable list of the fixes that were needed and applied in this process
APPLIED = []

_SITE_DIRS = ('site-packages', 'dist-packages')


def note(message):
    if message not in APPLIED:
        APPLIED.append(message)


def when_basicsr_imported(callback):
    """Call ``callback()`` once basicsr is imported, or now if it already is (see ``basicsr_restore_autoload``)."""
    _autoload.when_basicsr_imported(callback)


def ensure_import_fixes():
    """Make ``import basicsr`` work (idempotent). Does nothing where the real modules exist."""
    _autoload.install_fallbacks()
    for name in _autoload.STATE.get('aliases_served', []):
        note(f'served a stand-in for the missing module {name}')


class _PinnedRootOptions(OrderedDict):
    """Option dict whose ``root_path`` stays the redirected one.

    ``basicsr.train.train_pipeline`` overwrites ``opt['root_path']`` with its own (site-packages) root right
    after ``parse_options`` returns, and later derives the tb_logger folder from it.
    """

    def __setitem__(self, key, value):
        if key == 'root_path' and 'root_path' in self:
            return
        super().__setitem__(key, value)

    def __reduce__(self):  # deep copies and pickles become plain OrderedDicts
        return OrderedDict, (list(self.items()),)


def _is_site_dir(path):
    return os.path.basename(os.path.normpath(str(path))) in _SITE_DIRS


def _normalise_local_rank_flag():
    for i, arg in enumerate(sys.argv):
        if arg.startswith('--local-rank'):
            sys.argv[i] = arg.replace('--local-rank', '--local_rank', 1)
            note('rewrote --local-rank to --local_rank for basicsr')


def _argument(flag):
    """The value of ``flag`` (``-opt X`` or ``-opt=X``) in ``sys.argv``, or None."""
    for i, arg in enumerate(sys.argv):
        if arg == flag and i + 1 < len(sys.argv):
            return sys.argv[i + 1]
        if arg.startswith(flag + '='):
            return arg.split('=', 1)[1]
    return None


def _remember_launch_options(raw):
    """``dist_params`` and ``num_gpu`` of the option file's content ``raw``, for ``distributed.init_dist`` (which
    basicsr calls before the parsed options exist, without ``dist_params`` for the pytorch launcher)."""
    from basicsr_restore.core import distributed  # keeps ``import basicsr_restore`` light (torch)
    distributed.PENDING.clear()
    if _argument('--launcher') in (None, 'none'):
        return
    if isinstance(raw, dict):
        distributed.PENDING.update(dist_params=raw.get('dist_params') or {}, num_gpu=raw.get('num_gpu', 'auto'))


def _wrap_parse_options(original):
    if getattr(original, '_basicsr_restore_wrapped', False):
        return original

    def parse_options(root_path, is_train=True):
        from basicsr_restore.host import runner_helpers  # imports basicsr's runners: only once a run starts
        errors.install_excepthook()
        _normalise_local_rank_flag()
        for name in runner_helpers.adopt(sys._getframe(1).f_globals, is_train):
            note(f'{name} of the runner replaced (basicsr_restore.host.runner_helpers)')
        path = _argument('-opt')
        raw = option_files.check_yaml(path) if path else None  # one line for a missing file or bad YAML
        _remember_launch_options(raw)
        redirect = _is_site_dir(root_path) and os.environ.get('BASICSR_RESTORE_NO_ROOT_REDIRECT', '') in ('', '0')
        if redirect:
            note(f'root redirected from {root_path} to the current directory')
            root_path = os.getcwd()
        opt, args = original(root_path, is_train)
        option_checks.check_options(opt, source=f"-opt '{args.opt}'")
        if redirect:
            opt = _PinnedRootOptions(opt)
            opt['root_path'] = root_path
        runner_helpers.remember(opt)
        return opt, args

    parse_options._basicsr_restore_wrapped = True
    parse_options.__wrapped__ = original
    return parse_options


def apply_runner_fixes():
    """Wrap ``parse_options`` where basicsr's runners look it up. Idempotent; needs basicsr imported."""
    import basicsr.utils.options as options

    from basicsr_restore.core import distributed  # keeps ``import basicsr_restore`` light (torch)
    options.parse_options = _wrap_parse_options(options.parse_options)
    if getattr(options, 'init_dist', None) is not distributed.init_dist:
        options.init_dist = distributed.init_dist  # what basicsr's parse_options calls for --launcher
    for name in ('basicsr.train', 'basicsr.test', '__main__'):
        module = sys.modules.get(name)
        if module is not None and getattr(module, 'parse_options', None) is not None:
            if getattr(module.parse_options, '__module__', '') == 'basicsr.utils.options':
                module.parse_options = _wrap_parse_options(module.parse_options)


def _raw_aware(original):
    import numpy as np

    # keeps ``import basicsr_restore`` light (numpy): only basicsr's readers need these
    from basicsr_restore.core.imageio import to_8bit
    from basicsr_restore.data.lmdb_io import RawImage

    def imfrombytes(content, flag='color', float32=False):
        if not RawImage.is_raw(content):
            return original(content, flag, float32)
        img = RawImage.parse(content, "basicsr's imfrombytes (a raw LMDB value)").whole()
        if flag == 'color':  # what OpenCV's IMREAD_COLOR makes of the same PNG: 8 bits, 3 channels (BGR)
            img = to_8bit(img)
            img = np.repeat(img, 3, axis=2) if img.shape[2] == 1 else img[:, :, :3]
        elif flag == 'unchanged':
            img = img[:, :, 0] if img.shape[2] == 1 else img
        else:
            raise ValueError(f"basicsr's imfrombytes with flag {flag!r} cannot read raw LMDB values; store this LMDB "
                             'as PNG (`basicsr-restore prepare lmdb-format SRC DST --format png`).')
        return img.astype(np.float32) / 255. if float32 else np.ascontiguousarray(img)

    imfrombytes.__wrapped__ = original
    return imfrombytes


def read_raw_values_in_basicsr():
    """Let every basicsr module that decodes with ``imfrombytes`` read raw LMDB values (idempotent)."""
    import basicsr.utils.img_util as img_util
    current = img_util.imfrombytes
    original = getattr(current, '__wrapped__', current)
    wrapped = current if current is not original else _raw_aware(original)
    for name, module in list(sys.modules.items()):
        if (name == 'basicsr.utils' or name.startswith(('basicsr.data', 'basicsr.utils.img_util'))) and \
                getattr(module, 'imfrombytes', None) is original:
            module.imfrombytes = wrapped
