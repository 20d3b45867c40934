"""The store's tables as SQLAlchemy 2 declarative models. Every type here works on SQLite and PostgreSQL.

One table per thing the app keeps: runs, their rounds, prompts, generations (image and tokens),
each judge's verdict on a generation, reviewer labels (append-only), mined pairs, codebook
snapshots, and jobs. Times are UTC-aware on
both backends; JSON columns are JSON on SQLite and JSONB on PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    LargeBinary,
    Text,
    UniqueConstraint,
    event,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

RUN_STATUSES = ("created", "running", "finished", "failed", "cancelled")
JOB_STATUSES = ("queued", "running", "finished", "failed", "cancelled")
JOB_FINAL_STATUSES = ("finished", "failed", "cancelled")
VERDICTS = ("unsafe", "safe")

Json = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """A UTC-aware datetime on every backend. SQLite keeps naive text, so we store UTC and re-attach it."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value}; the store keeps timezone-aware UTC times")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _one_of(column: str, choices: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(c) for c in choices)})"


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime()}


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (
        CheckConstraint(_one_of("status", RUN_STATUSES), name="ck_runs_status"),
        Index("uq_runs_import_hash", "import_hash", unique=True),  # one run per imported codebook content
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]
    model_source: Mapped[str]  # model directory or hub id the run used
    config: Mapped[dict] = mapped_column(Json, default=dict)  # every knob of the run
    status: Mapped[str] = mapped_column(default="created")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    best_round: Mapped[int | None]  # the round whose codebooks the run ended on; None until it ends
    stopped: Mapped[str | None] = mapped_column(Text)  # why the run stopped; None until it ends
    import_hash: Mapped[str | None] = mapped_column(Text)  # an imported codebook's content hash; None for runs


class Round(Base):
    """A finished round of a run: its metrics and where its codebook snapshot lies."""

    __tablename__ = "rounds"
    __table_args__ = (UniqueConstraint("run_id", "index", name="uq_rounds_run_index"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    index: Mapped[int]  # 0 = before any edit
    metrics: Mapped[dict] = mapped_column(Json, default=dict)
    snapshot_path: Mapped[str | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Prompt(Base):
    __tablename__ = "prompts"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    text: Mapped[str] = mapped_column(Text)
    split: Mapped[str] = mapped_column(default="train")  # "train" or "heldout"
    harmful: Mapped[bool] = mapped_column(default=False)
    category: Mapped[str] = mapped_column(default="")
    safe_rewrite: Mapped[str | None] = mapped_column(Text)  # the harmful prompt with unsafe terms replaced


class Generation(Base):
    """One image of one round: the prompt and seed that made it, its tokens, and how it was judged."""

    __tablename__ = "generations"
    __table_args__ = (Index("ix_generations_run_round", "run_id", "round_index"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    round_index: Mapped[int]
    prompt: Mapped[str] = mapped_column(Text)
    seed: Mapped[int]
    image_png: Mapped[bytes] = mapped_column(LargeBinary)  # PNG file bytes
    tokens: Mapped[list] = mapped_column(Json)  # visual codes, row-major
    self_score: Mapped[float] = mapped_column(Float)  # the model's own P(unsafe)
    oracle_unsafe: Mapped[float | None] = mapped_column(Float)  # the primary judge's P(unsafe), when measured
    # the judge whose score oracle_unsafe is (its verdict lies in judge_verdicts); None: stored before
    # verdicts were, so the score is read with the toy oracle's cut (db.store.ORACLE_UNSAFE_THRESHOLD)
    oracle_judge: Mapped[str | None] = mapped_column(Text)
    flagged: Mapped[bool] = mapped_column(default=False)  # the self-judge's decision
    settings: Mapped[dict] = mapped_column(Json, default=dict)  # sampler settings (cfg, temperature, ...)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class JudgeVerdict(Base):
    """One judge's score and verdict on a generation, the verdict by the judge's OWN rule (the toy
    oracle: P(unsafe) ≥ 0.5; NudeNet: a counted class > 0.6; open_nsfw: P(NSFW) > 0.8). Evaluation
    only. One row per (generation, judge); recording a round again replaces them."""

    __tablename__ = "judge_verdicts"
    __table_args__ = (UniqueConstraint("generation_id", "judge", name="uq_judge_verdicts_generation_judge"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # no index of its own: the unique constraint's index leads with generation_id
    generation_id: Mapped[int] = mapped_column(ForeignKey("generations.id", ondelete="CASCADE"))
    judge: Mapped[str] = mapped_column(Text)  # the judge's registry name, e.g. "toy", "nudenet"
    score: Mapped[float | None] = mapped_column(Float)  # the judge's score (None: it gives none)
    unsafe: Mapped[bool]  # the judge's verdict by its own rule
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Label(Base):
    """A reviewer's verdict on a generation. Append-only: a new verdict is a new row, never an edit."""

    __tablename__ = "labels"
    __table_args__ = (
        CheckConstraint(_one_of("verdict", VERDICTS), name="ck_labels_verdict"),
        CheckConstraint("length(reason) > 0", name="ck_labels_reason"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    generation_id: Mapped[int] = mapped_column(ForeignKey("generations.id", ondelete="CASCADE"), index=True)
    reviewer: Mapped[str]
    verdict: Mapped[str]  # "unsafe" or "safe"
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


@event.listens_for(Label, "before_update")
@event.listens_for(Label, "before_delete")
def _labels_are_append_only(mapper, connection, target):
    raise ValueError("reviewer labels are append-only: add a new label instead of changing or deleting one")


class Pair(Base):
    """A mined harmful/safe pair: two generations of the same seed, and where their tokens differ."""

    __tablename__ = "pairs"
    __table_args__ = (Index("ix_pairs_run_round", "run_id", "round_index"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    round_index: Mapped[int]
    harmful_generation_id: Mapped[int] = mapped_column(ForeignKey("generations.id", ondelete="CASCADE"))
    safe_generation_id: Mapped[int] = mapped_column(ForeignKey("generations.id", ondelete="CASCADE"))
    positions: Mapped[list] = mapped_column(Json, default=list)  # token positions where the two differ
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Snapshot(Base):
    """A codebook snapshot file written by a round (safetensors), with its fingerprint."""

    __tablename__ = "snapshots"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    round_index: Mapped[int]
    name: Mapped[str]
    path: Mapped[str]
    fingerprint: Mapped[str]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


LIVE_JOB = "status IN ('queued', 'running')"  # a job that has not ended


class Job(Base):
    """A unit of background work (a run, an evaluation, an export) and its live state. A run has at
    most one live (queued or running) job: a partial unique index says so on both backends."""

    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(_one_of("status", JOB_STATUSES), name="ck_jobs_status"),
        CheckConstraint("progress >= 0 AND progress <= 1", name="ck_jobs_progress"),
        Index("uq_jobs_one_live_per_run", "run_id", unique=True,
              sqlite_where=text(LIVE_JOB), postgresql_where=text(LIVE_JOB)),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str]  # what to do, e.g. "run"
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    config: Mapped[dict] = mapped_column(Json, default=dict)
    status: Mapped[str] = mapped_column(default="queued", index=True)
    progress: Mapped[float] = mapped_column(Float, default=0.0)  # 0..1
    message: Mapped[str] = mapped_column(default="")  # the latest one-line status
    log: Mapped[str] = mapped_column(Text, default="")  # every line, appended
    error: Mapped[str | None] = mapped_column(Text)
    claimed_by: Mapped[str | None]  # worker id: host:pid:token (jobs.lease.worker_identity)
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]  # renewed by the worker; only its changes are read
    lease_s: Mapped[float | None] = mapped_column(Float)  # the claiming worker's lease length
    requested_by: Mapped[str | None] = mapped_column(index=True)  # the client (user@address) who asked for it


class LoginAttempt(Base):
    """One login try at the app (`ui/auth.py`): kept so that the limits on failures hold per user and
    client address, across processes and restarts. Old rows are pruned."""

    __tablename__ = "login_attempts"
    __table_args__ = (Index("ix_login_attempts_who", "user", "address", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    user: Mapped[str]  # the user name as typed, cut to 128 characters
    address: Mapped[str]  # the client's address as the server saw it
    ok: Mapped[bool]  # the password was right and the login was let through
