"""The error hierarchy, and OS faults described in the user's words.

Every fault a user can cause (a bad file, a bad key, a bad option) raises a
:class:`BiodlError`. The CLI prints it as one line, ``error: <where>: <what>``,
and exits with code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


__all__ = [
    "BiodlError", "ConfigError", "DataError", "CheckpointError", "RunDirError", "ImageFault", "describe_os_error",
    "path_problem", "Preempted", "PREEMPTED_EXIT",
]


class BiodlError(Exception):
    """A fault in the user's input. ``where`` names the file, key or option."""

    def __init__(self, where: str | Path | None, problem: str) -> None:
        self.where = str(where) if where is not None else None
        self.problem = problem
        super().__init__(f"{self.where}: {problem}" if self.where else problem)


class ConfigError(BiodlError):
    """A config file, key, value or override is invalid."""


class DataError(BiodlError):
    """An input data file is missing, unreadable or malformed."""


class CheckpointError(BiodlError):
    """A checkpoint is missing, corrupt, unsafe or made for another model."""


class RunDirError(BiodlError):
    """A run directory is missing, incomplete or would be overwritten."""


class ImageFault(Exception):
    """An image file that cannot be used; ``problem`` says why, in words. Not a user-facing
    error by itself: the reader turns it into a DataError naming the file (or, under
    ``data.skip_bad``, counts it)."""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(problem)


def describe_os_error(exc: OSError) -> str:
    """An operating-system fault in the user's words (``a symbolic-link loop``, ...)."""
    import errno

    words = {errno.ELOOP: "a symbolic-link loop", errno.EACCES: "permission denied", errno.EPERM: "not permitted",
             errno.ENOENT: "no such file or folder", errno.EISDIR: "is a folder, not a file",
             errno.ENOTDIR: "a path part is not a folder", errno.EIO: "input/output error (a failing disk?)"}
    return words.get(exc.errno) or (exc.strerror or str(exc) or exc.__class__.__name__)


def path_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot be opened, in words (``no such file or folder``, ``a symbolic-link
    loop``, ``a dangling symbolic link``, ...), or None when it can."""
    import errno
    import os

    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ENOENT and os.path.islink(path):
            return "a dangling symbolic link"
        return describe_os_error(exc)
    return None


class Preempted(Exception):
    """Training stopped on a signal (SIGTERM, SIGUSR1) after saving its state; ``--resume``
    continues it. Not a fault: the CLI exits with :data:`PREEMPTED_EXIT` (128 + SIGTERM)."""

    def __init__(self, signum: int, epoch: int, step: int) -> None:
        import signal

        self.signum, self.epoch, self.step = signum, epoch, step
        super().__init__(f"stopped by {signal.Signals(signum).name} at step {step} (epoch {epoch + 1}); "
                         "the training state is saved")


PREEMPTED_EXIT = 143
