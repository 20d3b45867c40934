"""The store's record of login attempts, read by the app's login limits (`ui/auth.py`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select

from .models import LoginAttempt, utcnow
from .store import Store

NAME_CHARS = 128  # longer user names are cut: the row records an attempt, not a payload


class LoginLog:
    """Adds and counts login attempts in one store; every process on that store sees the same counts."""

    def __init__(self, store: Store):
        self.store = store

    def add(self, user: str, address: str, ok: bool, at: datetime | None = None) -> None:
        with self.store.session() as s:
            s.add(LoginAttempt(user=(user or "")[:NAME_CHARS], address=address[:NAME_CHARS], ok=ok,
                               at=at or utcnow()))

    def failures_since_success(self, user: str, address: str, since: datetime) -> list[datetime]:
        """Times of `user`'s failed logins from `address` after `since` and after their last success."""
        who = [LoginAttempt.user == (user or "")[:NAME_CHARS], LoginAttempt.address == address[:NAME_CHARS]]
        with self.store.session() as s:
            last_ok = s.scalar(select(func.max(LoginAttempt.at)).where(*who, LoginAttempt.ok.is_(True)))
            after = max(since, last_ok) if last_ok is not None else since
            query = select(LoginAttempt.at).where(*who, LoginAttempt.ok.is_(False), LoginAttempt.at > after)
            return list(s.scalars(query.order_by(LoginAttempt.at)))

    def failures_since(self, since: datetime) -> int:
        """Failed logins from anyone, as any user, after `since`."""
        with self.store.session() as s:
            query = select(func.count()).select_from(LoginAttempt).where(LoginAttempt.ok.is_(False),
                                                                        LoginAttempt.at > since)
            return s.scalar(query)

    def has_logged_in(self, address: str, since: datetime) -> bool:
        """Whether some login from `address` succeeded after `since`."""
        with self.store.session() as s:
            query = select(LoginAttempt.id).where(LoginAttempt.address == address[:NAME_CHARS],
                                                  LoginAttempt.ok.is_(True), LoginAttempt.at > since)
            return s.scalar(query.limit(1)) is not None

    def forget_before(self, before: datetime) -> None:
        with self.store.session() as s:
            s.execute(delete(LoginAttempt).where(LoginAttempt.at < before))
