"""Headers on the files Gradio serves (`/gradio_api/file=…`), as an ASGI middleware for `launch()`.

Gradio serves a file under `allowed_paths` inline with its own type, so an exported report.html
would open as a page in the app's origin, where its scripts could drive the API as the viewer.
Here only pictures (Gradio's SVG icons among them) stay inline; every other file (HTML, zip, CSV, safetensors) comes as a download
(`application/octet-stream`, `Content-Disposition: attachment`), and every file gets
`Content-Security-Policy: sandbox`, so even a page opened from it runs nothing in the app's origin.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders

# Shown in place. An SVG can hold script, which never runs in an <img>; opened as a page of its own,
# the sandbox below keeps it inert (and Gradio's own icons are SVGs served by this route).
INLINE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "image/svg+xml"})
FILE_ROUTES = ("/file=", "/file/")  # Gradio's file route and its deprecated form


def is_file_route(path: str) -> bool:
    return any(route in path for route in FILE_ROUTES)


def harden(headers: MutableHeaders) -> None:
    """Make a file response safe to serve from the app's origin (see the module docstring)."""
    headers["Content-Security-Policy"] = "sandbox"
    headers["X-Content-Type-Options"] = "nosniff"
    media_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type in INLINE_TYPES:
        return
    headers["Content-Type"] = "application/octet-stream"
    _, separator, parameters = headers.get("content-disposition", "").partition(";")  # keep the file name
    headers["Content-Disposition"] = "attachment" + (separator + parameters if separator else "")


class DownloadOnlyFiles:
    """ASGI middleware: `harden` the headers of every successful response of a file route."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not is_file_route(scope.get("path", "")):
            await self.app(scope, receive, send)
            return

        async def send_hardened(message):
            if message["type"] == "http.response.start" and message.get("status", 200) < 300:
                harden(MutableHeaders(scope=message))
            await send(message)

        await self.app(scope, receive, send_hardened)
