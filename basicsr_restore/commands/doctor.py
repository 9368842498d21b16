"""``basicsr-restore doctor``: is this environment able to run our networks through basicsr's runners?"""
import os
import platform
import sys

import basicsr_restore
import basicsr_restore_autoload as autoload
from basicsr_restore.core import registry
from basicsr_restore.host import compat


def _version(dist):
    from importlib import metadata
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return 'not installed'


#: what a fresh interpreter is asked: does importing basicsr alone register this package?
_FRESH_CHECK = ('import basicsr\nfrom basicsr.utils.registry import ARCH_REGISTRY, MODEL_REGISTRY\n'
                "print('IRNeXt' in ARCH_REGISTRY and 'RestorationModel' in MODEL_REGISTRY)")


def fresh_interpreter_sees_plugin():
    """``(ok, detail)``: run ``import basicsr`` in a new interpreter with this environment, as the stock runner
    would start, and look for this package's names in the registries."""
    import subprocess
    try:
        proc = subprocess.run([sys.executable, '-c', _FRESH_CHECK], capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f'could not start {sys.executable}: {exc}'
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ['no output'])[-1]
        return False, f'import basicsr failed: {last}'
    ok = proc.stdout.strip().splitlines()[-1:] == ['True']
    return ok, 'IRNeXt and RestorationModel registered' if ok else 'IRNeXt/RestorationModel not registered'


def run():
    problems = []
    lines = []

    def show(label, value):
        lines.append(f'  {label:<26} {value}')

    hook_installed = autoload.STATE['installed']
    import torch


    lines.append('versions')
    show('python', platform.python_version())
    for dist in ('torch', 'torchvision', 'basicsr', 'basicsr-restore'):
        show(dist, _version(dist))

    lines.append('basicsr')
    from importlib import metadata

    import basicsr
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
    fresh, detail = fresh_interpreter_sees_plugin()
    show('fresh interpreter', 'finds the plugin' if fresh else f'does NOT find the plugin ({detail})')
    if not fresh:
        why = (f'{autoload.ENV_OFF} is set, so the startup hook is off' if disabled else
               'the startup hook did not load the plugin')
        problems.append(f'a fresh `python -m basicsr.train` in this environment would not find this package ({why}; '
                        f'{detail}). Unset {autoload.ENV_OFF}, reinstall the package (pip install -e .), or run '
                        '`python -m basicsr_restore.train` instead.')

    lines.append('compat fixes applied in this process')
    for note in compat.APPLIED or ['none needed']:
        show('-', note)

    lines.append('registered by basicsr-restore')
    from basicsr.utils.registry import ARCH_REGISTRY
    for kind, names in registry.OURS.items():
        missing = [n for n in names if n not in registry.registry(kind)]
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
