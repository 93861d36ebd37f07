"""Work that can wait, at a lower CPU priority: Argon2's hashing (security/passwords.py) and
the checking of an import's lines (catalogue/importing.py). Requests served meanwhile go
first; alone on the machine, the work runs as fast as ever."""

import os
import threading

# How much lower the priority is (nice values, up to 19: the lowest).
NICENESS = 10
LOWEST = 19


def lower_own_priority() -> None:
    # Linux keeps a nice value per thread: this lowers the calling thread's only, and those
    # it starts afterwards. Relative: a process started niced already stays below others.
    thread = threading.get_native_id()
    niceness = os.getpriority(os.PRIO_PROCESS, thread) + NICENESS
    os.setpriority(os.PRIO_PROCESS, thread, min(niceness, LOWEST))
