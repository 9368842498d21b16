"""Errors whose message is all a user needs, and the hook that prints them without a traceback.

BasicSR's runners (``python -m basicsr.train`` / ``basicsr.test``) let every exception escape as a traceback.
For the errors below the traceback only hides the message: the runner fixes install :func:`install_excepthook`,
which prints them as ``basicsr-restore: <message>`` (exit status 1); every other exception keeps its traceback.
"""
import sys


class RestoreError(Exception):
    """Base class: the message names the file, key or option and says what to do."""


class OptionError(RestoreError, ValueError):
    """The option file asks for something that does not exist (a key, a type name, an argument)."""


class TrainingStopped(RestoreError, RuntimeError):
    """A training run stopped on purpose (diverged, or weights became non-finite); nothing bad was saved."""


class TestSetsMissing(RestoreError, RuntimeError):
    """``basicsr.test`` scored the test sets it could read; some could not be read."""


def _print_restore_errors(exc_type, exc, tb, _previous=sys.excepthook):
    if issubclass(exc_type, RestoreError):
        sys.stderr.write(f'basicsr-restore: {exc}\n')
        sys.stderr.flush()
        return
    _previous(exc_type, exc, tb)


def install_excepthook():
    """Print :class:`RestoreError` messages without a traceback (idempotent)."""
    if sys.excepthook is not _print_restore_errors:
        sys.excepthook = _print_restore_errors
