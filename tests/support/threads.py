"""Clients that run beside a test in threads of their own."""

import threading


class Clients:
    """`threads` started when the block begins; told to stop (`stop`) and joined when it
    ends."""

    def __init__(self, threads: list[threading.Thread]) -> None:
        self.stop = threading.Event()
        self.threads = threads

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()
