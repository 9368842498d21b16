"""The tests' runner of ``python -m basicsr.train|basicsr.test`` (and our ``basicsr_restore.train|test``) without
paying the interpreter's start each time.

Started once per pytest worker as ``python tests/warm_runner.py``: the interpreter starts as any other (the startup
hook of the ``.pth`` file runs), imports basicsr through that hook (the plugin registers, as in every run) and nothing
else, then waits. For each job it reads (one JSON line: module, arguments, folder, output files) it forks a child that
does what ``python -m MODULE ARGS`` does after its own ``import basicsr``: the runner modules that basicsr's
``__init__`` imported are dropped (as the hook does for ``-m``), ``sys.argv``/``sys.path[0]``/the folder are the run's,
and runpy executes the module as ``__main__``; an uncaught exception goes to ``sys.excepthook`` and exits 1, and the
exit handlers run, as at the end of an interpreter. The reply is the child's exit status. Each child starts from the
same untouched parent, so no run sees another's state. ``conftest.run`` sends the jobs (see there for which).
"""
import atexit
import json
import os
import runpy
import sys

import basicsr  # noqa: F401  (through the startup hook: the plugin registers here, once)

RUNNERS = ('basicsr.train', 'basicsr.test')


def child(job):
    """Run one job in this (forked) process and leave with its exit status."""
    code = 1
    try:
        os.chdir(job['cwd'])
        for fd, path in ((1, job['stdout']), (2, job['stderr'])):
            os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        sys.stdin = open(os.devnull, encoding='utf-8')
        for name in RUNNERS:
            sys.modules.pop(name, None)
        sys.argv = [job['module']] + job['args']
        sys.path[0] = os.getcwd()  # what `python -m` puts first
        try:
            runpy.run_module(job['module'], run_name='__main__', alter_sys=True)
            code = 0
        except SystemExit as exc:
            if exc.code is None or isinstance(exc.code, int):
                code = exc.code or 0
            else:
                print(exc.code, file=sys.stderr)
        except BaseException:
            sys.excepthook(*sys.exc_info())
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)


def serve():
    for line in sys.stdin:
        job = json.loads(line)
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            child(job)
        print(json.dumps({'pid': pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({'returncode': os.waitstatus_to_exitcode(status)}), flush=True)


if __name__ == '__main__':
    serve()
