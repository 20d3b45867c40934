"""What the UI talks to, bundled so `build_demo` takes one argument and tests can build their own."""

from __future__ import annotations

from dataclasses import dataclass

from safecb.models.backend import JanusBackend


@dataclass
class Services:
    backend: JanusBackend  # the loaded model (toy or Janus-Pro); the UI only calls its public methods
    # The store (db/, issue 5) and the job runner join here when they exist.
