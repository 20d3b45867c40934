"""The login check the app gives Gradio's `auth=`: one user and password, compared in constant time,
with limits on failures kept in the store, so that guessing is slow, one stranger cannot lock anyone
else out, and neither a restart nor a second app on the same store resets the counts.

  * per user name and client address: after `failures_before_backoff` wrong logins, that pair waits
    `first_wait_s` after its latest failure, doubling with each further failure up to `max_wait_s`;
    a right password from the same pair during the wait is refused too (the guess is not checked);
  * overall: past `global_failures_per_hour` wrong logins in the last hour, from anyone, only
    addresses that have logged in successfully before may try, so a spread-out guesser is slowed
    without shutting out the people who use the app.

Gradio calls `auth(user, password)` without the request, so `ClientAddressMiddleware` puts the
client's address in a context variable for the login route to read. Behind a proxy or the `--share`
tunnel every client has the proxy's address; the limits then hold per user name only.
"""

from __future__ import annotations

import hmac
import logging
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

from db.logins import LoginLog
from db.models import utcnow

log = logging.getLogger(__name__)

CLIENT_ADDRESS: ContextVar[str] = ContextVar("client_address", default="unknown")


class ClientAddressMiddleware:
    """ASGI middleware: sets CLIENT_ADDRESS for the request it passes on (same task, so the
    login handler Gradio runs for it sees the value)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope.get("client"):
            token = CLIENT_ADDRESS.set(str(scope["client"][0]))
            try:
                await self.app(scope, receive, send)
            finally:
                CLIENT_ADDRESS.reset(token)
            return
        await self.app(scope, receive, send)


@dataclass(frozen=True)
class LoginLimits:
    failures_before_backoff: int = 5  # wrong logins one user name may make from one address before waiting
    first_wait_s: float = 30.0  # the wait after that many failures; it doubles with each further one
    max_wait_s: float = 3600.0  # the longest wait
    memory_s: float = 86_400.0  # failures older than this are forgotten (and their rows deleted)
    global_failures_per_hour: int = 200  # past this, only addresses that logged in before may try
    known_address_days: float = 30.0  # how long a successful login keeps its address known


class LimitedLogin:
    """Callable (user, password) -> bool for Gradio's `auth=`, limited as the module says."""

    def __init__(self, user: str, password: str, logins: LoginLog, limits: LoginLimits = LoginLimits(),
                 clock: Callable[[], datetime] = utcnow):
        self._user, self._password = user.encode(), password.encode()
        self.logins, self.limits, self._clock = logins, limits, clock

    def wait_s(self, user: str, address: str, now: datetime | None = None) -> float:
        """Seconds until `user` may try again from `address` (0: now)."""
        now = now or self._clock()
        failures = self.logins.failures_since_success(user, address, now - timedelta(seconds=self.limits.memory_s))
        over = len(failures) - self.limits.failures_before_backoff
        if over < 0:
            return 0.0
        wait = min(self.limits.first_wait_s * 2.0 ** over, self.limits.max_wait_s)
        return max(0.0, (failures[-1] - now).total_seconds() + wait)

    def _under_global_ceiling(self, address: str, now: datetime) -> bool:
        recent = self.logins.failures_since(now - timedelta(hours=1))
        if recent < self.limits.global_failures_per_hour:
            return True
        return self.logins.has_logged_in(address, now - timedelta(days=self.limits.known_address_days))

    def _right(self, user: str, password: str) -> bool:
        return hmac.compare_digest((user or "").encode(), self._user) & hmac.compare_digest(
            (password or "").encode(), self._password)

    def __call__(self, user: str, password: str) -> bool:
        address, now = CLIENT_ADDRESS.get(), self._clock()
        try:
            allowed = self.wait_s(user, address, now) == 0 and self._under_global_ceiling(address, now)
            ok = allowed and self._right(user, password)
            self.logins.add(user, address, ok, at=now)
            if not ok:
                self.logins.forget_before(now - timedelta(seconds=self.limits.memory_s))
        except Exception:  # the store is away: a login that cannot be counted is refused
            log.exception("login: could not read or record the attempt; refusing it")
            return False
        return ok
