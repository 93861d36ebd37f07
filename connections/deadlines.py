"""A deadline of ours on a statement, for servers that can hold one for ever: a hot standby
whose processes are stopped (SIGSTOP, a frozen VM) still has its kernel acknowledge every
packet, so neither keepalives nor `tcp_user_timeout` ever fire, and its statement timeout
runs on the stopped server itself; a read queued behind a lock that replay waits for lasts as
long as the query replay waits for. Only a clock on our side ends such a wait.

One thread per process keeps the deadlines. Past one, it shuts the connection's socket down
(a duplicate of its file descriptor: the driver's own stays open), and the driver's blocked
call fails as on a lost connection, directly or through PgBouncer, with either driver; the
pool drops the connection (SQLAlchemy counts the error a disconnection). The statement
disarms its deadline before its error reaches SQLAlchemy, so the descriptor is still the
connection's when the thread shuts it, never one the process opened since.
"""

import heapq
import itertools
import os
import socket
import threading
import time
from typing import Any

# The thread wakes at most this often: deadlines pass up to this much late, and a process
# serving a thousand reads a second is not woken a thousand times.
GRANULARITY_SECONDS = 0.1
# The attribute a driver's error gets when it ended a statement past its deadline.
PAST_DEADLINE = "past_deadline_seconds"


class Watch:
    """One statement's deadline, as a context manager (Deadlines.bounded)."""

    __slots__ = ("deadlines", "descriptor", "done", "passed", "seconds")

    def __init__(self, deadlines: "Deadlines", descriptor: int, seconds: float) -> None:
        self.deadlines, self.descriptor, self.seconds = deadlines, descriptor, seconds
        self.done = self.passed = False

    def __enter__(self) -> None:
        self.deadlines.arm(self)

    def __exit__(self, _type, error: BaseException | None, _traceback) -> None:
        # Whatever ends the block (an interrupt too): the descriptor may be closed next.
        if self.deadlines.disarm(self) and error is not None:
            setattr(error, PAST_DEADLINE, self.seconds)


class Deadlines:
    def __init__(self) -> None:
        self.due: list[tuple[float, int, Watch]] = []
        self.changed = threading.Condition()
        self.order = itertools.count()
        self.thread: threading.Thread | None = None
        # gunicorn forks its workers from a process that may have started the thread.
        os.register_at_fork(after_in_child=self.forget_thread)

    def forget_thread(self) -> None:
        self.thread, self.due, self.changed = None, [], threading.Condition()

    def bounded(self, connection: Any, seconds: float) -> Watch:
        """A context in which `connection` (a psycopg2 or psycopg connection) is cut off once
        `seconds` have passed; an error it then raises says so (past_deadline)."""
        return Watch(self, connection.fileno(), seconds)

    def arm(self, watch: Watch) -> None:
        with self.changed:
            if self.thread is None:
                self.thread = threading.Thread(target=self.keep, name="deadlines", daemon=True)
                self.thread.start()
            due = time.monotonic() + watch.seconds
            heapq.heappush(self.due, (due, next(self.order), watch))
            if self.due[0][2] is watch:
                self.changed.notify()

    def disarm(self, watch: Watch) -> bool:
        """The statement ended: whether its deadline had passed first."""
        with self.changed:
            watch.done = True
            return watch.passed

    def keep(self) -> None:
        with self.changed:
            while True:
                now = time.monotonic()
                while self.due and self.due[0][0] <= now:
                    watch = heapq.heappop(self.due)[2]
                    if not watch.done:
                        watch.passed = True
                        cut(watch.descriptor)
                wait = self.due[0][0] - now if self.due else None
                self.changed.wait(None if wait is None else max(wait, GRANULARITY_SECONDS))


def cut(descriptor: int) -> None:
    try:
        with socket.socket(fileno=os.dup(descriptor)) as duplicate:
            duplicate.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # the server closed it meanwhile: the statement fails anyway


def past_deadline(error: BaseException) -> bool:
    """Whether a driver's error is that of a statement cut off at its deadline."""
    return getattr(error, PAST_DEADLINE, None) is not None


DEADLINES = Deadlines()
