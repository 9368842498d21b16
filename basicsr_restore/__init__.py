"""basicsr-restore: published image-restoration networks for BasicSR's own runners.

``import basicsr_restore`` makes ``import basicsr`` work on today's torchvision and registers every
network, loss, model and dataset of this package in BasicSR's registries (idempotent: importing twice,
or after the startup hook already did it, is harmless).

The networks (``basicsr_restore.archs``), losses (``basicsr_restore.losses``) and the inference path
(``basicsr_restore.inference``) are plain torch: where basicsr is not installed they still import and run,
and only the registration is left out.
"""
__version__ = '0.1.0'

from basicsr_restore import compat as _compat

_compat.ensure_import_fixes()


def _basicsr_installed():
    # import basicsr before our registering modules: when the startup hook is active, this is the moment it
    # loads the ``basicsr.plugins`` entry points, ours included (which then finds a complete basicsr)
    try:
        import basicsr  # noqa: F401
    except ModuleNotFoundError as exc:
        if exc.name == 'basicsr':
            return False
        raise
    return True


if _basicsr_installed():
    from basicsr_restore.register import register_all

    register_all()
