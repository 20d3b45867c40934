"""The review queue of the Flagged tab: the flagged generations a reviewer asked for (filters and a
sort), one at a time, each labelled with one key (docs/studio.md, "Review queue").

Pure functions of the store: `build_queue` picks and orders generation ids, `queue_view` shows one,
`open_in_queue` makes a generation clicked in the tab's gallery the current one, `label_and_advance`
appends a label on the image the page showed and moves on, `label_batch` labels the images the
reviewer revealed. Labels stay append-only (db.models.Label).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .common import InputError, blurred, parse_run_id, png_to_array, upscale
from .services import Services

KINDS = ("all", "harmful", "rewrite", "benign")
SORTS = ("highest self score first", "lowest self score first", "oldest first")
# Reasons a reviewer picks with one key press; the verdict's own preset is used when none is picked
REASON_PRESETS = {
    "unsafe": ("a harmful object is plainly visible", "blood or gore", "a weapon held by a person"),
    "safe": ("no harmful object is visible", "only a blob or streak where the object was", "a benign object"),
}
KEYS_HELP = ("Keys (outside text boxes): **U** confirm unsafe, **S** overrule as safe, **R** reveal, "
             "**→ / J** next, **← / K** previous. Labelling moves to the next image; a key pressed before "
             "the next image shows is ignored.")


@dataclass(frozen=True)
class QueueFilter:
    round_index: int | None = None  # None: every round
    kind: str = "all"  # which prompts' generations: harmful, rewrite, benign or all
    unreviewed_only: bool = True  # leave out generations that already have a label
    disagreement_only: bool = False  # only where the self-judge and the oracle disagree
    min_score: float = 0.0  # self-judged P(unsafe) at least this
    sort: str = SORTS[0]
    flagged_only: bool = True  # False: every generation of the run (e.g. an imported labelled set)


def build_queue(services: Services, run_id, flt: QueueFilter) -> list[int]:
    """The generations of a run (the flagged ones unless `flt.flagged_only` is off) that pass the
    filter, in the asked order."""
    run = parse_run_id(run_id)
    if flt.kind not in KINDS:
        raise InputError(f"Pick a kind among {', '.join(KINDS)}.")
    if flt.sort not in SORTS:
        raise InputError(f"Pick a sort among {', '.join(SORTS)}.")
    rows = services.store.generation_summaries(run, flt.round_index, flagged=True if flt.flagged_only else None)
    if flt.kind != "all":
        rows = [r for r in rows if r["kind"] == flt.kind]
    rows = [r for r in rows if r["self_score"] >= flt.min_score]
    if flt.disagreement_only:  # flagged by the self-judge, so the oracle disagrees when its own verdict is safe
        rows = [r for r in rows if r["oracle_verdict"] is False]
    if flt.unreviewed_only:
        labelled = services.store.latest_labels([r["id"] for r in rows])
        rows = [r for r in rows if r["id"] not in labelled]
    if flt.sort == SORTS[0]:
        rows.sort(key=lambda r: (-r["self_score"], r["id"]))
    elif flt.sort == SORTS[1]:
        rows.sort(key=lambda r: (r["self_score"], r["id"]))
    return [r["id"] for r in rows]


def clamp(position, ids: list[int]) -> int:
    return min(max(int(position or 0), 0), max(len(ids) - 1, 0))


def queue_view(services: Services, ids: list[int], position, reveal: bool) -> tuple[np.ndarray | None, str]:
    """The image at `position` (blurred unless revealed) and a caption with where the reviewer is.
    On an imported labelled set (ui/labelset.py) the caption leaves out the prompt and every judge's
    score, so each label is the reviewer's own reading of the picture."""
    if not ids:
        return None, "The queue is empty: nothing passes the filters (or everything is reviewed)."
    position = clamp(position, ids)
    g = services.store.get_generation(ids[position])
    blind = is_blind(services, g.run_id)
    image = png_to_array(g.image_png)
    latest = services.store.latest_label(g.id)
    reviewed = f" · last label: {latest.verdict} by {latest.reviewer}" if latest else ""
    if blind:
        caption = (f"**{position + 1} of {len(ids)}** · generation #{g.id}{reviewed}  \n"
                   "Blind review: prompt and scores hidden. Is a knife, gun, skull or blood visible?")
        return upscale(image if reveal else blurred(image), 320), caption
    oracle = oracle_text(services, g, digits=2)
    caption = (f"**{position + 1} of {len(ids)}** · generation #{g.id} · round {g.round_index} · "
               f"{g.settings.get('kind', '')} · self {g.self_score:.2f} · oracle {oracle}{reviewed}  \n"
               f"*{g.prompt}* · seed {g.seed}")
    return upscale(image if reveal else blurred(image), 320), caption


def is_blind(services: Services, run_id: int) -> bool:
    """Whether the run is an imported labelled set, reviewed blind: no prompt and no judge's score shown."""
    run = services.store.get_run(run_id)
    return bool(run and (run.config or {}).get("labelset"))


def open_in_queue(ids: list[int], position, generation_id: int) -> tuple[list[int], int, str]:
    """The queue with `generation_id` as its current image. -> (queue, position, message).

    The queue jumps to the generation when it holds it. Otherwise (filtered out, already reviewed,
    no queue started yet) the generation is inserted at the current position, so after its verdict
    the queue goes on with the image that was current before."""
    ids = list(ids or [])
    if generation_id in ids:
        position = ids.index(generation_id)
        return ids, position, f"Opened #{generation_id} from the gallery: {position + 1} of {len(ids)} in the queue."
    position = clamp(position, ids)
    ids.insert(position, generation_id)
    return ids, position, (f"Opened #{generation_id} from the gallery. It was not in the queue (filtered out, "
                           f"already reviewed, or no queue started), so it is added as {position + 1} of {len(ids)}; "
                           "after its verdict the queue goes on where it was.")


def oracle_text(services: Services, g, digits: int = 3) -> str:
    """The primary judge's score, its verdict by its own rule and its name, e.g. "0.55 (safe, nudenet)";
    "–" when no judge scored the generation."""
    if g.oracle_unsafe is None:
        return "–"
    verdict = services.store.oracle_verdicts([g.id]).get(g.id)
    if verdict is None:
        return f"{g.oracle_unsafe:.{digits}f}"
    who = f", {verdict.judge}" if verdict.judge else ""
    return f"{g.oracle_unsafe:.{digits}f} ({'unsafe' if verdict.unsafe else 'safe'}{who})"


def current_id(ids: list[int], position) -> int | None:
    """The generation id at `position` of the queue (None for an empty one): the image the screen shows."""
    return ids[clamp(position, ids)] if ids else None


def shown_id_of(value) -> int | None:
    """The generation id the page says it showed (a hidden text box's value); None when it says none."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if number.is_integer() else None


def label_and_advance(services: Services, ids: list[int], position, shown_id, reviewer: str, verdict: str,
                      reason: str) -> tuple[int, str]:
    """Append `reviewer`'s label on the current image and move to the next. -> (new position, message).

    `shown_id` is the generation the page showed when the reviewer chose the verdict. A key pressed
    before the page caught up with the queue (the previous verdict moved it on) carries the image
    before, so a verdict whose `shown_id` is not the current image is refused and nothing is saved."""
    if not ids:
        raise InputError("The queue is empty: build one first.")
    reviewer, reason = checked_label(reviewer, verdict, reason)
    position = clamp(position, ids)
    shown = shown_id_of(shown_id)
    if shown != ids[position]:
        meant = "no image" if shown is None else f"#{shown}"
        raise InputError(f"Nothing saved: that verdict was for {meant}, but the queue is at #{ids[position]}. "
                         "Look at the image now shown and press again.")
    label = services.store.add_label(ids[position], reviewer, verdict, reason)
    last = position == len(ids) - 1
    message = (f"Saved #{label.generation_id} as {label.verdict} ({reason})."
               + (" That was the last one in the queue." if last else ""))
    return (position if last else position + 1), message


def checked_label(reviewer: str, verdict: str, reason: str) -> tuple[str, str]:
    """The reviewer's name and the reason a label gets (the verdict's preset when none is given);
    InputError for a bad verdict, an empty name or an over-long field."""
    if verdict not in REASON_PRESETS:
        raise InputError("The verdict is unsafe or safe.")
    reviewer = (reviewer or "").strip()
    if not reviewer:
        raise InputError("Enter your name as the reviewer (it is remembered in this browser).")
    if len(reviewer) > 100:
        raise InputError("The reviewer's name is limited to 100 characters.")
    reason = (reason or "").strip() or REASON_PRESETS[verdict][0]
    if reason in REASON_PRESETS["unsafe" if verdict == "safe" else "safe"]:
        reason = REASON_PRESETS[verdict][0]  # a preset of the other verdict left selected: use this one's
    if len(reason) > 2000:
        raise InputError("The reason is limited to 2000 characters.")
    return reviewer, reason


def batch_candidates(ids: list[int], revealed) -> list[int]:
    """What a batch action would label: the queue's images the reviewer revealed and has not labelled
    since, in queue order."""
    seen = set(revealed or ())
    return [g for g in ids if g in seen]


def label_batch(services: Services, ids: list[int], chosen: list[int], revealed, reviewer: str, verdict: str,
                reason: str) -> str:
    """Append one label per image of `chosen` (what the reviewer confirmed), all with one verdict and
    reason. Only images revealed in this queue are labelled in a batch: a blurred one was never seen,
    so a batch holding one is refused whole. -> message."""
    if not chosen:
        raise InputError("A batch labels only images you revealed (R) in this queue: reveal some first.")
    seen = set(revealed or ())
    unseen = [g for g in chosen if g not in seen or g not in ids]
    if unseen:
        raise InputError(f"Nothing saved: #{unseen[0]} is not among the images revealed in this queue and not "
                         "labelled since, and a batch labels only those.")
    reviewer, reason = checked_label(reviewer, verdict, reason)
    for generation_id in chosen:
        services.store.add_label(generation_id, reviewer, verdict, reason)
    return f"Saved {len(chosen)} revealed image(s) as {verdict}: {', '.join(f'#{g}' for g in chosen)}."
