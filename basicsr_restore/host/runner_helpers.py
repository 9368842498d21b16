"""What changes inside basicsr's own runners (``basicsr.train`` / ``basicsr.test``), and only there.

The runner module that calls ``parse_options`` (``__main__`` for ``python -m basicsr.train``, or
``basicsr.train`` when a script calls ``train_pipeline``) looks its helpers up in its own globals at run time;
:func:`adopt` replaces a few of them there, once the option file is known (nothing on disk is patched):

* ``load_resume_state``: CPU-safe, newest loadable state, stale temporaries swept, data position kept
  (``resume.load_resume_state``);
* ``create_train_val_dataloader``: basicsr's, then, for this package's models, the training loader rebuilt
  around the same dataset as the seeded, resumable one (``resume.seed_train_loader``); other models keep basicsr's;
* ``make_exp_dirs``: basicsr makes a folder of every ``path.*`` value, so ``path.weights_only_g: false``
  crashed it; only string values that name folders are made;
* ``build_dataset`` (test runs of this package's models): a test set whose files are missing becomes a
  placeholder that the model reports, so one missing set does not stop the others.
"""
import os

from basicsr_restore.core import resume
from basicsr_restore.models.restoration_model import RestorationModel
from basicsr_restore.models.validation import MissingTestSet

#: originals of the replaced names, per runner module
_ORIGINALS = {}
#: the options of the run being parsed in this process
CURRENT = {}


def plugin_model(opt):
    """Whether ``opt['model_type']`` is a model of this package (it declares the keys it reads)."""
    from basicsr.utils.registry import MODEL_REGISTRY
    name = opt.get('model_type')
    return name in MODEL_REGISTRY and getattr(MODEL_REGISTRY.get(name), 'OPTION_KEYS', None) is not None


def is_runner_module(module_globals):
    """True for the globals of basicsr's ``train.py`` / ``test.py`` (as a module or as ``__main__``)."""
    import basicsr
    path = module_globals.get('__file__') or ''
    return (os.path.basename(path) in ('train.py', 'test.py')
            and os.path.dirname(os.path.realpath(path)) == os.path.dirname(os.path.realpath(basicsr.__file__)))


def _folder_options(opt):
    """``opt`` with ``path`` reduced to the values basicsr should make folders of (strings, not options)."""
    not_folders = RestorationModel.OPTION_KEYS['path']
    trimmed = dict(opt)
    trimmed['path'] = {k: v for k, v in opt['path'].items() if isinstance(v, str) and k not in not_folders}
    return trimmed


def make_exp_dirs(opt):
    """basicsr's ``make_exp_dirs`` for the folder-valued ``path`` entries only."""
    from basicsr.utils.misc import make_exp_dirs as original
    original(_folder_options(opt))


def _missing_files(dataset_opt):
    return [f"{key} '{value}' does not exist" for key, value in dataset_opt.items()
            if (key.startswith('dataroot') or key == 'meta_info_file') and isinstance(value, str)
            and not os.path.exists(value)]


def _tolerant_build_dataset(original):
    def build_dataset(dataset_opt):
        opt = CURRENT.get('opt') or {}
        missing = _missing_files(dataset_opt)
        several = len(opt.get('datasets') or {}) > 1
        if missing and plugin_model(opt) and (several or dataset_opt.get('optional')):
            return MissingTestSet(dataset_opt, '; '.join(missing))
        return original(dataset_opt)

    build_dataset._basicsr_restore = True
    return build_dataset


def _plugin_loaders(original):
    def create_train_val_dataloader(opt, logger):
        loaders = original(opt, logger)
        return resume.seed_train_loader(loaders, opt, logger) if plugin_model(opt) else loaders

    create_train_val_dataloader._basicsr_restore = True
    return create_train_val_dataloader


def adopt(module_globals, is_train):
    """Replace the helpers of a runner module (idempotent; other callers of parse_options are left alone); returns the
    names replaced now."""
    if not is_runner_module(module_globals):
        return []
    key = id(module_globals)
    originals = _ORIGINALS.setdefault(key, {})
    replacements = {'make_exp_dirs': lambda _: make_exp_dirs}
    if is_train:
        replacements.update(load_resume_state=lambda _: resume.load_resume_state,
                            create_train_val_dataloader=_plugin_loaders)
    else:
        replacements['build_dataset'] = _tolerant_build_dataset
    replaced = []
    for name, make in replacements.items():
        current = module_globals.get(name)
        if current is None or getattr(current, '_basicsr_restore', False) or current is resume.load_resume_state \
                or current is make_exp_dirs:
            continue
        originals[name] = current
        module_globals[name] = make(current)
        replaced.append(name)
    return replaced


def remember(opt):
    CURRENT['opt'] = opt

