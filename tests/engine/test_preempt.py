"""StopRequest: the stop signals raise a flag while entered, and only then."""

import os
import signal

from biodl.engine.preempt import StopRequest


def test_signals_set_the_flag_inside_and_keep_their_handlers_outside():
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGUSR1)}
    stop = StopRequest()
    with stop:
        assert stop.signum is None
        os.kill(os.getpid(), signal.SIGUSR1)  # the process lives on: the handler only records it
        assert stop.signum == signal.SIGUSR1
        assert stop.agreed(step=3, device=None) == signal.SIGUSR1  # one process: its own flag, every step
    assert {s: signal.getsignal(s) for s in before} == before  # handlers restored on leaving
    with stop:  # a new fit starts without the old signal
        assert stop.signum is None and stop.agreed(step=8, device=None) is None
