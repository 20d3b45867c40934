"""What a user sees when a handler fails unexpectedly: one plain sentence in Gradio's error toast,
never a traceback, a bare "Error" or a server path. `guard_handlers(demo)` wraps every handler of
a built app. Mistakes in what users type are handled inside the tabs (`ui.common.InputError`)."""

from __future__ import annotations

import functools
import inspect
import logging

import gradio as gr
from sqlalchemy.exc import OperationalError

from db.messages import lost_database, public_reason, without_paths

log = logging.getLogger(__name__)


def public_message(exc: BaseException) -> str:
    """One line for the user: what went wrong, with server paths cut to their file names and no
    database endpoint or SQL statement (db.messages)."""
    if isinstance(exc, OperationalError) or lost_database(exc):
        return "The store (database) cannot be reached right now, so nothing was read or saved. Try again in a moment."
    if isinstance(exc, gr.Error):
        return without_paths(str(exc.message))
    return "Something went wrong: " + (public_reason(exc) or type(exc).__name__)


def _error(exc: BaseException) -> gr.Error:
    if not isinstance(exc, gr.Error):
        log.exception("handler failed")
    return gr.Error(public_message(exc))


def guard(fn):
    """`fn` with every exception turned into a gr.Error carrying `public_message`."""
    if inspect.isasyncgenfunction(fn):
        @functools.wraps(fn)
        async def agen(*args, **kwargs):
            try:
                async for item in fn(*args, **kwargs):
                    yield item
            except Exception as exc:
                raise _error(exc) from None
        return agen
    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def coro(*args, **kwargs):
            try:
                return await fn(*args, **kwargs)
            except Exception as exc:
                raise _error(exc) from None
        return coro
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as exc:
                raise _error(exc) from None
        return gen

    @functools.wraps(fn)
    def plain(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise _error(exc) from None
    return plain


def guard_handlers(demo: gr.Blocks) -> gr.Blocks:
    for block_fn in demo.fns.values():
        if block_fn.fn is not None and not getattr(block_fn.fn, "_guarded", False):
            block_fn.fn = guard(block_fn.fn)
            block_fn.fn._guarded = True
    return demo
