"""The login check the app gives Gradio's `auth=`: one user and password, compared in constant time,
with a limit on failures so a password cannot be guessed at speed."""

from __future__ import annotations

import hmac
import threading
import time
from collections import deque


class LimitedLogin:
    """Callable (user, password) -> bool. After `max_failures` wrong logins within `window_s` seconds,
    every login is refused (the right one too) until the oldest of those failures leaves the window."""

    def __init__(self, user: str, password: str, max_failures: int = 5, window_s: float = 60.0,
                 clock=time.monotonic):
        self._user, self._password = user.encode(), password.encode()
        self.max_failures, self.window_s, self._clock = max_failures, window_s, clock
        self._failures: deque[float] = deque()
        self._lock = threading.Lock()

    def locked(self) -> bool:
        with self._lock:
            now = self._clock()
            while self._failures and now - self._failures[0] >= self.window_s:
                self._failures.popleft()
            return len(self._failures) >= self.max_failures

    def __call__(self, user: str, password: str) -> bool:
        if self.locked():
            return False
        right = hmac.compare_digest((user or "").encode(), self._user) & hmac.compare_digest(
            (password or "").encode(), self._password)
        if not right:
            with self._lock:
                self._failures.append(self._clock())
        return right
