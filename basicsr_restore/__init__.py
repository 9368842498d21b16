"""basicsr-restore: published image-restoration networks for BasicSR's own runners.

``import basicsr_restore`` makes ``import basicsr`` work on today's torchvision and registers every
network, loss, model and dataset of this package in BasicSR's registries (idempotent: importing twice,
or after the startup hook already did it, is harmless).
"""
__version__ = '0.1.0'

from basicsr_restore import compat as _compat

_compat.ensure_import_fixes()

# import basicsr before our registering modules: when the startup hook is active, this is the moment it
# loads the ``basicsr.plugins`` entry points, ours included (which then finds a complete basicsr)
import basicsr  # noqa: E402,F401

from basicsr_restore.register import register_all  # noqa: E402

register_all()
