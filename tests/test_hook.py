"""The startup hook, its failure mode, idempotent registration, doctor (the wheels: test_packaging.py)."""
import importlib
import sysconfig

import pytest
from conftest import ROOT, run


def test_startup_imports_nothing_heavy(tmp_path):
    code = ('import sys, basicsr_restore_autoload as a\n'
            'heavy = [m for m in ("torch", "basicsr", "numpy", "importlib.metadata", "basicsr_restore") '
            'if m in sys.modules]\n'
            'print(a.STATE["installed"], heavy)')
    assert run(['python', '-c', code], cwd=tmp_path).stdout.split() == ['True', '[]']
    # python -X importtime lists the modules imported at start-up: ours is one small module
    proc = run(['python', '-X', 'importtime', '-c', 'pass'], cwd=tmp_path)
    ours = [line for line in proc.stderr.splitlines()  # (an editable install adds setuptools' own finder)
            if 'basicsr' in line and '__editable__' not in line]
    assert len(ours) == 1 and ours[0].rstrip().endswith('basicsr_restore_autoload'), ours


def test_stock_import_registers_the_plugin(tmp_path):
    code = ('import basicsr, basicsr_restore_autoload as a\n'
            'from basicsr.utils.registry import ARCH_REGISTRY, MODEL_REGISTRY, LOSS_REGISTRY, DATASET_REGISTRY\n'
            'print(a.LOADED, "IRNeXt" in ARCH_REGISTRY, "RestorationModel" in MODEL_REGISTRY, '
            '"FFTLoss" in LOSS_REGISTRY, "PairedRestorationDataset" in DATASET_REGISTRY)')
    assert run(['python', '-c', code], cwd=tmp_path).stdout.split() == ["['basicsr_restore']", 'True', 'True',
                                                                          'True', 'True']


def test_a_broken_plugin_warns_once_and_explains_registry_misses(tmp_path):
    (tmp_path / 'badplugin.py').write_text('raise ImportError("simulated breakage")\n')
    info = tmp_path / 'badplugin-0.1.dist-info'
    info.mkdir()
    (info / 'METADATA').write_text('Metadata-Version: 2.1\nName: badplugin\nVersion: 0.1\n')
    (info / 'entry_points.txt').write_text('[basicsr.plugins]\nbadplugin = badplugin\n')
    code = ('import basicsr\nfrom basicsr.utils.registry import ARCH_REGISTRY\nprint("IRNeXt" in ARCH_REGISTRY)\n'
            'ARCH_REGISTRY.get("Missing")')
    proc = run(['python', '-c', code], cwd=tmp_path, env={'PYTHONPATH': str(tmp_path)}, check=False)
    assert proc.stdout.splitlines()[0] == 'True', 'our plugin and basicsr must keep working'
    warnings = [line for line in proc.stderr.splitlines() if line.startswith('WARNING: basicsr plugin')]
    assert len(warnings) == 1 and "'badplugin' failed to load (ImportError: simulated breakage)" in warnings[0]
    assert "No object named 'Missing' found in 'arch' registry! Note: plugin 'badplugin' failed to load: " \
           'ImportError: simulated breakage' in proc.stderr


def test_registration_is_idempotent_and_clashes_are_clear():
    from basicsr.utils.registry import ARCH_REGISTRY

    import basicsr_restore
    from basicsr_restore.core.registry import register
    from basicsr_restore.host.registration import register_all
    register_all()
    importlib.reload(importlib.import_module('basicsr_restore.archs.irnext_arch'))  # a re-import registers again
    assert ARCH_REGISTRY.get('IRNeXt').__module__ == 'basicsr_restore.archs.irnext_arch'
    importlib.reload(basicsr_restore)

    class IRNeXt:  # a different class under a taken name
        pass

    with pytest.raises(RuntimeError, match="cannot register arch 'IRNeXt' .* already taken by "
                                           'basicsr_restore.archs.irnext_arch.IRNeXt'):
        register('arch')(IRNeXt)


def test_doctor_is_green(tmp_path):
    proc = run(['basicsr-restore', 'doctor'], cwd=tmp_path)
    assert 'all good' in proc.stdout
    assert 'plugins loaded by hook     basicsr_restore' in proc.stdout
    assert 'IRNeXt' in proc.stdout and 'RestorationModel' in proc.stdout
    assert 'functional_tensor' in proc.stdout
    assert 'fresh interpreter          finds the plugin' in proc.stdout


def test_doctor_fails_when_the_hook_is_off(tmp_path):
    """With the hook off, a fresh ``python -m basicsr.train`` would not find the plugin: doctor says so (red)."""
    proc = run(['basicsr-restore', 'doctor'], cwd=tmp_path, env={'BASICSR_RESTORE_NO_AUTOLOAD': '1'}, check=False)
    assert proc.returncode == 1 and 'set: hook disabled' in proc.stdout
    assert 'a fresh `python -m basicsr.train` in this environment would not find this package ' \
           '(BASICSR_RESTORE_NO_AUTOLOAD is set, so the startup hook is off' in proc.stdout
    # python -S skips .pth files: the packages are importable, but the hook never ran
    code = (f'import sys; sys.path[:0] = [{sysconfig.get_paths()["purelib"]!r}, {ROOT!r}]; '
            'sys.argv = ["basicsr-restore", "doctor"]; from basicsr_restore.commands.cli import main; sys.exit(main())')
    proc = run(['python', '-S', '-c', code], cwd=tmp_path, check=False)
    assert proc.returncode == 1 and 'did not run at interpreter start' in proc.stdout
