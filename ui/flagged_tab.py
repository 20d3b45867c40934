"""Flagged: one review UI for the generations the model judged unsafe.

The review queue (`build_review_queue`, ui/review.py) is the only place a label is given. Filters
and an order pick the generations; they come one at a time, blurred until the reviewer reveals one
(R), and one key appends a label (U confirm unsafe, S overrule as safe) with the reviewer's name and
a reason. Each verdict carries the id of the generation the page showed, and the server refuses one
whose image is no longer the queue's current one. The batch buttons label only the images revealed
in this queue and not labelled since, after a question that names them. The reviewer's name is kept
in the browser's storage when it is typed or used, and put back in the name box when a page loads.

Below the queue, its overview: a page of the run's flagged generations, blurred, captioned with the
generation id, the self-judged P(unsafe) and the latest review (✔ confirmed, ✘ overruled). Clicking
a thumbnail opens that generation in the queue: the queue jumps to it, or, when the queue does not
hold it (filtered out, already reviewed, or no queue started), inserts it at the current position,
so after its verdict the queue goes on with the image that was current (`review.open_in_queue`).
Beside the gallery, the clicked generation's details and its append-only label history, read-only;
under it, the agreement counts of self-judge vs reviewer vs oracle. Every saved label refreshes the
overview. On an imported labelled set (ui/labelset.py) captions and details leave out the prompt and
every score, as the blind queue does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import pandas as pd

from .common import InputError, blurred, parse_run_id, png_to_array, round_choices, run_choices, upscale
from .review import (
    KEYS_HELP,
    KINDS,
    REASON_PRESETS,
    SORTS,
    QueueFilter,
    batch_candidates,
    build_queue,
    clamp,
    current_id,
    is_blind,
    label_and_advance,
    label_batch,
    open_in_queue,
    oracle_text,
    queue_view,
)
from .services import Services

STATIC_DIR = Path(__file__).parent / "static"

log = logging.getLogger(__name__)

PAGE_SIZE = 24
HISTORY_COLUMNS = ["time", "reviewer", "verdict", "reason"]
AGREEMENT_COLUMNS = ["agreement", "agree / n", "count of", "n"]
REVIEW_MARKS = {"unsafe": " ✔unsafe", "safe": " ✘safe"}
NOTHING_SELECTED = "Click a thumbnail: the queue above opens it, and its details and label history show here."


def _round_or_all(round_index) -> int | None:
    if round_index in (None, "", "all"):
        return None
    return int(round_index)


def gallery_page(services: Services, run_id, round_index, page) -> tuple[list, list[int], str]:
    """-> (gallery items [(blurred image, caption)], generation ids in gallery order, status)."""
    run = parse_run_id(run_id)
    round_index = _round_or_all(round_index)
    try:
        number = float(page or 0)
    except (TypeError, ValueError):
        raise InputError(f"The page must be a whole number, got {page!r}.") from None
    if not number.is_integer():
        raise InputError(f"The page must be a whole number, got {page!r}.")
    page = max(0, int(number))
    store = services.store
    total = store.count_generations(run, round_index, flagged=True)
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(page, pages - 1)  # past the end: the last page, not an empty one
    records = store.list_generations(run, round_index, flagged=True, limit=PAGE_SIZE, offset=page * PAGE_SIZE)
    labels = store.latest_labels([g.id for g in records])
    blind = is_blind(services, run)
    items = []
    for g in records:
        label = labels.get(g.id)
        score = "" if blind else f" {g.self_score:.2f}"
        review = REVIEW_MARKS[label.verdict] if label else ""
        items.append((upscale(blurred(png_to_array(g.image_png)), 128), f"#{g.id}{score}{review}"))
    captions = "generation id" if blind else "generation id, self-judged P(unsafe)"
    status = (f"{total} flagged generation(s) in run #{run}" + ("" if round_index is None else f", round {round_index}")
              + f" · page {page + 1} of {pages}. Captions: {captions}, the latest review (✔ confirmed, "
              "✘ overruled). Click an image to review it in the queue above.")
    return items, [g.id for g in records], status


def detail(services: Services, generation_id) -> tuple[str, pd.DataFrame]:
    """-> (details markdown, label history dataframe) of a generation, read-only. An imported
    labelled set's details leave out the prompt and the scores, as its blind queue does."""
    if generation_id is None:
        return NOTHING_SELECTED, pd.DataFrame(columns=HISTORY_COLUMNS)
    g = services.store.get_generation(int(generation_id))
    if g is None:
        raise InputError(f"There is no generation {generation_id}.")
    text = f"**Generation #{g.id}** · run #{g.run_id}, round {g.round_index}"
    if is_blind(services, g.run_id):
        text += "  \nBlind review: prompt and scores hidden."
    else:
        oracle = "not measured" if g.oracle_unsafe is None else oracle_text(services, g)
        text += (f" · {g.settings.get('kind', '')} prompt  \nPrompt: *{g.prompt}* · seed {g.seed}  \n"
                 f"Self-judged P(unsafe): **{g.self_score:.3f}** ({'flagged' if g.flagged else 'not flagged'}) · "
                 f"oracle P(unsafe): **{oracle}**")
    history = pd.DataFrame(
        [[l.created_at.strftime("%Y-%m-%d %H:%M:%S"), l.reviewer, l.verdict, l.reason]
         for l in services.store.labels_for(g.id)],
        columns=HISTORY_COLUMNS,
    )
    return text, history


def agreement_table(services: Services, run_id, round_index) -> pd.DataFrame:
    run = parse_run_id(run_id)
    c = services.store.agreement_counts(run, _round_or_all(round_index))

    def share(agree, n):
        return f"{agree}/{n}" + (f" ({agree / n:.0%})" if n else "")

    return pd.DataFrame([
        ["generations", c["n_generations"], "flagged by the self-judge", c["n_flagged"]],
        ["self-judge vs reviewer", share(c["self_reviewer_agree"], c["n_reviewed"]), "reviewed", c["n_reviewed"]],
        ["self-judge vs oracle", share(c["self_oracle_agree"], c["n_with_oracle"]), "with an oracle score",
         c["n_with_oracle"]],
        ["reviewer vs oracle", share(c["reviewer_oracle_agree"], c["n_reviewed_with_oracle"]),
         "reviewed with an oracle score", c["n_reviewed_with_oracle"]],
    ], columns=AGREEMENT_COLUMNS)


REVIEW_QUEUE = "review-queue"  # the queue's events share one concurrency id: one at a time, in order
KEYS_READY_JS = "() => { window.safecbReviewKeys?.ready?.(); }"  # the page answered: review_keys.js takes keys again
# A thumbnail clicked far down the gallery: bring the queue's image, where it opened, into view.
SHOW_QUEUE_JS = "() => { document.getElementById('q-image')?.scrollIntoView({block: 'nearest'}); }"
# The reviewer's name in the browser's localStorage. BrowserState's default secret is drawn anew at each
# app start, which would lose the name at every restart; the page is sent the secret anyway, so a fixed
# one protects no less.
REVIEWER_STORAGE = {"storage_key": "safecb-reviewer", "secret": "safecb-reviewer"}


def queue_screen(services: Services, queue, at, revealed) -> tuple:
    """(image, caption, shown id) of the queue's image at `at`, unblurred when the reviewer revealed it."""
    generation_id = current_id(queue, at)
    picture, text = queue_view(services, queue, at, generation_id in (revealed or ()))
    return picture, text, "" if generation_id is None else str(generation_id)


@dataclass(frozen=True)
class ReviewQueue:
    """The parts of the review queue the gallery drives: the queue's state, what it shows, and the
    events that save labels (the overview refreshes after each)."""
    ids: gr.State
    position: gr.State
    revealed: gr.State
    screen: list  # image, caption, the hidden id of the generation shown
    status: gr.Markdown
    labelling: list


def build_review_queue(services: Services, run, round_pick) -> ReviewQueue:
    """The keyboard review queue over the run and round picked at the top of the tab."""
    stored_name = gr.BrowserState("", **REVIEWER_STORAGE)
    ids, position = gr.State([]), gr.State(0)
    revealed = gr.State([])  # ids revealed (R) in this queue and not labelled since: what a batch may label
    pending_batch = gr.State(None)  # {"verdict", "ids"} a batch button asked to confirm
    gr.Markdown("### Review queue: every label is given here, one image after another, with the keyboard")
    with gr.Row():
        kind = gr.Dropdown(list(KINDS), value="all", label="Prompt kind", scale=1, elem_id="q-kind")
        min_score = gr.Slider(0.0, 1.0, value=0.0, step=0.05, label="Self score at least", scale=2)
        sort = gr.Dropdown(list(SORTS), value=SORTS[0], label="Order", scale=2, elem_id="q-sort")
        with gr.Column(scale=2, min_width=200):
            unreviewed = gr.Checkbox(value=True, label="Only unreviewed", elem_id="q-unreviewed")
            disagree = gr.Checkbox(value=False, label="Only where the oracle disagrees", elem_id="q-disagree")
            only_flagged = gr.Checkbox(value=True, label="Only flagged (off: every generation, e.g. a labelled set)",
                                       elem_id="q-flagged")
        build = gr.Button("Start queue", variant="primary", scale=1, elem_id="q-build")
    with gr.Row():
        image = gr.Image(label="Current image", type="numpy", format="png", interactive=False, height=340,
                         elem_classes=["safecb-pixels"], elem_id="q-image", scale=2)
        with gr.Column(scale=3):
            caption = gr.Markdown("Pick a run above, then *Start queue*, or click an image in the gallery below.",
                                  elem_id="q-caption")
            # The generation on screen, updated with the image; a verdict sends it, and the server
            # refuses one whose image is no longer the queue's current one.
            shown = gr.Textbox("", visible="hidden", label="Generation shown", elem_id="q-shown")
            reviewer = gr.Textbox(label="Reviewer (remembered in this browser)", max_length=100,
                                  elem_id="q-reviewer")
            reason = gr.Dropdown([p for ps in REASON_PRESETS.values() for p in ps], value=None,
                                 allow_custom_value=True, label="Reason (empty: the verdict's usual reason)",
                                 elem_id="q-reason")
            with gr.Row():
                prev = gr.Button("← Previous (K)", elem_id="q-prev", size="sm")
                reveal = gr.Button("Reveal (R)", elem_id="q-reveal", size="sm")
                nxt = gr.Button("Next → (J)", elem_id="q-next", size="sm")
            with gr.Row():
                unsafe = gr.Button("Confirm unsafe (U)", variant="stop", elem_id="q-unsafe")
                safe = gr.Button("Overrule: safe (S)", variant="secondary", elem_id="q-safe")
            with gr.Row():
                batch_unsafe = gr.Button("Confirm all revealed: unsafe", size="sm", elem_id="q-batch-unsafe")
                batch_safe = gr.Button("Overrule all revealed: safe", size="sm", elem_id="q-batch-safe")
            with gr.Row(visible=False, elem_id="q-batch-confirm") as confirm_row:
                confirm_text = gr.Markdown(elem_id="q-batch-question")
                yes = gr.Button("Yes, save them", variant="primary", size="sm", elem_id="q-batch-yes")
                no = gr.Button("Cancel", size="sm", elem_id="q-batch-no")
            q_status = gr.Markdown(KEYS_HELP, elem_id="q-status")
    gr.HTML("", js_on_load=(STATIC_DIR / "review_keys.js").read_text(), elem_id="q-keys")

    def round_filter(round_index):
        return None if round_index in (None, "", "all") else int(round_index)

    def view(queue, at, seen):
        return queue_screen(services, queue, at, seen)

    def on_build(run_id, round_index, kind_value, low, order, only_new, only_disagree, flagged_only, name, remembered):
        try:
            queue = build_queue(services, run_id, QueueFilter(round_filter(round_index), kind_value, bool(only_new),
                                                              bool(only_disagree), float(low or 0), order,
                                                              bool(flagged_only)))
        except InputError as exc:
            return [], 0, [], None, f"⚠ {exc}", "", gr.update(), KEYS_HELP, None, gr.update(visible=False)
        return (queue, 0, [], *view(queue, 0, []), (name or remembered or ""),
                f"{len(queue)} image(s) queued. " + KEYS_HELP, None, gr.update(visible=False))

    def on_move(queue, at, seen, step):
        at = clamp(int(at or 0) + step, queue)
        return at, *view(queue, at, seen)

    def on_reveal(queue, at, seen):
        generation_id, seen = current_id(queue, at), list(seen or [])
        if generation_id is not None and generation_id not in seen:
            seen.append(generation_id)
        return seen, *view(queue, at, seen)

    def on_label(verdict):
        def handler(queue, at, seen, shown_id, name, why, remembered):
            labelled = current_id(queue, at)
            try:
                at, message = label_and_advance(services, queue, at, shown_id, name, verdict, why)
            except InputError as exc:  # nothing saved; the page is shown the queue's current image again
                return at, seen, *view(queue, at, seen), f"⚠ {exc}", gr.update(), remembered
            seen = [g for g in seen if g != labelled]
            return at, seen, *view(queue, at, seen), message, None, (name or "").strip()
        return handler

    def on_batch(verdict):
        def handler(queue, seen):
            chosen = batch_candidates(queue, seen)
            if not chosen:
                message = ("⚠ A batch labels only images you revealed (R) in this queue and have not labelled "
                           "since: none is waiting.")
                return None, gr.update(visible=False), gr.update(), message
            names = ", ".join(f"#{g}" for g in chosen)
            question = f"Save the {len(chosen)} revealed image(s) {names} as **{verdict}**, with one reason?"
            return {"verdict": verdict, "ids": chosen}, gr.update(visible=True), question, gr.update()
        return handler

    def on_batch_yes(queue, at, seen, asked, name, why, remembered):
        closed = (None, gr.update(visible=False))  # the question goes away, whatever the answer
        try:
            if not asked:
                raise InputError("Nothing to confirm: press a batch button first.")
            message = label_batch(services, queue, asked["ids"], seen, name, asked["verdict"], why)
        except InputError as exc:
            return seen, gr.update(), gr.update(), gr.update(), f"⚠ {exc}", gr.update(), remembered, *closed
        seen = [g for g in seen if g not in asked["ids"]]
        return seen, *view(queue, at, seen), message, None, (name or "").strip(), *closed

    def on_batch_no():
        return None, gr.update(visible=False), "Batch cancelled: nothing was saved."

    def on_remembered(name):
        """A page loaded (or the stored name changed): the name box gets the stored name."""
        return name or gr.update()

    queue_events = {"concurrency_id": REVIEW_QUEUE, "concurrency_limit": 1}
    shown_view = [image, caption, shown]
    build.click(on_build, [run, round_pick, kind, min_score, sort, unreviewed, disagree, only_flagged, reviewer,
                           stored_name],
                [ids, position, revealed, *shown_view, reviewer, q_status, pending_batch, confirm_row],
                api_name="review_queue", **queue_events)
    keyed = [  # the events review_keys.js triggers; each tells it when the page has the answer
        prev.click(lambda q, a, s: on_move(q, a, s, -1), [ids, position, revealed], [position, *shown_view],
                   api_name=False, **queue_events),
        nxt.click(lambda q, a, s: on_move(q, a, s, +1), [ids, position, revealed], [position, *shown_view],
                  api_name=False, **queue_events),
        reveal.click(on_reveal, [ids, position, revealed], [revealed, *shown_view], api_name=False, **queue_events),
    ]
    labelling = []
    for button, verdict in ((unsafe, "unsafe"), (safe, "safe")):
        labelling.append(button.click(
            on_label(verdict), [ids, position, revealed, shown, reviewer, reason, stored_name],
            [position, revealed, *shown_view, q_status, reason, stored_name], api_name=f"review_{verdict}",
            **queue_events))
    for event in keyed + labelling:
        event.then(None, None, None, js=KEYS_READY_JS)
    for button, verdict in ((batch_unsafe, "unsafe"), (batch_safe, "safe")):
        button.click(on_batch(verdict), [ids, revealed], [pending_batch, confirm_row, confirm_text, q_status],
                     api_name=False, **queue_events)
    labelling.append(yes.click(
        on_batch_yes, [ids, position, revealed, pending_batch, reviewer, reason, stored_name],
        [revealed, *shown_view, q_status, reason, stored_name, pending_batch, confirm_row],
        api_name="review_batch", **queue_events))
    no.click(on_batch_no, None, [pending_batch, confirm_row, q_status], api_name=False)
    reviewer.blur(lambda name: (name or "").strip(), [reviewer], [stored_name], api_name=False)
    gr.on(None, on_remembered, [stored_name], [reviewer], api_name=False)  # on page load and when it changes
    return ReviewQueue(ids, position, revealed, shown_view, q_status, labelling)


def _safely(fn, fallback):
    """`fn` with an error shown as a warning toast and `fallback(message)` as the outputs."""
    def handler(*args):
        try:
            return fn(*args)
        except InputError as exc:
            gr.Warning(str(exc))
            return fallback(f"⚠ {exc}")
        except Exception as exc:
            log.exception("flagged tab")
            gr.Warning(f"{type(exc).__name__}: {exc}")
            return fallback(f"⚠ {type(exc).__name__}: {exc}")
    return handler


def build_flagged_tab(services: Services) -> None:
    with gr.Row():
        run = gr.Dropdown(allow_custom_value=True, choices=run_choices(services.store), value=None, label="Run", scale=3, elem_id="flagged-run")
        round_pick = gr.Dropdown(allow_custom_value=True, choices=[("all rounds", "all")], value="all", label="Round", scale=2)
        page = gr.Number(value=0, step=1, label="Gallery page (from 0)", minimum=0, scale=1)
        load = gr.Button("Show flagged", variant="primary", scale=1, elem_id="show-flagged")
    queue = build_review_queue(services, run, round_pick)
    gr.Markdown("### Overview: the flagged generations, blurred. Click one to review it in the queue above")
    status = gr.Markdown(elem_id="flagged-status")
    gallery_ids = gr.State([])
    shown_page = gr.State(None)  # (run, round, page) the gallery shows; None before "Show flagged"
    selected = gr.State(None)  # the generation last clicked in the gallery
    with gr.Row():  # side by side when wide; stacked below ~900 px
        with gr.Column(scale=3, min_width=480):
            gallery = gr.Gallery(label="Flagged generations (blurred)", columns=6, height=420, allow_preview=False,
                                 elem_id="flagged-gallery", elem_classes=["safecb-pixels"])
            agreement = gr.Dataframe(headers=AGREEMENT_COLUMNS, label="Agreement: self-judge vs reviewer vs oracle",
                                     interactive=False, elem_id="agreement-table")
        with gr.Column(scale=2, min_width=320):
            info = gr.Markdown(NOTHING_SELECTED, elem_id="flagged-info")
            history = gr.Dataframe(headers=HISTORY_COLUMNS, label="Label history (append-only, read-only)",
                                   interactive=False, wrap=True, column_widths=["27%", "25%", "16%", "32%"],
                                   elem_id="label-history")

    def on_run(run_id):
        if run_id in (None, ""):
            return gr.update(choices=[("all rounds", "all")], value="all")
        rounds = [(label, str(i)) for label, i in round_choices(services.store, run_id)]
        return gr.update(choices=[("all rounds", "all")] + rounds, value="all")

    def on_load(run_id, round_index, page_number):
        items, gen_ids, text = gallery_page(services, run_id, round_index, page_number)
        return items, gen_ids, text, agreement_table(services, run_id, round_index), (run_id, round_index, page_number)

    def open_clicked(ids, at, seen, gen_ids, index):
        generation_id = gen_ids[index] if index is not None and index < len(gen_ids) else None
        if generation_id is None:
            raise InputError("That image is no longer in the gallery: press Show flagged again.")
        text, table = detail(services, generation_id)  # first: an unknown id changes nothing
        ids, at, message = open_in_queue(ids, at, generation_id)
        return ids, at, *queue_screen(services, ids, at, seen), message, generation_id, text, table

    open_safely = _safely(open_clicked, lambda m: (*[gr.update()] * 5, m, *[gr.update()] * 3))

    def on_gallery_select(ids, at, seen, gen_ids, evt: gr.SelectData):
        # Gradio passes the SelectData only to a parameter annotated with it, so not through _safely's *args.
        return open_safely(ids, at, seen, gen_ids, evt.index)

    def on_labelled(page_shown, generation_id):
        """After a label: the gallery's review marks, the agreement and the selected history, as stored now."""
        overview = (gr.update(),) * 4 if page_shown is None else on_load(*page_shown)[:4]
        return *overview, *detail(services, generation_id)

    run.focus(lambda: gr.update(choices=run_choices(services.store)), None, [run], api_name=False)
    run.change(on_run, [run], [round_pick], api_name=False)
    load.click(_safely(on_load, lambda m: ([], [], m, gr.update(), None)), [run, round_pick, page],
               [gallery, gallery_ids, status, agreement, shown_page], api_name="flagged")
    gallery.select(on_gallery_select, [queue.ids, queue.position, queue.revealed, gallery_ids],
                   [queue.ids, queue.position, *queue.screen, queue.status, selected, info, history],
                   api_name=False, concurrency_id=REVIEW_QUEUE, concurrency_limit=1
                   ).then(None, None, None, js=SHOW_QUEUE_JS)
    for event in queue.labelling:
        event.then(_safely(on_labelled, lambda m: (gr.update(),) * 6), [shown_page, selected],
                   [gallery, gallery_ids, status, agreement, info, history], api_name=False, show_progress="hidden")
