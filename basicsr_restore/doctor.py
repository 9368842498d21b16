"""``basicsr-restore doctor``: is this environment able to run our networks through basicsr's runners?"""
import os
import platform
import sys


def _version(dist):
    from importlib import metadata
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return 'not installed'


def run():
    problems = []
    lines = []

    def show(label, value):
        lines.append(f'  {label:<26} {value}')

    import basicsr_restore_autoload as autoload
    hook_installed = autoload.STATE['installed']
    import torch
    import basicsr_restore
    from basicsr_restore import compat, register

    lines.append('versions')
    show('python', platform.python_version())
    for dist in ('torch', 'torchvision', 'basicsr', 'basicsr-restore'):
        show(dist, _version(dist))

    lines.append('basicsr')
    import basicsr
    from importlib import metadata
    owners = metadata.packages_distributions().get('basicsr', [])
    show('imported from', os.path.dirname(basicsr.__file__))
    show('owned by', ', '.join(owners) or 'no installed distribution (a source checkout on sys.path?)')
    if len(set(owners)) > 1:
        problems.append(f'several distributions install the basicsr package ({", ".join(owners)}): they overwrite each '
                        'other. Uninstall all but basicsr (pip uninstall ...; '
                        'pip install --no-build-isolation basicsr==1.4.2).')
    try:
        import basicsr.utils.registry  # noqa: F401
    except ImportError:
        problems.append('the imported basicsr has no basicsr.utils.registry: a 1.2-era fork (NAFNet, Restormer, ...) '
                        'shadows the installed one. Run from another folder or remove that fork from sys.path.')

    lines.append('startup hook (python -m basicsr.train finds the plugin)')
    disabled = os.environ.get(autoload.ENV_OFF, '').strip().lower() in ('1', 'true', 'yes', 'on')
    show('BASICSR_RESTORE_NO_AUTOLOAD', 'set: hook disabled' if disabled else 'not set')
    show('hook installed at start', hook_installed)
    show('plugins loaded by hook', ', '.join(autoload.LOADED) or 'none')
    for name, message in autoload.FAILURES:
        problems.append(f'plugin {name!r} failed to load: {message}')
    if not hook_installed and not disabled:
        problems.append('basicsr_restore.pth did not run at interpreter start, so `python -m basicsr.train` will not '
                        'see the plugin. Reinstall: pip install -e . (or pip install basicsr-restore); python -S '
                        'skips .pth files.')

    lines.append('compat fixes applied in this process')
    for note in compat.APPLIED or ['none needed']:
        show('-', note)

    lines.append('registered by basicsr-restore')
    from basicsr.utils.registry import ARCH_REGISTRY
    for kind, names in register.OURS.items():
        missing = [n for n in names if n not in register.REGISTRIES[kind]]
        if missing:
            problems.append(f'{kind} names missing from basicsr\'s registry: {missing}')
        show(kind, ', '.join(names) or '-')
    if 'IRNeXt' not in ARCH_REGISTRY:
        problems.append('IRNeXt is not registered')

    lines.append('devices')
    show('CUDA available', torch.cuda.is_available())
    if torch.cuda.is_available():
        show('GPUs', ', '.join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())))

    print(f'basicsr-restore {basicsr_restore.__version__} doctor')
    print('\n'.join(lines))
    if problems:
        print('\nPROBLEMS')
        for p in problems:
            print(f'  - {p}')
        return 1
    print('\nall good')
    return 0


if __name__ == '__main__':
    sys.exit(run())
