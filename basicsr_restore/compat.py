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
* **CPU-safe resume**: basicsr's ``load_resume_state`` maps the state onto ``torch.cuda.current_device()``
  and fails on machines without CUDA. The runner that calls ``parse_options`` gets a version that maps to
  the device the options ask for, and reads the states from ``path.training_states``.
* **--local-rank**: ``torch.distributed.launch`` on torch >= 2 passes ``--local-rank=N``, which basicsr's
  argument parser rejects; it is rewritten to ``--local_rank=N``.
"""
import os
import sys
from collections import OrderedDict

import basicsr_restore_autoload as _autoload

#: human-readable list of the fixes that were needed and applied in this process
APPLIED = []

_SITE_DIRS = ('site-packages', 'dist-packages')


def _note(message):
    if message not in APPLIED:
        APPLIED.append(message)


def ensure_import_fixes():
    """Make ``import basicsr`` work (idempotent). Does nothing where the real modules exist."""
    _autoload.install_fallbacks()
    for name in _autoload.STATE.get('aliases_served', []):
        _note(f'served a stand-in for the missing module {name}')


def import_fixes_report():
    """Which stand-in modules were served so far (after ``import basicsr``)."""
    return list(_autoload.STATE.get('aliases_served', []))


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
            _note('rewrote --local-rank to --local_rank for basicsr')


def load_resume_state(opt):
    """basicsr's ``load_resume_state`` without the CUDA-only ``map_location``.

    With ``--auto_resume`` the newest ``<iter>.state`` in ``path.training_states`` is used; otherwise
    ``path.resume_state`` if set. The state is mapped to the GPU when the options use one, else the CPU.
    """
    import torch
    from basicsr.utils import check_resume

    resume_path = None
    if opt.get('auto_resume'):
        state_dir = opt['path'].get('training_states') or os.path.join('experiments', opt['name'], 'training_states')
        if os.path.isdir(state_dir):
            iters = [int(f[:-len('.state')]) for f in os.listdir(state_dir)
                     if f.endswith('.state') and f[:-len('.state')].isdigit()]
            if iters:
                resume_path = os.path.join(state_dir, f'{max(iters)}.state')
                opt['path']['resume_state'] = resume_path
    else:
        resume_path = opt['path'].get('resume_state')
    if resume_path is None:
        return None
    if not os.path.isfile(resume_path):
        raise FileNotFoundError(f"path.resume_state: '{resume_path}' does not exist. Point the option at a "
                                '<iter>.state file in the training_states folder of the run, or use --auto_resume.')
    if opt.get('num_gpu', 0) != 0 and torch.cuda.is_available():
        device = torch.device('cuda', torch.cuda.current_device())
    else:
        device = torch.device('cpu')
    state = torch.load(resume_path, map_location=device, weights_only=True)
    check_resume(opt, state['iter'])
    return state


def _needs_cpu_safe_resume(func):
    code = getattr(func, '__code__', None)
    return code is not None and 'current_device' in code.co_names and func is not load_resume_state


def _wrap_parse_options(original):
    if getattr(original, '_basicsr_restore_wrapped', False):
        return original

    def parse_options(root_path, is_train=True):
        _normalise_local_rank_flag()
        caller = sys._getframe(1).f_globals
        if _needs_cpu_safe_resume(caller.get('load_resume_state')):
            caller['load_resume_state'] = load_resume_state
            _note('resume works without CUDA (load_resume_state of the runner replaced)')
        redirect = _is_site_dir(root_path) and os.environ.get('BASICSR_RESTORE_NO_ROOT_REDIRECT', '') in ('', '0')
        if redirect:
            _note(f'root redirected from {root_path} to the current directory')
            root_path = os.getcwd()
        opt, args = original(root_path, is_train)
        if redirect:
            opt = _PinnedRootOptions(opt)
            opt['root_path'] = root_path
        return opt, args

    parse_options._basicsr_restore_wrapped = True
    parse_options.__wrapped__ = original
    return parse_options


def apply_runner_fixes():
    """Wrap ``parse_options`` where basicsr's runners look it up. Idempotent; needs basicsr imported."""
    import basicsr.utils.options as options
    options.parse_options = _wrap_parse_options(options.parse_options)
    for name in ('basicsr.train', 'basicsr.test', '__main__'):
        module = sys.modules.get(name)
        if module is not None and getattr(module, 'parse_options', None) is not None:
            if getattr(module.parse_options, '__module__', '') == 'basicsr.utils.options':
                module.parse_options = _wrap_parse_options(module.parse_options)
