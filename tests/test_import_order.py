"""Any module of the package imported first prints nothing and leaves the registries complete.

Importing ``basicsr_restore.data.paired_dataset`` first used to print a false "plugin failed to load" warning (twice):
its ``import basicsr`` fired the startup hook, whose registration imported the modules that import the half-executed
one. Import order matters per process, so every module is imported first in a process of its own.

A fresh interpreter spends most of its start importing torch, torchvision and scipy (about 8 of 10 s on the two
shared cores of the test machine; 69 modules took 7.7 minutes that way). The processes are therefore forked from
one interpreter that has imported those libraries, and nothing of basicsr or of this package: in each child,
basicsr and the package are imported for the first time, in the order under test, with the startup hook armed as
the ``.pth`` file left it. The module of the report is also checked in a plain fresh ``python -c``."""
import json
import os
import pkgutil
from concurrent.futures import ThreadPoolExecutor

from conftest import run

import basicsr_restore
from basicsr_restore.core import registry
from basicsr_restore.host import registration

MODULES = sorted(m.name for m in pkgutil.walk_packages(basicsr_restore.__path__, 'basicsr_restore.'))
NETWORKS = ('MIRNet', 'ChaIR', 'IRNeXt', 'DRCNet', 'EIRN')
CHECK = '''import {module}
import basicsr.utils.options as options
from basicsr.utils import registry
expected = {expected!r}
missing = [f'{{kind}} {{name}}' for kind, names in expected.items() for name in names
           if name not in getattr(registry, kind.upper() + '_REGISTRY')]
assert not missing, f'not registered: {{missing}}'
assert getattr(options.parse_options, '_basicsr_restore_wrapped', False), 'runner fixes not applied'
'''
#: forks one child per check, ``parallel`` at a time; prints ``{module: [exit status, stdout, stderr]}`` as JSON
FORK_SERVER = '''import json, os, sys, tempfile, traceback
for lib in ('torch', 'torchvision', 'cv2', 'numpy', 'scipy.stats', 'scipy.ndimage', 'yaml', 'lmdb', 'tqdm'):
    __import__(lib)
assert not [m for m in sys.modules if m.startswith(('basicsr', 'basicsr_restore'))
            and m != 'basicsr_restore_autoload'], 'the server must not import basicsr or the package'
checks, parallel = json.load(open(sys.argv[1])), int(sys.argv[2])
out = tempfile.mkdtemp()
running, results = {}, {}

def start(module, code):
    paths = [os.path.join(out, module + s) for s in ('.out', '.err')]
    pid = os.fork()
    if pid == 0:
        for fd, path in zip((1, 2), paths):
            os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
        status = 0
        try:
            exec(compile(code, '<check>', 'exec'), {'__name__': '__main__'})
        except BaseException:
            traceback.print_exc()
            status = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    running[pid] = module, paths

def finish():
    pid, status = os.wait()
    module, paths = running.pop(pid)
    results[module] = [os.waitstatus_to_exitcode(status)] + [open(p).read() for p in paths]

for module, code in checks.items():
    if len(running) >= parallel:
        finish()
    start(module, code)
while running:
    finish()
print(json.dumps(results))
'''


def expected_names():
    """What this package registers (the five networks at least), per registry."""
    registration.register_all()
    names = {kind: list(names) for kind, names in registry.OURS.items()}
    assert set(NETWORKS) <= set(names['arch']) and names['dataset'] and names['model'] and names['loss']
    return names


def test_every_module_imported_first_is_silent_and_registers_everything(tmp_path):
    assert len(MODULES) > 40 and 'basicsr_restore.data.paired_dataset' in MODULES
    expected = expected_names()
    checks = {module: CHECK.format(module=module, expected=expected) for module in MODULES}
    (tmp_path / 'checks.json').write_text(json.dumps(checks))
    (tmp_path / 'server.py').write_text(FORK_SERVER)
    parallel = max(2, len(os.sched_getaffinity(0)))
    with ThreadPoolExecutor(1) as pool:  # the reported case, in a plain fresh interpreter, meanwhile
        fresh = pool.submit(run, ['python', '-c', checks['basicsr_restore.data.paired_dataset']], cwd=tmp_path,
                            check=False)
        proc = run(['python', str(tmp_path / 'server.py'), str(tmp_path / 'checks.json'), str(parallel)],
                   cwd=tmp_path, timeout=900)
        fresh = fresh.result()
    assert (fresh.returncode, fresh.stdout, fresh.stderr) == (0, '', '')
    results = json.loads(proc.stdout)
    assert sorted(results) == MODULES
    failed = [f'{module} (exit {status}): {(out + err).strip()[-600:]}'
              for module, (status, out, err) in results.items() if status != 0 or out or err]
    assert not failed, '\n'.join(failed)


def test_a_failing_registration_after_our_import_still_warns(tmp_path):
    """The registration that waits for a module of ours to finish is the hook's: when it fails, one warning says so."""
    code = ('import basicsr_restore.host.registration as r\n'
            'def broken():\n'
            '    raise ImportError("simulated breakage")\n'
            'r.registry.register_plain_torch = broken\n'
            'import basicsr_restore.data.paired_dataset\n'
            'import basicsr_restore_autoload as a\n'
            'print(a.LOADED, a.FAILURES)')
    proc = run(['python', '-c', code], cwd=tmp_path)
    warnings = [line for line in proc.stderr.splitlines() if line.startswith('WARNING: basicsr plugin')]
    assert len(warnings) == 1 and "'basicsr_restore' failed to load (ImportError: simulated breakage)" in warnings[0]
    assert proc.stdout.strip() == "[] [('basicsr_restore', 'ImportError: simulated breakage')]"
