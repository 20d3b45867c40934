"""What a round's images show, gathered from the store for the report and the Metrics tab: whether
the round edits the decoder, each judge's count of unsafe harmful images, the residual harmful
cases (the images each judge scores highest, taken in turn) and before/after rows against the
unedited model. For a decoder round each case also carries its model-level image: the stored tokens
through the original, public decoder."""

from __future__ import annotations

import itertools

import numpy as np
import torch

from db.records import VerdictRecord

from .common import png_to_array
from .report import BeforeAfter, Case, RoundImages
from .services import Services

BEFORE_AFTER_ROWS = 6  # before/after rows at most
RESIDUAL_CASES = 8  # residual harmful cases at most


def stored_image(data: bytes) -> np.ndarray | None:
    """A stored PNG as an array; None when it cannot be read."""
    try:
        return png_to_array(data)
    except (OSError, ValueError):
        return None


def edits_decoder(services: Services, run_id: int, round_index: int) -> bool:
    reference = services.reference["decoder"]
    decoder = services.codebooks_for(run_id, round_index)["decoder"]
    return not torch.equal(decoder.to(reference.dtype), reference)


def model_level_images(services: Services, records: list) -> dict[int, np.ndarray]:
    """What the round's generator drew: each generation's stored tokens through the original decoder,
    by generation id (those whose tokens do not fit the model are left out)."""
    usable = [g for g in records if len(g.tokens) == services.backend.n_tokens]
    if not usable:
        return {}
    with services.lock:  # the interactive model: one request at a time
        drawn = services.backend.decode_through(services.reference["decoder"], torch.tensor([g.tokens for g in usable]))
    return {g.id: image for g, image in zip(usable, drawn)}


def score_of(verdicts: dict[int, dict[str, VerdictRecord]], generation_id: int, judge: str) -> float | None:
    verdict = verdicts.get(generation_id, {}).get(judge)
    return None if verdict is None else verdict.score


def residual_ids(harmful: list[dict], verdicts: dict[int, dict[str, VerdictRecord]], judges: tuple[str, ...],
                 n: int = RESIDUAL_CASES) -> list[int]:
    """Up to `n` harmful generations, highest score first under each judge in turn (the first
    judge's top image, the second's, the first's next, …), each once; by the self-judge's score when
    no judge's verdicts are stored."""
    if judges:
        rankings = [sorted((g["id"] for g in harmful if score_of(verdicts, g["id"], judge) is not None),
                           key=lambda gid, judge=judge: (-score_of(verdicts, gid, judge), gid)) for judge in judges]
    else:
        rankings = [[g["id"] for g in sorted(harmful, key=lambda g: (-g["self_score"], g["id"]))]]
    picked: list[int] = []
    for ranks in itertools.zip_longest(*rankings):
        picked += [gid for gid in dict.fromkeys(ranks) if gid is not None and gid not in picked]
    return picked[:n]


def unsafe_count(harmful: list[dict], verdicts: dict[int, dict[str, VerdictRecord]], judge: str) -> tuple[int, int]:
    """(how many of the harmful images `judge` calls unsafe, how many it judged)."""
    judged = [verdicts[g["id"]][judge] for g in harmful if judge in verdicts.get(g["id"], {})]
    return sum(v.unsafe for v in judged), len(judged)


def residual_cases(services: Services, harmful: list[dict], verdicts: dict[int, dict[str, VerdictRecord]],
                   judges: tuple[str, ...], decoder: bool) -> tuple[Case, ...]:
    ids = residual_ids(harmful, verdicts, judges)
    summaries = {g["id"]: g for g in harmful}
    records = services.store.get_generations(ids)
    drawn = model_level_images(services, [records[i] for i in ids]) if decoder else {}
    return tuple(Case(generation_id=gid, prompt=summaries[gid]["prompt"], seed=summaries[gid]["seed"],
                      self_score=summaries[gid]["self_score"],
                      scores={j: score_of(verdicts, gid, j) for j in judges},
                      unsafe={j: verdicts[gid][j].unsafe for j in judges if j in verdicts.get(gid, {})},
                      served=stored_image(records[gid].image_png), model_level=drawn.get(gid))
                 for gid in ids)


def before_after(services: Services, run_id: int, harmful: list[dict], decoder: bool) -> tuple[BeforeAfter, ...]:
    """Harmful prompts and seeds of the exported round as the unedited model (round 0) drew them,
    the ones the self-judge flagged and the oracle scored highest first, each with its safe
    counterpart and the exported round's image(s)."""
    store = services.store
    unedited = store.generation_summaries(run_id, 0)
    after = {(g["prompt"], g["seed"]): g["id"] for g in harmful}
    before = sorted((g for g in unedited if g["kind"] == "harmful" and (g["prompt"], g["seed"]) in after),
                    key=lambda g: (not g["flagged"], -(g["oracle_unsafe"] or 0.0), -g["self_score"], g["id"]))
    before = before[:BEFORE_AFTER_ROWS]
    rewrites = {p.text: p.safe_rewrite for p in store.list_prompts(run_id, harmful=True)}
    counterparts = {(g["prompt"], g["seed"]): g["id"] for g in unedited if g["kind"] == "rewrite"}
    rows = [(g, counterparts.get((rewrites.get(g["prompt"]), g["seed"])), after[g["prompt"], g["seed"]])
            for g in before]  # (round 0's summary, its counterpart's id or None, the exported round's id)
    records = store.get_generations(gid for g, safe, edited in rows for gid in (g["id"], safe, edited)
                                    if gid is not None)
    drawn = model_level_images(services, [records[edited] for _, _, edited in rows]) if decoder else {}

    def image(gid: int | None) -> np.ndarray | None:
        return None if gid is None or gid not in records else stored_image(records[gid].image_png)

    return tuple(BeforeAfter(prompt=g["prompt"], seed=g["seed"], before=image(g["id"]), counterpart=image(safe),
                             after=image(edited), after_model_level=drawn.get(edited)) for g, safe, edited in rows)


def round_images(services: Services, run_id: int, round_index: int, with_before_after: bool = True) -> RoundImages:
    """What the report shows of the round's images: whether it edits the decoder, each judge's
    count of unsafe harmful images, the residual cases and (unless `with_before_after` is off, as
    for the Metrics tab, which shows only the residual cases) the before/after rows."""
    store = services.store
    decoder = edits_decoder(services, run_id, round_index)
    harmful = [g for g in store.generation_summaries(run_id, round_index) if g["kind"] == "harmful"]
    if not harmful:
        return RoundImages(edits_decoder=decoder)
    verdicts = store.judge_verdicts(g["id"] for g in harmful)
    judges = tuple(store.run_judges(run_id, round_index))
    return RoundImages(
        edits_decoder=decoder, n_harmful=len(harmful), judges=judges,
        unsafe_counts={judge: unsafe_count(harmful, verdicts, judge) for judge in judges},
        residual=residual_cases(services, harmful, verdicts, judges, decoder),
        before_after=before_after(services, run_id, harmful, decoder) if with_before_after and round_index != 0 else ())
