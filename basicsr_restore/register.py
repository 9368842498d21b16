"""Registration of this package in BasicSR's registries, idempotent and clash-checked.

BasicSR's ``Registry`` raises a bare ``AssertionError`` when a name is registered twice, which happens as
soon as a module is imported under two names or reloaded. Our classes register through :func:`register`
instead: the same class (or a reload of it) is accepted again, a different object under a taken name is a
clear error naming both owners.
"""
import importlib
import pkgutil

from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY, METRIC_REGISTRY, MODEL_REGISTRY

REGISTRIES = {
    'arch': ARCH_REGISTRY,
    'dataset': DATASET_REGISTRY,
    'loss': LOSS_REGISTRY,
    'metric': METRIC_REGISTRY,
    'model': MODEL_REGISTRY,
}

#: registry name -> names registered by this package, in registration order
OURS = {name: [] for name in REGISTRIES}

# subpackages whose modules with these suffixes register classes when imported (basicsr's convention)
_SUBPACKAGES = {'archs': '_arch', 'losses': '_loss', 'models': '_model', 'data': '_dataset', 'metrics': '_metric'}
_done = False


def register(kind):
    """Class/function decorator: ``@register('arch')`` registers ``obj`` under ``obj.__name__``."""
    registry = REGISTRIES[kind]

    def deco(obj):
        name = obj.__name__
        if name in registry:
            existing = registry._obj_map[name]
            same = existing is obj or (getattr(existing, '__module__', None) == obj.__module__
                                       and getattr(existing, '__qualname__', None) == obj.__qualname__)
            if not same:
                raise RuntimeError(
                    f"basicsr-restore cannot register {kind} '{name}' from {obj.__module__}: the name is already "
                    f"taken by {getattr(existing, '__module__', '?')}.{getattr(existing, '__qualname__', name)}. "
                    'Uninstall the package that provides the other one, or rename one of them.')
            registry._obj_map[name] = obj  # a reload of the same module: keep the newest object
        else:
            registry._obj_map[name] = obj
        if name not in OURS[kind]:
            OURS[kind].append(name)
        return obj

    return deco


def _import_registering_modules():
    for sub, suffix in _SUBPACKAGES.items():
        package = importlib.import_module(f'basicsr_restore.{sub}')
        for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
            if info.name.endswith(suffix):
                importlib.import_module(f'basicsr_restore.{sub}.{info.name}')


def register_all():
    """Import every registering module once and apply the runner fixes. Safe to call any number of times."""
    global _done
    if _done:
        return
    from basicsr_restore import compat
    compat.ensure_import_fixes()
    _import_registering_modules()
    compat.apply_runner_fixes()
    _done = True
