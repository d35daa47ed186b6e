"""Work in a thread, so a panel's buttons and progress stay live while it runs; `wait` joins it (scripts, tests)."""

from __future__ import annotations

import threading


class Background:
    """Work in a thread, so the buttons and the progress bar stay live; `wait` joins it (scripts, tests)."""

    _thread: threading.Thread | None = None

    def _start(self, target, *args, wait: bool = False) -> None:
        self._thread = threading.Thread(target=target, args=args, daemon=True)
        self._thread.start()
        if wait:
            self.wait()

    def wait(self, timeout: float | None = None) -> None:
        if self._thread:
            self._thread.join(timeout)
