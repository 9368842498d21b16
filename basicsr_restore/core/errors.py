"""Errors whose message is all a user needs, and the hook that prints them without a traceback.

BasicSR's runners (``python -m basicsr.train`` / ``basicsr.test``) let every exception escape as a traceback.
For the errors below the traceback only hides the message: the runner fixes install :func:`install_excepthook`,
which prints them as ``basicsr-restore: <message>`` (exit status 1); every other exception keeps its traceback.
Their traceback goes to the run's log file (basicsr's ``experiments/<name>/train_<name>_<time>.log``), once it has one.
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


class DataError(RestoreError, ValueError):
    """A sample cannot be read (a corrupt or missing value, unaligned images): one line naming the dataset, its phase,
    the key and what is wrong.

    Raised in a DataLoader worker, torch re-raises it in the main process as ``DataError(text)``, the text being
    "Caught DataError in DataLoader worker process N. Original Traceback ..." and ending with the error's own line:
    the message is taken back from that line and the text is kept as :attr:`worker_traceback` (for the log file)."""

    def __init__(self, message='', *args):
        self.worker_traceback = None
        text = str(message)
        if text.startswith(f'Caught {type(self).__name__} ') and '\nOriginal Traceback' in text:
            self.worker_traceback = text
            own = f'{type(self).__module__}.{type(self).__qualname__}: '
            lines = [line[len(own):] for line in text.splitlines() if line.startswith(own)]
            text = lines[-1] if lines else text.rstrip().splitlines()[-1]
        one_line = ' '.join(line.strip() for line in text.splitlines() if line.strip())
        super().__init__(one_line if isinstance(message, str) else message, *args)


def _log_traceback(exc_type, exc, tb):
    """The traceback (and a DataLoader worker's) to the file handlers of basicsr's logger: the run's log file."""
    import logging
    import traceback
    files = [h for h in logging.getLogger('basicsr').handlers if isinstance(h, logging.FileHandler)]
    text = ''.join(traceback.format_exception(exc_type, exc, tb)) + (getattr(exc, 'worker_traceback', None) or '')
    record = logging.LogRecord('basicsr', logging.ERROR, __file__, 0, f'basicsr-restore: {exc}\n{text}', None, None)
    for handler in files:
        if record.levelno >= handler.level:
            handler.handle(record)


def _print_restore_errors(exc_type, exc, tb, _previous=sys.excepthook):
    if issubclass(exc_type, RestoreError):
        try:
            _log_traceback(exc_type, exc, tb)
        except Exception:  # the message below is what matters
            pass
        sys.stderr.write(f'basicsr-restore: {exc}\n')
        sys.stderr.flush()
        return
    _previous(exc_type, exc, tb)


def install_excepthook():
    """Print :class:`RestoreError` messages without a traceback (idempotent)."""
    if sys.excepthook is not _print_restore_errors:
        sys.excepthook = _print_restore_errors
