"""``biodl ARGS`` (or a test's own function) in a real child process, forked from a server that
imported biodl's training stack once (multiprocessing's forkserver) instead of started as a fresh
interpreter with ``python -m biodl``.

The child is what the kill and resume tests need of a process: its own PID, its exit code, a
SIGKILL that nothing in it survives, SIGTERM/SIGUSR1 reaching biodl's handlers, stdout and stderr
apart; what it skips is the ~5 s each fresh interpreter spends importing torch, torchmetrics and
scikit-learn. The server imports only (no tensor work, no threads), so forking it is safe. The
tests that need the real entry point (``python -m biodl``'s exit codes, imports of a command, the
wheel) still start interpreters.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["biodl", "call"]

#: imported once by the server, before any child is forked from it
PRELOAD = ["biodl.cli", "biodl.tasks.tabular", "biodl.tasks.image", "biodl.report.run_report", "matplotlib.pyplot"]

_context = None


def _server():
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(PRELOAD)
    return _context


def _child(target: Callable[..., Any], args: tuple, env: dict[str, str], cwd: str, out: str, err: str) -> None:
    """In the forked child: the environment, folder and output files of a fresh process, then
    ``target(*args)``; exits as the interpreter would (atexit handlers run, then the exit code:
    ``sys.exit``'s, 1 after an uncaught exception, else 0)."""
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    for fd, path in ((1, out), (2, err)):
        target_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(target_fd, fd)
        os.close(target_fd)
    code = 0
    try:
        target(*args)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # what the interpreter prints for an uncaught exception, and its code
        import traceback

        traceback.print_exc()
        code = 1
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _biodl_main(args: list[str]) -> None:
    from biodl.cli import main

    main(args)


def call(target: Callable[..., Any], *args: Any, env: Mapping[str, str] | None = None, timeout: float = 300
         ) -> subprocess.CompletedProcess:
    """Run ``target(*args)`` (a module-level function) in a forked child with ``env`` (default:
    this process's) in the current folder; like ``subprocess.run(..., capture_output=True,
    text=True, timeout=...)``: the return code is ``-N`` for a child ended by signal N."""
    name = [f"{target.__module__}.{target.__qualname__}", *map(str, args)]
    with tempfile.TemporaryDirectory() as tmp:
        out, err = os.path.join(tmp, "stdout"), os.path.join(tmp, "stderr")
        child = _server().Process(target=_child, args=(target, args, dict(os.environ if env is None else env),
                                                       os.getcwd(), out, err))
        child.start()
        child.join(timeout)
        if child.exitcode is None:
            child.kill()
            child.join()
            raise subprocess.TimeoutExpired(name, timeout)
        with open(out) as o, open(err) as e:
            return subprocess.CompletedProcess(name, child.exitcode, o.read(), e.read())


def biodl(args: Sequence[Any], env: Mapping[str, str] | None = None, timeout: float = 300
          ) -> subprocess.CompletedProcess:
    """``biodl ARGS`` in a forked child, as :func:`call` runs a function."""
    done = call(_biodl_main, [str(a) for a in args], env=env, timeout=timeout)
    done.args = ["biodl", *map(str, args)]
    return done
