"""Fault injection for tests: `kill_point(name)` kills this process with SIGKILL when the environment
variable SAFECB_KILL_AT names that point, as `name` (its first pass) or `name:N` (its N-th pass in
this process). Unset, it costs one lookup. The points sit where a kill could lose or duplicate
bookkeeping (jobs/runner.py): "before_record_R" and "after_record_R" around the store's transaction
for round R, and "stage" at every progress event inside a round."""

from __future__ import annotations

import os
import signal

ENV_VAR = "SAFECB_KILL_AT"
_passes: dict[str, int] = {}


def kill_point(name: str) -> None:
    wanted = os.environ.get(ENV_VAR)
    if not wanted:
        return
    point, _, nth = wanted.partition(":")
    if point == name:
        _passes[name] = _passes.get(name, 0) + 1
        if _passes[name] == int(nth or 1):
            os.kill(os.getpid(), signal.SIGKILL)
