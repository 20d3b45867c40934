"""What a user sees when a handler fails unexpectedly: one plain sentence in Gradio's error toast,
never a traceback, a bare "Error" or a server path. `guard_handlers(demo)` wraps every handler of
a built app. Mistakes in what users type are handled inside the tabs (`ui.common.InputError`)."""

from __future__ import annotations

import functools
import inspect
import logging
import re

import gradio as gr
from sqlalchemy.exc import DBAPIError, OperationalError

from db import StoreError

log = logging.getLogger(__name__)
PATH = re.compile(r"(?:[A-Za-z]:)?(?:[\\/][^\\/\s'\"]+)+[\\/]([^\\/\s'\"]+)")  # an absolute path: keep its name


def public_message(exc: BaseException) -> str:
    """One line for the user: what went wrong, with server paths cut to their file names."""
    if isinstance(exc, (OperationalError, StoreError)) or (isinstance(exc, DBAPIError) and exc.connection_invalidated):
        return "The store (database) cannot be reached right now, so nothing was read or saved. Try again in a moment."
    if isinstance(exc, gr.Error):
        return PATH.sub(r"\1", str(exc.message))
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return "Something went wrong: " + PATH.sub(r"\1", text)


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
