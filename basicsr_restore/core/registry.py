"""This package's names in BasicSR's registries: the decorator every registering class uses, and the classes the
plain-torch subpackages define.

Networks and losses are plain torch modules that know nothing of basicsr: every class with a network card in an
``archs/*_arch.py`` module and every ``*Loss`` class of a ``losses/*_loss.py`` module is found here
(:func:`network_classes`, :func:`register_module`). Datasets, the model and the metrics build on basicsr's classes
and register with ``@register(kind)``. What imports them all is the plugin's entry point
(``basicsr_restore.host.registration.register_all``).

BasicSR's ``Registry`` raises a bare ``AssertionError`` when a name is registered twice, which happens as soon as a
module is imported under two names or reloaded. Our classes register through :func:`register` instead: the same
class (or a reload of it) is accepted again, a different object under a taken name is a clear error naming both
owners.
"""
import importlib
import pkgutil

KINDS = ('arch', 'dataset', 'loss', 'metric', 'model')
#: registry name -> names registered by this package, in registration order
OURS = {name: [] for name in KINDS}
#: the subpackages whose modules with these suffixes define registered classes (basicsr's convention)
SUBPACKAGES = {'archs': '_arch', 'losses': '_loss', 'models': '_model', 'data': '_dataset', 'metrics': '_metric'}
#: the plain-torch ones among them: their classes are found, not decorated
PLAIN_TORCH = ('archs', 'losses')


def registry(kind):
    """basicsr's registry of ``kind`` (basicsr is imported when something is registered, not before)."""
    from basicsr.utils import registry as registries  # keeps the package import light (torch and basicsr wait)
    return getattr(registries, f'{kind.upper()}_REGISTRY')


def register(kind):
    """Class/function decorator: ``@register('dataset')`` registers ``obj`` under ``obj.__name__``."""
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


def package_modules(sub):
    """The registering modules of ``basicsr_restore.<sub>`` (those named ``*<suffix>``), imported, by name."""
    package = importlib.import_module(f'basicsr_restore.{sub}')
    infos = sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name)
    return [importlib.import_module(f'{package.__name__}.{i.name}') for i in infos if i.name.endswith(SUBPACKAGES[sub])]


def networks_of(module):
    """The network classes a module defines: classes with a network card (``card``) named after them."""
    from basicsr_restore.archs.card import card_of  # keeps ``import basicsr_restore`` light (the card imports torch)
    return [obj for obj in vars(module).values() if isinstance(obj, type) and obj.__module__ == module.__name__
            and card_of(obj) is not None and obj.card.name == obj.__name__]


def losses_of(module):
    """The losses a module defines: ``torch.nn.Module`` classes named ``*Loss`` (basicsr's convention)."""
    from torch import nn  # keeps the package import light
    return [obj for obj in vars(module).values() if isinstance(obj, type) and obj.__module__ == module.__name__
            and issubclass(obj, nn.Module) and obj.__name__.endswith('Loss')]


def network_classes():
    """Every network class of the package (found without basicsr), in module order."""
    return [cls for module in package_modules('archs') for cls in networks_of(module)]


def register_module(module):
    """Register what a plain-torch module defines: its networks (``*_arch``) or its losses (``*_loss``).
    Also the way to add a network or loss of one's own: ``register_module(my_arch)``."""
    networks, losses = networks_of(module), losses_of(module)
    for kind, objs in (('arch', networks), ('loss', losses)):
        for obj in objs:
            register(kind)(obj)
    return networks + losses


def register_plain_torch():
    """Register every network and loss of the package (idempotent)."""
    for sub in PLAIN_TORCH:
        for module in package_modules(sub):
            register_module(module)


def network_names():
    """The names of the registered networks of this package and of :func:`register_module`, in registration order.
    ``import basicsr_restore`` registers nothing until basicsr is imported, so :data:`OURS` alone may still be empty:
    every caller that lists the networks asks here."""
    register_plain_torch()
    return list(OURS['arch'])
