"""Registration of this package in BasicSR's registries: the one place, idempotent and clash-checked.

Networks and losses are plain torch modules that know nothing of basicsr: every class with a network card in
an ``archs/*_arch.py`` module and every ``*Loss`` class of a ``losses/*_loss.py`` module is registered here.
Datasets, the model and the metrics build on basicsr's classes and register with ``@register(kind)``.

BasicSR's ``Registry`` raises a bare ``AssertionError`` when a name is registered twice, which happens as
soon as a module is imported under two names or reloaded. Our classes register through :func:`register`
instead: the same class (or a reload of it) is accepted again, a different object under a taken name is a
clear error naming both owners.

Registration waits for this package's own imports: when a module of the package is imported before basicsr (``from
basicsr_restore.data.paired_dataset import ...``), its ``import basicsr`` fires the startup hook, which asks for
:func:`register_all` while that module is still half-executed; importing the registering modules then would fail on
the names it has not defined yet. Until registration is done, this package's modules are therefore loaded through
:class:`_ModuleWatch`, and a registration asked for while one of them is executing runs as soon as the outermost one
has finished (a failure then is reported as the hook reports it: one warning).
"""
import importlib
import pkgutil
import sys
import threading

import basicsr_restore_autoload

KINDS = ('arch', 'dataset', 'loss', 'metric', 'model')
#: registry name -> names registered by this package, in registration order
OURS = {name: [] for name in KINDS}


def registry(kind):
    """basicsr's registry of ``kind`` (imported here, when something is registered)."""
    from basicsr.utils import registry as registries
    return getattr(registries, f'{kind.upper()}_REGISTRY')

# subpackages whose modules with these suffixes register classes when imported (basicsr's convention)
_SUBPACKAGES = {'archs': '_arch', 'losses': '_loss', 'models': '_model', 'data': '_dataset', 'metrics': '_metric'}
_done = False
#: a registration was asked for while a module of this package was executing (see the module docstring)
_deferred = False
_PACKAGE = 'basicsr_restore'  # also the name of its ``basicsr.plugins`` entry point
#: ``depth``: how many modules of this package are executing in this thread (nested imports)
_executing = threading.local()


def register(kind):
    """Class/function decorator: ``@register('arch')`` registers ``obj`` under ``obj.__name__``."""
    def deco(obj):
        target = registry(kind)
        name = obj.__name__
        if name in target:
            existing = target._obj_map[name]
            same = existing is obj or (getattr(existing, '__module__', None) == obj.__module__
                                       and getattr(existing, '__qualname__', None) == obj.__qualname__)
            if not same:
                raise RuntimeError(
                    f"basicsr-restore cannot register {kind} '{name}' from {obj.__module__}: the name is already "
                    f"taken by {getattr(existing, '__module__', '?')}.{getattr(existing, '__qualname__', name)}. "
                    'Uninstall the package that provides the other one, or rename one of them.')
        # a reload of the same module replaces the old object
        target._obj_map[name] = obj
        if name not in OURS[kind]:
            OURS[kind].append(name)
        return obj

    return deco


def networks_of(module):
    """The network classes a module defines: classes with a network card (``card``) named after them."""
    from basicsr_restore.archs.card import card_of
    return [obj for obj in vars(module).values() if isinstance(obj, type) and obj.__module__ == module.__name__
            and card_of(obj) is not None and obj.card.name == obj.__name__]


def losses_of(module):
    """The losses a module defines: ``torch.nn.Module`` classes named ``*Loss`` (basicsr's convention)."""
    from torch import nn
    return [obj for obj in vars(module).values() if isinstance(obj, type) and obj.__module__ == module.__name__
            and issubclass(obj, nn.Module) and obj.__name__.endswith('Loss')]


def register_module(module):
    """Register what a plain-torch module defines: its networks (``*_arch``) or its losses (``*_loss``).
    Also the way to add a network or loss of one's own: ``register_module(my_arch)``."""
    networks, losses = networks_of(module), losses_of(module)
    for kind, objs in (('arch', networks), ('loss', losses)):
        for obj in objs:
            register(kind)(obj)
    return networks + losses


def _import_registering_modules():
    for sub, suffix in _SUBPACKAGES.items():
        package = importlib.import_module(f'basicsr_restore.{sub}')
        for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
            if info.name.endswith(suffix):
                module = importlib.import_module(f'basicsr_restore.{sub}.{info.name}')
                if sub in ('archs', 'losses'):  # plain torch: registered here, not by a decorator
                    register_module(module)


def network_names():
    """The names of the networks registered by this package (and by :func:`register_module`), in registration
    order, after :func:`register_all`: ``import basicsr_restore`` is light and registers nothing until basicsr is
    imported, so :data:`OURS` alone may still be empty. Every caller that lists the networks asks here."""
    register_all()
    return list(OURS['arch'])


def register_all():
    """Import every registering module once and apply the runner fixes. Safe to call any number of times. Asked for
    while a module of this package is executing (the hook fired inside its ``import basicsr``), it runs once that
    import has finished."""
    global _done, _deferred
    if _done:
        return
    if getattr(_executing, 'depth', 0):
        _deferred = True
        return
    from basicsr_restore import compat
    compat.ensure_import_fixes()
    _import_registering_modules()
    compat.apply_runner_fixes()
    compat.read_raw_values_in_basicsr()
    _done = True
    _remove_watch()


# ------------------------------------------------------------------ registration after our own imports
class _ModuleWatch:
    """Meta-path finder for this package's modules, on ``sys.meta_path`` from ``import basicsr_restore`` until
    :func:`register_all` has run: their loaders are wrapped by :class:`_Counted`."""

    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        if _done or not fullname.startswith(_PACKAGE + '.'):
            return None
        return basicsr_restore_autoload.spec_with_loader(cls, fullname, path, target, _Counted)


class _Counted(basicsr_restore_autoload.DelegatingLoader):
    """Delegates to the module's loader, counting the modules of this package executing in this thread; when the
    outermost one has finished, a registration asked for meanwhile runs."""

    def exec_module(self, module):
        module.__spec__.loader = module.__loader__ = self._loader  # the real loader answers from now on
        depth = getattr(_executing, 'depth', 0)
        _executing.depth = depth + 1
        try:
            self._loader.exec_module(module)
        finally:  # a module that raised: its importer gets the error; the registration waits for the next import
            _executing.depth = depth
        if not depth:
            _run_deferred()


def _run_deferred():
    global _deferred
    if not _deferred:
        return
    _deferred = False
    try:
        register_all()
    except Exception as exc:  # as the hook reports a plugin that fails to load: one warning, basicsr goes on
        if _PACKAGE in basicsr_restore_autoload.LOADED:
            basicsr_restore_autoload.LOADED.remove(_PACKAGE)
        basicsr_restore_autoload._report_failure(_PACKAGE, exc)


def watch_imports():
    """Put :class:`_ModuleWatch` on ``sys.meta_path`` (``import basicsr_restore`` does; idempotent)."""
    if not _done and _ModuleWatch not in sys.meta_path:
        sys.meta_path.insert(0, _ModuleWatch)


def _remove_watch():
    try:
        sys.meta_path.remove(_ModuleWatch)
    except ValueError:
        pass
