"""basicsr-restore: published image-restoration networks for BasicSR's own runners.

``import basicsr_restore`` makes ``import basicsr`` work on today's torchvision and registers every network,
loss, model and dataset of this package in BasicSR's registries as soon as basicsr is imported (at once when it
already is; idempotent). Importing the package itself stays light: neither torch nor basicsr is imported
until used, so that ``basicsr-restore --help`` answers at once.

The Python API (:mod:`basicsr_restore.api`, plain torch)::

    net = basicsr_restore.load('net_g_latest.pth')    # the network is found from the file
    out = net.restore(image)                           # numpy H x W x C (RGB) or a tensor, any size
    net = basicsr_restore.build('IRNeXt', preset='deblur')
"""
__version__ = '0.1.0'

from basicsr_restore.host import compat as _compat
from basicsr_restore.host import registration as _registration

_compat.ensure_import_fixes()
_registration.watch_imports()  # a module of ours that imports basicsr first is registered once it has finished


def _register():
    _registration.register_all()


_compat.when_basicsr_imported(_register)

_API = ('load', 'build', 'Network')


def __getattr__(name):
    if name in _API:
        from basicsr_restore import api  # the API imports torch: only when it is used
        return getattr(api, name)
    raise AttributeError(f'module basicsr_restore has no attribute {name!r}')


def __dir__():
    return sorted(list(globals()) + list(_API))
