"""The plugin's registration entry point (``basicsr.plugins``): every network, loss, dataset, model and metric of the
package in BasicSR's registries, and the runner fixes applied, once.

Registration waits for this package's own imports: when a module of the package is imported before basicsr (``from
basicsr_restore.data.paired_dataset import ...``), its ``import basicsr`` fires the startup hook, which asks for
:func:`register_all` while that module is still half-executed; importing the registering modules then would fail on
the names it has not defined yet. Until registration is done, this package's modules are therefore loaded through
:class:`_ModuleWatch`, and a registration asked for while one of them is executing runs as soon as the outermost one
has finished (a failure then is reported as the hook reports it: one warning).
"""
import sys
import threading

import basicsr_restore_autoload
from basicsr_restore.core import registry
from basicsr_restore.host import compat

_done = False
#: a registration was asked for while a module of this package was executing (see the module docstring)
_deferred = False
_PACKAGE = 'basicsr_restore'  # also the name of its ``basicsr.plugins`` entry point
#: ``depth``: how many modules of this package are executing in this thread (nested imports)
_executing = threading.local()


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
    compat.ensure_import_fixes()
    registry.register_plain_torch()
    for sub in registry.SUBPACKAGES:
        if sub not in registry.PLAIN_TORCH:
            registry.package_modules(sub)  # their classes register themselves (``@register(kind)``)
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
