"""Plain, frozen copies of rows that the store hands out. They outlive the session that read them."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime


@dataclass(frozen=True)
class RunRecord:
    id: int
    name: str
    model_source: str
    config: dict
    status: str
    created_at: datetime
    best_round: int | None  # the round whose codebooks the run ended on; None until it ends
    stopped: str | None  # why the run stopped; None until it ends


@dataclass(frozen=True)
class RoundRecord:
    id: int
    run_id: int
    index: int
    metrics: dict
    snapshot_path: str | None
    created_at: datetime


@dataclass(frozen=True)
class PromptRecord:
    id: int
    run_id: int
    text: str
    split: str
    harmful: bool
    category: str
    safe_rewrite: str | None


@dataclass(frozen=True)
class GenerationRecord:
    id: int
    run_id: int
    round_index: int
    prompt: str
    seed: int
    image_png: bytes
    tokens: list[int]
    self_score: float
    oracle_unsafe: float | None  # the primary judge's score
    flagged: bool
    settings: dict
    created_at: datetime
    oracle_judge: str | None = None  # whose score oracle_unsafe is; None: stored before judges were named


@dataclass(frozen=True)
class VerdictRecord:
    """A judge's verdict on a generation. judge None: a score stored before verdicts were kept,
    read with the toy oracle's cut (the only rule the store knew then)."""

    generation_id: int
    judge: str | None
    score: float | None
    unsafe: bool


@dataclass(frozen=True)
class LabelRecord:
    id: int
    generation_id: int
    reviewer: str
    verdict: str
    reason: str
    created_at: datetime


@dataclass(frozen=True)
class PairRecord:
    id: int
    run_id: int
    round_index: int
    harmful_generation_id: int
    safe_generation_id: int
    positions: list[int]
    created_at: datetime


@dataclass(frozen=True)
class SnapshotRecord:
    id: int
    run_id: int
    round_index: int
    name: str
    path: str
    fingerprint: str
    created_at: datetime


@dataclass(frozen=True)
class JobRecord:
    id: int
    kind: str
    run_id: int | None
    config: dict
    status: str
    progress: float
    message: str
    log: str
    error: str | None
    claimed_by: str | None
    cancel_requested: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    lease_s: float | None
    requested_by: str | None


def to_record(cls, row):
    """Copy the attributes `cls` names from an ORM object into a new `cls`."""
    return cls(**{f.name: getattr(row, f.name) for f in fields(cls)})
