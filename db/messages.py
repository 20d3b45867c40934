"""Failure messages fit to show users: one line naming what went wrong, with no server path,
database endpoint or SQL statement in it. The server log keeps the whole story, traceback included.
Used by the job runner (a job's error and log) and the UI (ui.errors)."""

from __future__ import annotations

import re

from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError

from .store import StoreError

PATH = re.compile(r"(?:[A-Za-z]:)?(?:[\\/][^\\/\s'\"]+)+[\\/]([^\\/\s'\"]+)")  # an absolute path: keep its name
UNREACHABLE = "the store (database) could not be reached"


def without_paths(text: str) -> str:
    """`text` with every absolute path cut to its file name."""
    return PATH.sub(r"\1", text)


def lost_database(exc: BaseException) -> bool:
    """True when `exc` says the database could not be reached or its connection broke. SQLite's
    own operational errors ("disk I/O error", "database is locked") name no endpoint and are not
    counted: their words are worth showing."""
    if isinstance(exc, (StoreError, DisconnectionError)):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    from_sqlite = type(exc.orig).__module__.startswith("sqlite3")
    return exc.connection_invalidated or (isinstance(exc, (OperationalError, InterfaceError)) and not from_sqlite)


def public_reason(exc: BaseException) -> str:
    """What went wrong in one line: the message's first line with server paths cut to file names.
    For a database error, the driver's own words without SQLAlchemy's SQL statement, parameters and
    link; for a lost connection not even those (a server driver's words name its host and port)."""
    if lost_database(exc):
        return UNREACHABLE
    text = str(exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc).strip()
    return without_paths(text.splitlines()[0]) if text else ""


def public_error(exc: BaseException) -> str:
    """"ExceptionType: what went wrong" in one line fit for any user (see `public_reason`)."""
    reason = public_reason(exc)
    return f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__
