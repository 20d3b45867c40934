"""The store: one `Store` object over one database, with a small explicit repository API.

    store = Store.open()                       # argument, else $SAFECB_DB_URL, else artifacts/safecb.db
    run_id = store.create_run("demo", "assets/toy", config={...})
    store.add_round(run_id, 0, metrics={...})  # idempotent per (run, index)

Every method opens its own short session and returns plain records (db/records.py) or dicts, never
ORM objects. SQLite (the default) runs in WAL mode with a busy timeout so the UI and an in-process
job runner can share it; with PostgreSQL separate workers claim jobs with FOR UPDATE SKIP LOCKED.
Opening a database that older code made creates the tables it lacks and adds the (nullable) columns
its tables lack.

Judges' verdicts. Each judge that graded a generation has a row in `judge_verdicts` with its score
and its verdict by its OWN rule; `Generation.oracle_unsafe` is the primary judge's score and
`Generation.oracle_judge` names that judge. Readers that need a verdict (`agreement_counts`,
`oracle_verdicts`, `generation_summaries`, `run_labels`) read the stored verdict of the named judge,
by default each generation's primary judge. A score stored before verdicts were kept (no
`oracle_judge`) is read with the toy oracle's cut, `ORACLE_UNSAFE_THRESHOLD`, the only rule the
store applied then.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path

from sqlalchemy import and_, case, create_engine, delete, event, func, inspect, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import sessionmaker

from .models import (
    JOB_FINAL_STATUSES,
    LIVE_JOB,
    RUN_STATUSES,
    VERDICTS,
    Base,
    Generation,
    Job,
    JudgeVerdict,
    Label,
    Pair,
    Prompt,
    Round,
    Run,
    Snapshot,
    utcnow,
)
from .records import (
    GenerationRecord,
    JobRecord,
    LabelRecord,
    PairRecord,
    PromptRecord,
    RoundRecord,
    RunRecord,
    SnapshotRecord,
    VerdictRecord,
    to_record,
)

ENV_VAR = "SAFECB_DB_URL"
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SQLITE_PATH = REPO_ROOT / "artifacts" / "safecb.db"
SQLITE_BUSY_TIMEOUT_MS = 15_000  # how long a writer waits for SQLite's single write lock
PG_CONNECT_TIMEOUT_S = 5  # an unreachable PostgreSQL fails within this, not after minutes
# the toy oracle's cut: applied ONLY to a score stored before verdicts were kept (no oracle_judge);
# every other verdict is the stored one of the judge that made it
ORACLE_UNSAFE_THRESHOLD = 0.5
ID_BATCH = 500  # ids per IN (...) query when reading many rows by id


@dataclass(frozen=True)
class QueueLimits:
    per_client_queued: int = 3  # jobs one client (user and address) may have waiting at once
    total_queued: int = 20  # jobs that may wait at once, from everyone


class QueueFull(ValueError):
    """A job was refused because too many are waiting."""


QUEUE_LOCK_KEY = 0x5AFEC8  # the PostgreSQL advisory lock that serialises queue counts


class StoreError(RuntimeError):
    """The database cannot be opened or reached. The message names the URL with its password masked."""


class DuplicateImport(ValueError):
    """Codebooks with this content were imported already; `run` is the run that holds them."""

    def __init__(self, run: RunRecord):
        super().__init__(f"imported already, as run #{run.id}")
        self.run = run


def default_url() -> str:
    """$SAFECB_DB_URL when set, else the SQLite file artifacts/safecb.db in the repository."""
    return os.environ.get(ENV_VAR) or f"sqlite:///{DEFAULT_SQLITE_PATH}"


def mask_url(url: str) -> str:
    """The URL with its password replaced by ***, also when SQLAlchemy cannot parse it."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", str(url))


def _driver_reason(exc: Exception, password: str | None) -> str:
    reason = str(exc.orig if isinstance(exc, DBAPIError) else exc).strip().splitlines()
    reason = reason[0] if reason else type(exc).__name__
    return reason.replace(password, "***") if password else reason


def _check_choice(what: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{what} must be one of {', '.join(repr(c) for c in choices)}; got {value!r}")


def _check_progress(progress: float) -> float:
    progress = float(progress)
    if not 0.0 <= progress <= 1.0:  # NaN fails this too
        raise ValueError(f"job progress must lie in [0, 1]; got {progress}")
    return progress


class Store:
    """The repository over one database URL. Open it with `Store.open(url=None)`."""

    def __init__(self, url: str, *, schema: str | None = None, **engine_kwargs):
        self.masked_url = mask_url(url)
        try:
            parsed = make_url(url)
        except ArgumentError as exc:
            raise StoreError(f"not a database URL: {self.masked_url!r} ({exc})") from None
        self.dialect = parsed.get_backend_name()
        connect_args = dict(engine_kwargs.pop("connect_args", {}))

        if self.dialect == "sqlite":
            if schema is not None:
                raise StoreError(f"schema={schema!r} is for PostgreSQL only; got {self.masked_url}")
            database = parsed.database or ""
            if database and database != ":memory:" and not database.startswith("file:"):
                try:
                    Path(database).parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise StoreError(f"cannot create the folder of the SQLite file {self.masked_url}: {exc}") from None
            connect_args.setdefault("check_same_thread", False)  # sessions are short; threads share the pool
        elif self.dialect == "postgresql":
            connect_args.setdefault("connect_timeout", PG_CONNECT_TIMEOUT_S)
            if schema is not None:
                if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", schema):
                    raise ValueError(f"schema must be a plain identifier; got {schema!r}")
                connect_args["options"] = f"{connect_args.get('options', '')} -csearch_path={schema}".strip()
            engine_kwargs.setdefault("pool_pre_ping", True)

        try:
            self.engine = create_engine(parsed, connect_args=connect_args, **engine_kwargs)
        except (SQLAlchemyError, ImportError) as exc:
            raise StoreError(f"cannot use the database URL {self.masked_url}: {exc}") from None
        if self.dialect == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

        try:  # connect now, so an unreachable database fails here with a clear message
            with self.engine.begin() as conn:
                if schema is not None:
                    conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
            Base.metadata.create_all(self.engine)
            _add_missing_columns(self.engine)
            _add_missing_indexes(self.engine)
            _check_writable(self.engine)
        except SQLAlchemyError as exc:
            self.engine.dispose()
            reason = _driver_reason(exc, parsed.password)
            if "readonly" in reason.replace("-", "").replace(" ", "").lower():
                reason += " (the store must be writable: check the file's and its folder's permissions)"
            raise StoreError(f"cannot open the database at {self.masked_url}: {reason}") from None

    @classmethod
    def open(cls, url: str | None = None, *, schema: str | None = None, **engine_kwargs) -> Store:
        """Open the store at `url`, else $SAFECB_DB_URL, else sqlite:///<repo>/artifacts/safecb.db."""
        return cls(url or default_url(), schema=schema, **engine_kwargs)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.masked_url!r})"

    def session(self):
        """A short transaction: `with self.session() as s:` commits on exit, rolls back on error."""
        return self._sessions.begin()

    # ------------------------------------------------------------------ runs
    def create_run(self, name: str, model_source: str, config: Mapping | None = None, status: str = "created") -> int:
        _check_choice("run status", status, RUN_STATUSES)
        with self.session() as s:
            run = Run(name=name, model_source=str(model_source), config=dict(config or {}), status=status)
            s.add(run)
            s.flush()
            return run.id

    def get_run(self, run_id: int) -> RunRecord | None:
        with self.session() as s:
            run = s.get(Run, run_id)
            return to_record(RunRecord, run) if run else None

    def list_runs(self, limit: int = 100) -> list[RunRecord]:
        """Newest first."""
        with self.session() as s:
            runs = s.scalars(select(Run).order_by(Run.id.desc()).limit(limit))
            return [to_record(RunRecord, r) for r in runs]

    def delete_run(self, run_id: int) -> None:
        """Remove a run and everything recorded under it (rounds, prompts, generations, labels, pairs,
        snapshots); its jobs stay, detached. For a run that never came to be, e.g. a failed import."""
        with self.session() as s:
            run = s.get(Run, run_id)
            if run is None:
                raise KeyError(f"no run with id {run_id}")
            s.delete(run)

    def update_run_status(self, run_id: int, status: str) -> None:
        _check_choice("run status", status, RUN_STATUSES)
        with self.session() as s:
            if s.execute(update(Run).where(Run.id == run_id).values(status=status)).rowcount == 0:
                raise KeyError(f"no run with id {run_id}")

    def set_run_outcome(self, run_id: int, best_round: int | None, stopped: str) -> None:
        """Record how a run ended: the round whose codebooks it ended on, and why it stopped."""
        values = {"best_round": None if best_round is None else int(best_round), "stopped": stopped}
        with self.session() as s:
            if s.execute(update(Run).where(Run.id == run_id).values(**values)).rowcount == 0:
                raise KeyError(f"no run with id {run_id}")

    # ------------------------------------------------------------------ imports
    def imported_run(self, import_hash: str) -> RunRecord | None:
        """The run that holds imported codebooks with this content hash, if any."""
        with self.session() as s:
            run = s.scalars(select(Run).where(Run.import_hash == import_hash)).first()
            return to_record(RunRecord, run) if run else None

    def record_import(self, name: str, model_source: str, config: Mapping, import_hash: str, metrics: Mapping,
                      place_file: Callable[[int], str]) -> int:
        """Record imported codebooks as a finished run with one round (0), all in one transaction: the
        run row, then `place_file(run_id)` (puts the file where the run keeps it; returns its path as
        the round's snapshot path), then the round. A failure anywhere leaves no row. A unique index on
        `import_hash` makes simultaneous imports of one content give one run; the others get
        DuplicateImport naming it."""
        try:
            with self.session() as s:
                run = Run(name=name, model_source=str(model_source), config=dict(config), status="finished",
                          import_hash=import_hash)
                s.add(run)
                s.flush()  # the INSERT comes first, so on SQLite this transaction takes the write lock at once
                snapshot_path = place_file(run.id)
                s.add(Round(run_id=run.id, index=0, metrics=dict(metrics), snapshot_path=str(snapshot_path)))
                run_id = run.id
        except IntegrityError:
            holder = self.imported_run(import_hash)
            if holder is None:
                raise
            raise DuplicateImport(holder) from None
        return run_id

    # ------------------------------------------------------------------ rounds
    def add_round(
        self, run_id: int, index: int, metrics: Mapping | None = None, snapshot_path: str | None = None
    ) -> RoundRecord:
        """Insert round `index` of a run, or overwrite its metrics and snapshot path if it exists."""
        insert = pg_insert if self.dialect == "postgresql" else sqlite_insert
        snapshot_path = None if snapshot_path is None else str(snapshot_path)
        values = {"metrics": dict(metrics or {}), "snapshot_path": snapshot_path}
        stmt = insert(Round).values(run_id=run_id, index=index, created_at=utcnow(), **values)
        stmt = stmt.on_conflict_do_update(index_elements=["run_id", "index"], set_=values)
        with self.session() as s:
            s.execute(stmt)
            row = s.scalars(select(Round).where(Round.run_id == run_id, Round.index == index)).one()
            return to_record(RoundRecord, row)

    def record_round(self, run_id: int, index: int, metrics: Mapping, snapshot_path: str, fingerprint: str,
                     generations: list[Mapping], pairs: list[Mapping]) -> None:
        """Everything a finished round adds, in one transaction, so the store holds the whole round
        or none of it. Idempotent: recording round `index` again (a resumed run redoes a round a kill
        cut short) updates the same rows in place, so their ids, and the reviewer labels on them, stay.

        generations: dicts as for `add_generations` (judges' "verdicts" included), each with a "kind"
        ("harmful", "rewrite", "benign"); a generation is known by (kind, prompt, seed) within its
        round, rows of the round not in the list are deleted, and the round's verdicts are
        replaced. pairs: {"harmful": (prompt, seed), "safe": (prompt, seed),
        "positions": [...]}, naming harmful and rewrite generations of round index − 1 (pairs are mined
        from the previous round); one whose generations the store lacks is skipped."""
        insert = pg_insert if self.dialect == "postgresql" else sqlite_insert
        values = {"metrics": dict(metrics), "snapshot_path": str(snapshot_path)}
        with self.session() as s:
            stmt = insert(Round).values(run_id=run_id, index=index, created_at=utcnow(), **values)
            s.execute(stmt.on_conflict_do_update(index_elements=["run_id", "index"], set_=values))
            existing = {_generation_key(g): g for g in s.scalars(
                select(Generation).where(Generation.run_id == run_id, Generation.round_index == index))}
            seen, judged = set(), []
            for g in generations:
                g = dict(g)
                kind = g.pop("kind")
                verdicts = _split_verdicts(g)
                g["settings"] = {**dict(g.get("settings") or {}), "kind": kind}
                g["image_png"], g["tokens"] = bytes(g["image_png"]), [int(t) for t in g["tokens"]]
                key = (kind, g["prompt"], int(g["seed"]))
                seen.add(key)
                row = existing.get(key)
                if row is None:
                    row = Generation(run_id=run_id, round_index=index, **g)
                    s.add(row)
                else:
                    for name, value in g.items():
                        setattr(row, name, value)
                judged.append((row, verdicts))
            for key, row in existing.items():
                if key not in seen:
                    s.delete(row)
            s.flush()
            round_ids = select(Generation.id).where(Generation.run_id == run_id, Generation.round_index == index)
            s.execute(delete(JudgeVerdict).where(JudgeVerdict.generation_id.in_(round_ids)))
            s.add_all(JudgeVerdict(generation_id=row.id, **v) for row, verdicts in judged for v in verdicts)
            s.execute(delete(Pair).where(Pair.run_id == run_id, Pair.round_index == index))
            s.execute(delete(Snapshot).where(Snapshot.run_id == run_id, Snapshot.round_index == index))
            s.add(Snapshot(run_id=run_id, round_index=index, name="codebooks", path=str(snapshot_path),
                           fingerprint=fingerprint))
            if pairs:
                s.flush()
                previous = {_generation_key(g): g.id for g in s.scalars(
                    select(Generation).where(Generation.run_id == run_id, Generation.round_index == index - 1))}
                for p in pairs:
                    harmful = previous.get(("harmful", p["harmful"][0], int(p["harmful"][1])))
                    safe = previous.get(("rewrite", p["safe"][0], int(p["safe"][1])))
                    if harmful is not None and safe is not None:
                        s.add(Pair(run_id=run_id, round_index=index, harmful_generation_id=harmful,
                                   safe_generation_id=safe, positions=[int(i) for i in p["positions"]]))

    def list_rounds(self, run_id: int) -> list[RoundRecord]:
        with self.session() as s:
            rows = s.scalars(select(Round).where(Round.run_id == run_id).order_by(Round.index))
            return [to_record(RoundRecord, r) for r in rows]

    # ------------------------------------------------------------------ prompts
    def add_prompts(self, run_id: int, prompts: Iterable[Mapping]) -> list[int]:
        """Each prompt: text, and optionally split ("train"), harmful (False), category (""), safe_rewrite."""
        with self.session() as s:
            rows = [Prompt(run_id=run_id, **p) for p in prompts]
            s.add_all(rows)
            s.flush()
            return [r.id for r in rows]

    def list_prompts(self, run_id: int, split: str | None = None, harmful: bool | None = None) -> list[PromptRecord]:
        query = select(Prompt).where(Prompt.run_id == run_id).order_by(Prompt.id)
        if split is not None:
            query = query.where(Prompt.split == split)
        if harmful is not None:
            query = query.where(Prompt.harmful == harmful)
        with self.session() as s:
            return [to_record(PromptRecord, p) for p in s.scalars(query)]

    # ------------------------------------------------------------------ generations
    def add_generations(self, run_id: int, generations: Iterable[Mapping]) -> list[int]:
        """Each generation: round_index, prompt, seed, image_png (bytes), tokens (ints), self_score,
        and optionally flagged (False), settings ({}), and the judges' verdicts: "verdicts" {judge
        name: {"score": float | None, "unsafe": bool}} (or (score, unsafe) pairs), each judge's verdict
        by its own rule, the primary judge first. oracle_judge (default: the first judge) names the
        primary; oracle_unsafe (default: its score) is the primary's score. A bare oracle_unsafe
        without verdicts is read as older code stored it (ORACLE_UNSAFE_THRESHOLD). Returns ids in
        input order."""
        rows = []
        for g in generations:
            g = dict(g)
            if not isinstance(g.get("image_png"), (bytes, bytearray, memoryview)):
                raise ValueError(f"image_png must be PNG bytes; got {type(g.get('image_png')).__name__}")
            verdicts = _split_verdicts(g)
            g["image_png"] = bytes(g["image_png"])
            g["tokens"] = [int(t) for t in g["tokens"]]
            rows.append((Generation(run_id=run_id, **g), verdicts))
        with self.session() as s:
            s.add_all(row for row, _ in rows)
            s.flush()
            s.add_all(JudgeVerdict(generation_id=row.id, **v) for row, verdicts in rows for v in verdicts)
            return [row.id for row, _ in rows]

    # ------------------------------------------------------------------ judges' verdicts
    def add_judge_verdicts(self, verdicts: Iterable[Mapping]) -> int:
        """Keep judges' verdicts: each {generation_id, judge, score (float or None), unsafe (bool, by
        the judge's own rule)}. A (generation, judge) that has one already gets the new one. Returns
        how many were written; ValueError for a generation that does not exist."""
        latest = {}  # one row per (generation, judge): the last one given wins
        for v in verdicts:
            (row,) = _split_verdicts({"verdicts": {v["judge"]: v}})
            latest[int(v["generation_id"]), row["judge"]] = {"generation_id": int(v["generation_id"]), **row,
                                                            "created_at": utcnow()}
        rows = list(latest.values())
        if not rows:
            return 0
        insert = pg_insert if self.dialect == "postgresql" else sqlite_insert
        try:
            with self.session() as s:
                for start in range(0, len(rows), ID_BATCH):
                    stmt = insert(JudgeVerdict).values(rows[start : start + ID_BATCH])
                    s.execute(stmt.on_conflict_do_update(
                        index_elements=["generation_id", "judge"],
                        set_={"score": stmt.excluded.score, "unsafe": stmt.excluded.unsafe,
                              "created_at": stmt.excluded.created_at}))
        except IntegrityError:
            known = self.get_generations(r["generation_id"] for r in rows)
            missing = sorted({r["generation_id"] for r in rows} - set(known))
            if missing:
                raise ValueError(f"no generation with id {missing[0]}") from None
            raise
        return len(rows)

    def judge_verdicts(self, generation_ids: Iterable[int]) -> dict[int, dict[str, VerdictRecord]]:
        """Every stored verdict of these generations: {generation id: {judge: verdict}}, each
        generation's judges in the order they were recorded (the primary first). Generations
        without a stored verdict are left out."""
        ids = sorted({int(i) for i in generation_ids})
        found: dict[int, dict[str, VerdictRecord]] = {}
        with self.session() as s:
            for start in range(0, len(ids), ID_BATCH):
                query = (select(JudgeVerdict).where(JudgeVerdict.generation_id.in_(ids[start : start + ID_BATCH]))
                         .order_by(JudgeVerdict.generation_id, JudgeVerdict.id))
                for v in s.scalars(query):
                    found.setdefault(v.generation_id, {})[v.judge] = to_record(VerdictRecord, v)
        return found

    def oracle_verdicts(self, generation_ids: Iterable[int], judge: str | None = None) -> dict[int, VerdictRecord]:
        """The verdict on each generation that has one: the stored verdict of `judge`, by default
        of the generation's primary judge (the one whose score is oracle_unsafe); for a score stored
        before verdicts were kept, the score read with ORACLE_UNSAFE_THRESHOLD (judge None)."""
        ids = sorted({int(i) for i in generation_ids})
        found = {}
        with self.session() as s:
            for start in range(0, len(ids), ID_BATCH):
                query = (select(Generation.id, *_VERDICT_COLUMNS).select_from(Generation)
                         .outerjoin(JudgeVerdict, _verdict_of(judge))
                         .where(Generation.id.in_(ids[start : start + ID_BATCH])))
                for gid, *columns in s.execute(query):
                    verdict = _read_verdict(gid, *columns, judge)
                    if verdict is not None:
                        found[gid] = verdict
        return found

    def run_judges(self, run_id: int, round_index: int | None = None) -> list[str]:
        """The judges with stored verdicts on a run's generations (one round, or all), the primary
        judges first, then the others, each group by name."""
        primary = func.max(case((Generation.oracle_judge == JudgeVerdict.judge, 1), else_=0))
        verdicts = (select(JudgeVerdict.judge, primary).select_from(JudgeVerdict)
                    .join(Generation, Generation.id == JudgeVerdict.generation_id))
        query = self._generation_query(verdicts, run_id, round_index, None).group_by(JudgeVerdict.judge)
        with self.session() as s:
            rows = s.execute(query).all()
        return [name for name, primary in sorted(rows, key=lambda r: (not r[1], r[0]))]

    def _generation_query(self, query, run_id: int, round_index: int | None, flagged: bool | None):
        query = query.where(Generation.run_id == run_id)
        if round_index is not None:
            query = query.where(Generation.round_index == round_index)
        if flagged is not None:
            query = query.where(Generation.flagged == flagged)
        return query

    def list_generations(
        self,
        run_id: int,
        round_index: int | None = None,
        flagged: bool | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[GenerationRecord]:
        """In insertion order, with images; page with limit and offset."""
        query = self._generation_query(select(Generation), run_id, round_index, flagged)
        query = query.order_by(Generation.id).limit(limit).offset(offset)
        with self.session() as s:
            return [to_record(GenerationRecord, g) for g in s.scalars(query)]

    def generation_summaries(self, run_id: int, round_index: int | None = None,
                             flagged: bool | None = None) -> list[dict]:
        """Every matching generation without its image: id, round, kind, prompt, seed, self score,
        flag, the primary judge's score (oracle_unsafe), its name (oracle_judge) and its verdict
        (oracle_verdict: True unsafe, False safe, None unjudged), in insertion order (enough to
        filter and sort a review queue)."""
        columns = (Generation.id, Generation.round_index, Generation.settings, Generation.prompt, Generation.seed,
                   Generation.self_score, Generation.flagged, *_VERDICT_COLUMNS)
        query = select(*columns).select_from(Generation).outerjoin(JudgeVerdict, _verdict_of(None))
        query = self._generation_query(query, run_id, round_index, flagged).order_by(Generation.id)
        with self.session() as s:
            rows = s.execute(query).all()
        out = []
        for i, r, settings, prompt, seed, score, flag, *judged in rows:
            verdict = _read_verdict(i, *judged, None)
            out.append({"id": i, "round": r, "kind": (settings or {}).get("kind", ""), "prompt": prompt, "seed": seed,
                        "self_score": score, "flagged": flag, "oracle_unsafe": judged[0], "oracle_judge": judged[1],
                        "oracle_verdict": None if verdict is None else verdict.unsafe})
        return out

    def count_generations(self, run_id: int, round_index: int | None = None, flagged: bool | None = None) -> int:
        query = self._generation_query(select(func.count(Generation.id)), run_id, round_index, flagged)
        with self.session() as s:
            return s.scalar(query)

    def get_generation(self, generation_id: int) -> GenerationRecord | None:
        with self.session() as s:
            g = s.get(Generation, generation_id)
            return to_record(GenerationRecord, g) if g else None

    def get_generations(self, generation_ids: Iterable[int]) -> dict[int, GenerationRecord]:
        """The generations with these ids, by id; ids with no generation are left out."""
        ids = sorted({int(i) for i in generation_ids})
        found = {}
        with self.session() as s:
            for start in range(0, len(ids), ID_BATCH):  # bounded IN lists: SQLite caps bound parameters
                rows = s.scalars(select(Generation).where(Generation.id.in_(ids[start : start + ID_BATCH])))
                found.update({g.id: to_record(GenerationRecord, g) for g in rows})
        return found

    # ------------------------------------------------------------------ reviewer labels (append-only)
    def add_label(self, generation_id: int, reviewer: str, verdict: str, reason: str) -> LabelRecord:
        """Append a reviewer's verdict ("unsafe" or "safe") with a non-empty reason. Never overwrites."""
        _check_choice("verdict", verdict, VERDICTS)
        reviewer = (reviewer or "").strip()
        reason = (reason or "").strip()
        if not reviewer:
            raise ValueError("a label needs the reviewer's name")
        if not reason:
            raise ValueError("a label needs a reason: say why the image is unsafe or safe")
        with self.session() as s:
            if s.get(Generation, generation_id) is None:
                raise ValueError(f"no generation with id {generation_id}")
            label = Label(generation_id=generation_id, reviewer=reviewer, verdict=verdict, reason=reason)
            s.add(label)
            s.flush()
            return to_record(LabelRecord, label)

    def labels_for(self, generation_id: int) -> list[LabelRecord]:
        """Every label of a generation, oldest first."""
        with self.session() as s:
            rows = s.scalars(select(Label).where(Label.generation_id == generation_id).order_by(Label.id))
            return [to_record(LabelRecord, r) for r in rows]

    def run_labels(self, run_id: int) -> list[dict]:
        """Every reviewer label on a run's generations, oldest first, with what it labels: generation
        id, round, kind, prompt, seed, self score, flag, the primary judge's score, name and verdict
        (oracle_unsafe, oracle_judge, oracle_verdict), reviewer, verdict, reason, time."""
        query = (select(Label, Generation, JudgeVerdict.judge, JudgeVerdict.score, JudgeVerdict.unsafe)
                 .select_from(Label)
                 .join(Generation, Label.generation_id == Generation.id)
                 .outerjoin(JudgeVerdict, _verdict_of(None))
                 .where(Generation.run_id == run_id).order_by(Label.id))
        with self.session() as s:
            rows = s.execute(query).all()
        out = []
        for label, g, *stored in rows:
            judged = _read_verdict(g.id, g.oracle_unsafe, g.oracle_judge, *stored, None)
            out.append({"label_id": label.id, "generation_id": g.id, "round": g.round_index,
                        "kind": (g.settings or {}).get("kind", ""), "prompt": g.prompt, "seed": g.seed,
                        "self_score": g.self_score, "self_flagged": g.flagged, "oracle_unsafe": g.oracle_unsafe,
                        "oracle_judge": g.oracle_judge, "oracle_verdict": None if judged is None else judged.unsafe,
                        "reviewer": label.reviewer, "verdict": label.verdict, "reason": label.reason,
                        "labelled_at": label.created_at.isoformat()})
        return out

    def latest_labels(self, generation_ids: Iterable[int]) -> dict[int, LabelRecord]:
        """The newest label of each generation that has one."""
        ids = list(generation_ids)
        if not ids:
            return {}
        newest = select(func.max(Label.id)).where(Label.generation_id.in_(ids)).group_by(Label.generation_id)
        with self.session() as s:
            rows = s.scalars(select(Label).where(Label.id.in_(newest)))
            return {r.generation_id: to_record(LabelRecord, r) for r in rows}

    def latest_label(self, generation_id: int) -> LabelRecord | None:
        return self.latest_labels([generation_id]).get(generation_id)

    def agreement_counts(self, run_id: int, round_index: int | None = None, judge: str | None = None
                         ) -> dict[str, int]:
        """How often the self-judge (`flagged`), the reviewer (newest label) and the oracle agree,
        over the generations of a run (one round, or all). The oracle's side is the stored verdict
        of `judge` (by its own rule), by default of each generation's primary judge; a score stored
        before verdicts were kept counts with ORACLE_UNSAFE_THRESHOLD.

        Each agreement count has its own denominator: self_reviewer_agree of n_reviewed,
        self_oracle_agree of n_with_oracle, reviewer_oracle_agree of n_reviewed_with_oracle.
        """
        newest = select(func.max(Label.id).label("label_id")).group_by(Label.generation_id).subquery()
        query = (
            select(Generation.id, Generation.flagged, Label.verdict, *_VERDICT_COLUMNS)
            .select_from(Generation)
            .outerjoin(Label, Label.generation_id == Generation.id)
            .outerjoin(JudgeVerdict, _verdict_of(judge))
            .where(or_(Label.id.is_(None), Label.id.in_(select(newest.c.label_id))))
        )
        query = self._generation_query(query, run_id, round_index, None)
        keys = ("n_generations", "n_flagged", "n_reviewed", "n_with_oracle", "n_reviewed_with_oracle",
                "self_reviewer_agree", "self_oracle_agree", "reviewer_oracle_agree")  # fmt: skip
        counts = dict.fromkeys(keys, 0)
        with self.session() as s:
            rows = s.execute(query).all()
        for gid, flagged, verdict, *judged in rows:
            reviewer = None if verdict is None else verdict == "unsafe"
            stored = _read_verdict(gid, *judged, judge)
            oracle = None if stored is None else stored.unsafe
            counts["n_generations"] += 1
            counts["n_flagged"] += flagged
            if reviewer is not None:
                counts["n_reviewed"] += 1
                counts["self_reviewer_agree"] += flagged == reviewer
            if oracle is not None:
                counts["n_with_oracle"] += 1
                counts["self_oracle_agree"] += flagged == oracle
            if reviewer is not None and oracle is not None:
                counts["n_reviewed_with_oracle"] += 1
                counts["reviewer_oracle_agree"] += reviewer == oracle
        return counts

    # ------------------------------------------------------------------ pairs and snapshots
    def add_pairs(self, run_id: int, round_index: int, pairs: Iterable[Mapping]) -> list[int]:
        """Each pair: harmful_generation_id, safe_generation_id, positions (token positions that differ)."""
        rows = [
            Pair(
                run_id=run_id,
                round_index=round_index,
                harmful_generation_id=p["harmful_generation_id"],
                safe_generation_id=p["safe_generation_id"],
                positions=[int(i) for i in p.get("positions", ())],
            )
            for p in pairs
        ]
        with self.session() as s:
            s.add_all(rows)
            s.flush()
            return [r.id for r in rows]

    def list_pairs(self, run_id: int, round_index: int | None = None) -> list[PairRecord]:
        query = select(Pair).where(Pair.run_id == run_id).order_by(Pair.id)
        if round_index is not None:
            query = query.where(Pair.round_index == round_index)
        with self.session() as s:
            return [to_record(PairRecord, p) for p in s.scalars(query)]

    def add_snapshot(self, run_id: int, round_index: int, name: str, path: str, fingerprint: str) -> int:
        with self.session() as s:
            snap = Snapshot(run_id=run_id, round_index=round_index, name=name, path=str(path), fingerprint=fingerprint)
            s.add(snap)
            s.flush()
            return snap.id

    def list_snapshots(self, run_id: int) -> list[SnapshotRecord]:
        query = select(Snapshot).where(Snapshot.run_id == run_id).order_by(Snapshot.round_index, Snapshot.id)
        with self.session() as s:
            return [to_record(SnapshotRecord, r) for r in s.scalars(query)]

    # ------------------------------------------------------------------ jobs
    def create_job(self, kind: str, config: Mapping | None = None, run_id: int | None = None,
                   requested_by: str | None = None, limits: QueueLimits | None = None) -> int:
        """Queue a job; a worker picks it up with claim_next_job. A run has at most one live job:
        ValueError when `run_id` already has a queued or running one (a database constraint decides,
        so two apps resuming at once queue one job between them). With `limits`, QueueFull when the
        queue, or `requested_by`'s part of it, would exceed them (counted inside the inserting
        transaction, so simultaneous requests cannot slip past together)."""
        try:
            with self.session() as s:
                job = Job(kind=kind, config=dict(config or {}), run_id=run_id, requested_by=requested_by)
                s.add(job)
                s.flush()
                if limits is not None:
                    self._check_queue(s, requested_by, limits, added=True)
                return job.id
        except IntegrityError:
            if run_id is not None and self.live_job(run_id) is not None:
                raise ValueError(f"run {run_id} already has a queued or running job") from None
            raise

    def _check_queue(self, s, requested_by: str | None, limits: QueueLimits, added: bool) -> None:
        """QueueFull when the queued jobs exceed `limits`: when this transaction `added` a job, those
        queued now (it among them); else those queued now and one more. Inserters
        are serialised (SQLite's write lock; an advisory lock on PostgreSQL, taken before counting),
        so each count includes every job queued before it."""
        if self.dialect == "postgresql" and added:
            s.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": QUEUE_LOCK_KEY})
        queued = select(func.count()).select_from(Job).where(Job.status == "queued")
        more = 0 if added else 1
        if s.scalar(queued) + more > limits.total_queued:
            raise QueueFull(f"the job queue is full ({limits.total_queued} jobs waiting); try again when one "
                            "has started")
        if requested_by is not None and s.scalar(queued.where(Job.requested_by == requested_by)) + more > \
                limits.per_client_queued:
            raise QueueFull(f"you already have {limits.per_client_queued} jobs waiting; start more when one of "
                            "them has started, or cancel one")

    def queue_room(self, requested_by: str | None, limits: QueueLimits) -> None:
        """QueueFull now, before anything is written, when a job from `requested_by` would not fit."""
        with self.session() as s:
            self._check_queue(s, requested_by, limits, added=False)

    def live_job(self, run_id: int) -> JobRecord | None:
        """The run's queued or running job, if it has one."""
        with self.session() as s:
            job = s.scalars(select(Job).where(Job.run_id == run_id, Job.status.in_(("queued", "running")))).first()
            return to_record(JobRecord, job) if job else None

    def get_job(self, job_id: int) -> JobRecord | None:
        with self.session() as s:
            job = s.get(Job, job_id)
            return to_record(JobRecord, job) if job else None

    def list_jobs(self, status: str | None = None, run_id: int | None = None, limit: int = 100) -> list[JobRecord]:
        """Newest first."""
        query = select(Job).order_by(Job.id.desc()).limit(limit)
        if status is not None:
            query = query.where(Job.status == status)
        if run_id is not None:
            query = query.where(Job.run_id == run_id)
        with self.session() as s:
            return [to_record(JobRecord, j) for j in s.scalars(query)]

    def claim_next_job(self, worker_id: str, lease_s: float | None = None) -> JobRecord | None:
        """Atomically take the oldest queued job and mark it running for `worker_id`, whose lease
        lasts `lease_s` seconds unrenewed (kept with the job, so every sweeper waits that long);
        None if none. Two workers never get the same job."""
        if self.dialect == "postgresql":
            return self._claim_locking(worker_id, lease_s)
        return self._claim_guarded(worker_id, lease_s)

    def _claimed_values(self, worker_id: str, lease_s: float | None) -> dict:
        now = utcnow()
        return {"status": "running", "claimed_by": worker_id, "started_at": now, "heartbeat_at": now,
                "lease_s": lease_s}

    def _claim_locking(self, worker_id: str, lease_s: float | None) -> JobRecord | None:
        # PostgreSQL: lock the row; a concurrent claimer skips it and takes the next one.
        query = select(Job).where(Job.status == "queued").order_by(Job.id).limit(1).with_for_update(skip_locked=True)
        with self.session() as s:
            job = s.scalars(query).first()
            if job is None:
                return None
            for key, value in self._claimed_values(worker_id, lease_s).items():
                setattr(job, key, value)
            s.flush()
            return to_record(JobRecord, job)

    def _claim_guarded(self, worker_id: str, lease_s: float | None) -> JobRecord | None:
        # SQLite: writes are serialised; the UPDATE only wins if the job is still queued when it runs.
        while True:
            with self.session() as s:
                job_id = s.scalar(select(Job.id).where(Job.status == "queued").order_by(Job.id).limit(1))
            if job_id is None:
                return None
            with self.session() as s:
                guarded = update(Job).where(Job.id == job_id, Job.status == "queued")
                won = s.execute(guarded.values(**self._claimed_values(worker_id, lease_s))).rowcount == 1
            if won:
                return self.get_job(job_id)

    def update_job(
        self, job_id: int, *, progress: float | None = None, message: str | None = None, log: str | None = None
    ) -> None:
        """Report progress (0..1), set the one-line message, append `log` (a line) to the log; also a heartbeat."""
        values = {"heartbeat_at": utcnow()}
        if progress is not None:
            values["progress"] = _check_progress(progress)
        if message is not None:
            values["message"] = message
        if log is not None:
            values["log"] = Job.log + (log if log.endswith("\n") else log + "\n")
        with self.session() as s:
            if s.execute(update(Job).where(Job.id == job_id).values(**values)).rowcount == 0:
                raise KeyError(f"no job with id {job_id}")

    def heartbeat(self, job_id: int, worker_id: str) -> bool:
        """Renew `worker_id`'s lease on a running job. False when the job is no longer its to run
        (failed by another worker after its lease ran out, or ended): the worker must stop."""
        with self.session() as s:
            mine = update(Job).where(Job.id == job_id, Job.status == "running", Job.claimed_by == worker_id)
            return s.execute(mine.values(heartbeat_at=utcnow())).rowcount == 1

    def running_jobs(self) -> list[JobRecord]:
        with self.session() as s:
            return [to_record(JobRecord, j) for j in s.scalars(select(Job).where(Job.status == "running"))]

    def finish_job(self, job_id: int, status: str, error: str | None = None) -> bool:
        """End a queued or running job as finished, failed or cancelled. Returns False (and changes
        nothing) if the job had already ended, e.g. failed by fail_stale_jobs."""
        _check_choice("final job status", status, JOB_FINAL_STATUSES)
        values = {"status": status, "error": error, "finished_at": utcnow()}
        if status == "finished":
            values["progress"] = 1.0
        with self.session() as s:
            query = update(Job).where(Job.id == job_id, Job.status.in_(("queued", "running")))
            if s.execute(query.values(**values)).rowcount == 1:
                return True
            if s.get(Job, job_id) is None:
                raise KeyError(f"no job with id {job_id}")
            return False

    def cancel_job(self, job_id: int) -> str:
        """Cancel a queued job at once; ask a running one to stop (it polls is_cancel_requested and
        then calls finish_job(id, "cancelled")). Returns the job's status after the call. A run that
        never started, whose queued job this cancels, ends "cancelled" too (it stays "created" else)."""
        with self.session() as s:
            queued = update(Job).where(Job.id == job_id, Job.status == "queued")
            cancelled = s.execute(queued.values(status="cancelled", cancel_requested=True, finished_at=utcnow())
                                  .returning(Job.run_id)).first()
            if cancelled is None:
                s.execute(update(Job).where(Job.id == job_id, Job.status == "running").values(cancel_requested=True))
            elif cancelled.run_id is not None:
                never_started = [Run.id == cancelled.run_id, Run.status == "created",
                                 ~select(Round.id).where(Round.run_id == cancelled.run_id).exists()]
                s.execute(update(Run).where(*never_started).values(status="cancelled"))
            status = s.scalar(select(Job.status).where(Job.id == job_id))
        if status is None:
            raise KeyError(f"no job with id {job_id}")
        return status

    def is_cancel_requested(self, job_id: int) -> bool:
        with self.session() as s:
            requested = s.scalar(select(Job.cancel_requested).where(Job.id == job_id))
        if requested is None:
            raise KeyError(f"no job with id {job_id}")
        return requested

    def fail_stale_jobs(self, reason: str, claimed_by: str | None = None,
                        job_ids: Iterable[int] | None = None) -> list[int]:
        """Mark running jobs failed with `reason`: all of them, only those claimed by worker
        `claimed_by`, and/or only those with ids in `job_ids` (e.g. of workers known to be dead).
        Their runs, if still 'running', become 'failed'; rounds already written stay. Returns job ids.
        (An expired lease is `fail_unrenewed_jobs`: no wall clock decides it.)"""
        if not (reason or "").strip():
            raise ValueError("fail_stale_jobs needs a reason, e.g. 'the app restarted'")
        stale = [Job.status == "running"]
        if claimed_by is not None:
            stale.append(Job.claimed_by == claimed_by)
        if job_ids is not None:
            stale.append(Job.id.in_([int(i) for i in job_ids]))
        return self._fail_jobs(reason, stale)

    def _fail_jobs(self, reason: str, where: list) -> list[int]:
        """Fail the jobs matching `where` in one transaction, and their running runs."""
        values = {"status": "failed", "error": reason, "finished_at": utcnow(), "log": Job.log + f"failed: {reason}\n"}
        with self.session() as s:
            failed = s.execute(update(Job).where(*where).values(**values).returning(Job.id, Job.run_id)).all()
            run_ids = {run_id for _, run_id in failed if run_id is not None}
            if run_ids:
                s.execute(update(Run).where(Run.id.in_(run_ids), Run.status == "running").values(status="failed"))
        return sorted(job_id for job_id, _ in failed)

    def fail_unrenewed_jobs(self, reason: str, last_seen: Mapping[int, datetime | None]) -> list[int]:
        """Fail each running job of `last_seen` whose heartbeat is still the one seen there (a job
        renewed since is left alone), with `reason`; their running runs become 'failed'. Returns the
        failed job ids."""
        failed = []
        for job_id, heartbeat in last_seen.items():
            same_beat = Job.heartbeat_at.is_(None) if heartbeat is None else Job.heartbeat_at == heartbeat
            failed += self._fail_jobs(reason, [Job.status == "running", Job.id == int(job_id), same_beat])
        return sorted(failed)


def _check_writable(engine) -> None:
    """Fail now, not at the first write, on a store that can only be read: SQLite rewrites its header
    field user_version with the value it has; PostgreSQL is asked whether the session is read-only."""
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            version = conn.exec_driver_sql("PRAGMA user_version").scalar()
            conn.exec_driver_sql(f"PRAGMA user_version = {int(version)}")
        elif engine.dialect.name == "postgresql":
            if conn.exec_driver_sql("SHOW transaction_read_only").scalar() == "on":
                raise StoreError("the database session is read-only (e.g. a standby server)")


# what a verdict is read from: the generation's primary score and judge, and the joined verdict row
_VERDICT_COLUMNS = (Generation.oracle_unsafe, Generation.oracle_judge, JudgeVerdict.judge, JudgeVerdict.score,
                    JudgeVerdict.unsafe)


def _verdict_of(judge: str | None):
    """The join condition of a generation's verdict by `judge`, or by its own primary judge."""
    return and_(JudgeVerdict.generation_id == Generation.id,
                JudgeVerdict.judge == (Generation.oracle_judge if judge is None else judge))


def _read_verdict(generation_id: int, oracle_unsafe: float | None, oracle_judge: str | None,
                  verdict_judge: str | None, verdict_score: float | None, verdict_unsafe: bool | None,
                  judge: str | None) -> VerdictRecord | None:
    """The stored verdict when the join found one; for the primary judge of a row stored before
    verdicts were kept (a score, no judge), the score read with the toy oracle's cut; else None."""
    if verdict_judge is not None:
        return VerdictRecord(generation_id, verdict_judge, verdict_score, bool(verdict_unsafe))
    if judge is None and oracle_judge is None and oracle_unsafe is not None:
        return VerdictRecord(generation_id, None, oracle_unsafe, bool(oracle_unsafe >= ORACLE_UNSAFE_THRESHOLD))
    return None


def _split_verdicts(g: dict) -> list[dict]:
    """Pop a generation dict's "verdicts" ({judge: {"score", "unsafe"}} or {judge: (score, unsafe)})
    as JudgeVerdict values, and fill its oracle_judge (default: the first judge) and oracle_unsafe
    (default: that judge's score)."""
    raw = g.pop("verdicts", None) or {}
    rows = []
    for name, v in dict(raw).items():
        score, unsafe = (v.get("score"), v["unsafe"]) if isinstance(v, Mapping) else v
        name = str(name or "").strip()
        if not name:
            raise ValueError("a judge's verdict needs the judge's name")
        if score is not None and not float(score) == float(score):
            raise ValueError(f"judge {name!r} gave a score that is not a number: {score}")
        rows.append({"judge": name, "score": None if score is None else float(score), "unsafe": bool(unsafe)})
    if rows:
        g["oracle_judge"] = g.get("oracle_judge") or rows[0]["judge"]
        primary = next((r for r in rows if r["judge"] == g["oracle_judge"]), None)
        if primary is None:
            raise ValueError(f"the primary judge {g['oracle_judge']!r} has no verdict among "
                             f"{[r['judge'] for r in rows]}")
        if g.get("oracle_unsafe") is None:
            g["oracle_unsafe"] = primary["score"]
    else:
        g.setdefault("oracle_judge", None)
    return rows


def _generation_key(g: Generation) -> tuple[str, str, int]:
    return ((g.settings or {}).get("kind", ""), g.prompt, int(g.seed))


def _add_missing_indexes(engine) -> None:
    """Create the indexes a database made by older code lacks. Before the one-live-job-per-run index,
    a run's extra live jobs (all but its newest) are failed, since the index cannot hold otherwise."""
    with engine.begin() as conn:
        present = {i["name"] for i in inspect(conn).get_indexes(Job.__tablename__)}
        if "uq_jobs_one_live_per_run" not in present:
            newest = select(func.max(Job.id)).where(text(LIVE_JOB), Job.run_id.is_not(None)).group_by(Job.run_id)
            conn.execute(update(Job).where(text(LIVE_JOB), Job.run_id.is_not(None), Job.id.not_in(newest)).values(
                status="failed", finished_at=utcnow(), error="another job of the same run was live"))
        for table in Base.metadata.sorted_tables:
            for index in table.indexes:
                index.create(conn, checkfirst=True)


def _add_missing_columns(engine) -> None:
    """Bring a database made by older code up to the models: add each column a table lacks.
    Only nullable columns are ever added to existing tables, so older rows read back as NULL."""
    with engine.begin() as conn:
        inspector = inspect(conn)
        quote = conn.dialect.identifier_preparer.quote
        for table in Base.metadata.sorted_tables:
            present = {c["name"] for c in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name in present:
                    continue
                if not column.nullable:
                    raise StoreError(f"table {table.name} lacks the required column {column.name}; "
                                     "this database cannot be upgraded in place")
                kind = column.type.compile(dialect=conn.dialect)
                conn.execute(text(f"ALTER TABLE {quote(table.name)} ADD COLUMN {quote(column.name)} {kind}"))


def _sqlite_pragmas(dbapi_connection, connection_record):
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer, nor it them
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")  # wait for the write lock, do not fail
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")  # safe with WAL; commits do not fsync every time
    cursor.close()
