"""Startup hook of basicsr-restore: lets stock ``python -m basicsr.train`` find BasicSR plugins.

``basicsr_restore.pth`` (site-packages root) calls :func:`install` at interpreter start. It must stay
tiny: it imports only ``os`` and ``sys`` (both already loaded at start-up) and does three things:

1. appends, *after* every real finder, an alias for ``torchvision.transforms.functional_tensor`` (removed
   in torchvision 0.17 and still imported by basicsr 1.4.2) and a ``distutils.version`` fallback for
   Pythons without distutils. Because they come last, a real module always wins: they cost nothing
   where they are not needed;
2. puts a one-shot finder first on ``sys.meta_path`` that reacts only to the top-level name ``basicsr``.
   When ``basicsr/__init__`` has finished executing, it loads every entry point of the group
   ``basicsr.plugins`` (basicsr-restore registers itself there; other plugins may join) and removes
   itself;
3. does nothing at all when ``BASICSR_RESTORE_NO_AUTOLOAD=1``.

A plugin that fails to load never breaks the program that imported basicsr: one warning goes to
stderr, the error is kept in :data:`FAILURES`, and basicsr's "not found in registry" errors then say
which plugin failed and why.
"""
import os
import sys

ENV_OFF = 'BASICSR_RESTORE_NO_AUTOLOAD'
GROUP = 'basicsr.plugins'

#: names of the plugins loaded by the hook, in order
LOADED = []
#: ``(plugin name, 'ExcType: message')`` for every plugin that failed to load
FAILURES = []
#: what :func:`install` did, for ``basicsr-restore doctor``
STATE = {'installed': False, 'basicsr_hook_fired': False}
#: functions to call once ``basicsr`` has been imported (see :func:`when_basicsr_imported`)
CALLBACKS = []

_ALIASES = ('torchvision.transforms.functional_tensor', 'distutils', 'distutils.version')


class _AliasLoader:
    """Builds the stand-in modules served by :class:`_FallbackFinder`."""

    @staticmethod
    def create_module(spec):
        return None

    @staticmethod
    def exec_module(module):
        name = module.__name__
        if name == 'torchvision.transforms.functional_tensor':

            def rgb_to_grayscale(img, num_output_channels=1):
                from torchvision.transforms import functional
                return functional.rgb_to_grayscale(img, num_output_channels)

            module.rgb_to_grayscale = rgb_to_grayscale
        elif name == 'distutils':
            module.__path__ = []
        elif name == 'distutils.version':

            import functools
            import re

            @functools.total_ordering
            class LooseVersion:
                """Enough of distutils' LooseVersion for comparisons such as ``LooseVersion(a) >= '0.9'``."""

                def __init__(self, vstring):
                    self.vstring = str(vstring)
                    self.version = [int(p) if p.isdigit() else p for p in re.split(r'[._+-]', self.vstring) if p]

                def _key(self, other):
                    other = other if isinstance(other, LooseVersion) else LooseVersion(other)
                    mine = [a if type(a) is type(b) else str(a) for a, b in zip(self.version, other.version)]
                    theirs = [b if type(a) is type(b) else str(b) for a, b in zip(self.version, other.version)]
                    return (mine, len(self.version)), (theirs, len(other.version))

                def __eq__(self, other):
                    a, b = self._key(other)
                    return a == b

                def __lt__(self, other):
                    a, b = self._key(other)
                    return a < b

                def __str__(self):
                    return self.vstring

            module.LooseVersion = LooseVersion


class _FallbackFinder:
    """Serves the stand-ins above; sits last on ``sys.meta_path`` so real modules win."""

    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        if fullname not in _ALIASES:
            return None
        from importlib.machinery import ModuleSpec
        STATE.setdefault('aliases_served', []).append(fullname)
        return ModuleSpec(fullname, _AliasLoader, is_package=(fullname == 'distutils'))


class _BasicsrHook:
    """One-shot finder: wraps the real ``basicsr`` loader so plugins load right after it ran."""

    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        if fullname != 'basicsr':
            return None
        _remove(cls)
        return spec_with_loader(cls, fullname, path, target, _AfterExec)


def spec_with_loader(finder_class, fullname, path, target, wrap):
    """The spec the other finders on ``sys.meta_path`` give for ``fullname``, its loader wrapped in ``wrap(loader)``
    (a finder that watches a module's execution asks here); None when no finder has it."""
    for finder in list(sys.meta_path):
        find = getattr(finder, 'find_spec', None) if finder is not finder_class else None
        spec = find(fullname, path, target) if find is not None else None
        if spec is not None:
            break
    else:
        return None
    if spec.loader is not None and hasattr(spec.loader, 'exec_module'):
        spec.loader = wrap(spec.loader)
    return spec


class DelegatingLoader:
    """A loader that answers as ``loader`` does; a subclass watches ``exec_module``."""

    def __init__(self, loader):
        self._loader = loader

    def __getattr__(self, name):
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)


class _AfterExec(DelegatingLoader):
    """Delegates to basicsr's loader, then loads the ``basicsr.plugins`` entry points."""

    def exec_module(self, module):
        self._loader.exec_module(module)
        # from here on the real loader answers (e.g. importlib.reload, pkgutil)
        module.__spec__.loader = self._loader
        module.__loader__ = self._loader
        if STATE['installed']:
            STATE['basicsr_hook_fired'] = True
            load_plugins()
        _run_callbacks()
        _leave_runner_to_runpy()


#: basicsr's runner modules, which ``basicsr/__init__`` imports as a side effect
RUNNERS = ('basicsr.train', 'basicsr.test')


def _main_module():
    """The module ``python -m NAME`` runs in this process, or None."""
    argv = getattr(sys, 'orig_argv', [])
    for i, arg in enumerate(argv[1:-1], 1):
        if arg == '-m':
            return argv[i + 1]
    return None


def _leave_runner_to_runpy():
    """``basicsr/__init__`` imports ``basicsr.train`` and ``basicsr.test``, so ``python -m basicsr.train`` finds
    the runner already imported and runpy warns that this "may result in unpredictable behaviour" before
    running a second copy as ``__main__``. When this process (or a spawned worker, which re-runs the parent's
    main module) is about to run a runner, the package's early copy is dropped from ``sys.modules``: runpy then
    runs the one copy, and says nothing."""
    spawned = '--multiprocessing-fork' in getattr(sys, 'orig_argv', [])
    main = _main_module()
    for name in RUNNERS:
        if (spawned or main == name) and name in sys.modules:
            del sys.modules[name]
            STATE.setdefault('runner_left_to_runpy', []).append(name)


def _remove(finder):
    try:
        sys.meta_path.remove(finder)
    except ValueError:
        pass


def load_plugins():
    """Load every entry point of ``basicsr.plugins``; call it if it is callable. Never raises."""
    try:
        from importlib.metadata import entry_points
        eps = entry_points(group=GROUP)
    except Exception as exc:  # a broken metadata folder must not break basicsr
        FAILURES.append(('<entry points>', f'{type(exc).__name__}: {exc}'))
        eps = []
    seen = set()
    for ep in eps:
        if ep.name in seen or ep.name in LOADED:
            continue
        seen.add(ep.name)
        try:
            obj = ep.load()
            if callable(obj):
                obj()
            LOADED.append(ep.name)
        except Exception as exc:
            _report_failure(ep.name, exc)


def _report_failure(name, exc):
    message = f'{type(exc).__name__}: {exc}'
    FAILURES.append((name, message))
    sys.stderr.write(f'WARNING: basicsr plugin {name!r} failed to load ({message}); basicsr works without it. '
                     f'Run `basicsr-restore doctor` for details, or set {ENV_OFF}=1 to silence this.\n')
    _explain_registry_misses()


def _explain_registry_misses():
    """Make basicsr's "No object named X" errors say which plugin failed to load and why."""
    try:
        from basicsr.utils.registry import Registry
    except Exception:
        return
    if getattr(Registry.get, '_explains_plugin_failures', False):
        return
    original = Registry.get

    def get(self, name, suffix='basicsr'):
        try:
            return original(self, name, suffix)
        except KeyError as exc:
            why = '; '.join(f'plugin {n!r} failed to load: {m}' for n, m in FAILURES)
            raise KeyError(f'{exc.args[0]} Note: {why}') from None

    get._explains_plugin_failures = True
    Registry.get = get


def install():
    """Called from ``basicsr_restore.pth`` at every interpreter start. Cheap and silent."""
    if STATE['installed'] or os.environ.get(ENV_OFF, '').strip().lower() in ('1', 'true', 'yes', 'on'):
        return
    STATE['installed'] = True
    install_fallbacks()
    if 'basicsr' in sys.modules:  # imported before we got a chance (unusual): load plugins now
        STATE['basicsr_hook_fired'] = True
        load_plugins()
    elif _BasicsrHook not in sys.meta_path:
        sys.meta_path.insert(0, _BasicsrHook)


def when_basicsr_imported(callback):
    """Call ``callback()`` once ``basicsr`` is imported (now, if it already is). ``import basicsr_restore`` uses it
    to register its classes only when basicsr is used, so that importing the package stays light. Works with the
    startup hook off too."""
    if 'basicsr' in sys.modules:
        callback()
        return
    CALLBACKS.append(callback)
    if _BasicsrHook not in sys.meta_path:
        sys.meta_path.insert(0, _BasicsrHook)


def _run_callbacks():
    while CALLBACKS:
        callback = CALLBACKS.pop(0)
        try:
            callback()
        except Exception as exc:
            _report_failure(getattr(callback, '__module__', 'callback'), exc)


def install_fallbacks():
    """Append the functional_tensor / distutils stand-ins (idempotent). Needed before basicsr imports."""
    if _FallbackFinder not in sys.meta_path:
        sys.meta_path.append(_FallbackFinder)
