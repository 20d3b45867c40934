"""The Flagged tab's review queue against a real store, without the model: a verdict carries the
generation the page showed and is refused when the queue has moved on (a fast key), batches label
only revealed images after a confirmation; the queue is the tab's only labelling form, its gallery
opens a generation in the queue and is refreshed after each label; and the Run tab picks its job
when a page loads."""

import io

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from db import Store
from ui import Services
from ui.common import InputError
from ui.flagged_tab import REVIEWER_STORAGE, build_flagged_tab, detail, gallery_page
from ui.review import (
    QueueFilter,
    batch_candidates,
    build_queue,
    label_and_advance,
    label_batch,
    open_in_queue,
    queue_view,
)
from ui.run_tab import build_run_tab, preselected_job

N_FLAGGED = 6


def png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture
def services(tmp_path):
    """A store with one run of N_FLAGGED flagged generations and one that is not flagged."""
    store = Store.open(f"sqlite:///{tmp_path / 'safecb.db'}")
    run_id = store.create_run("review", "toy", status="finished")
    store.add_generations(run_id, [
        {"round_index": 0, "prompt": f"prompt {i}", "seed": i, "image_png": png(i), "tokens": [0] * 4,
         "self_score": 0.99 - 0.01 * i, "oracle_unsafe": 0.9, "flagged": i < N_FLAGGED,
         "settings": {"kind": "harmful"}}
        for i in range(N_FLAGGED + 1)])
    yield Services(backend=None, store=store, runs_root=tmp_path / "runs", reference={"decoder": None})
    store.close()


def run_id_of(services) -> int:
    return services.store.list_runs()[0].id


def labels(services) -> list[tuple[int, str]]:
    return [(r["generation_id"], r["verdict"]) for r in services.store.run_labels(run_id_of(services))]


def build(services, builder) -> gr.Blocks:
    with gr.Blocks() as demo:
        builder(services)
    return demo


def on_event(demo: gr.Blocks, elem_id: str, event: str):
    """The event function of `event` on the component with `elem_id`."""
    [block_id] = [i for i, b in demo.blocks.items() if getattr(b, "elem_id", None) == elem_id]
    [fn] = [f for f in demo.fns.values() if f.fn is not None and (block_id, event) in f.targets]
    return fn


def on_click(demo: gr.Blocks, elem_id: str):
    """The handler of a click on the button with `elem_id`."""
    return on_event(demo, elem_id, "click").fn


def after(demo: gr.Blocks, elem_id: str):
    """The handlers (not the page's own JavaScript) that run after a click on `elem_id`."""
    first = on_event(demo, elem_id, "click")
    return [f.fn for f in demo.fns.values() if f.trigger_after == first._id and f.fn is not None]


# ---------------------------------------------------------------- the shown id
def test_a_verdict_for_an_image_no_longer_shown_is_refused_and_stores_nothing(services):
    queue = build_queue(services, run_id_of(services), QueueFilter())
    assert len(queue) == N_FLAGGED
    for stale in (queue[1], str(queue[1]), None, "", "abc", f"{queue[0]}.5", "nan"):
        with pytest.raises(InputError, match="Nothing saved"):
            label_and_advance(services, queue, 0, stale, "ana", "unsafe", "")
    assert labels(services) == []
    position, message = label_and_advance(services, queue, 0, str(queue[0]), "ana", "unsafe", "")
    assert position == 1 and f"Saved #{queue[0]} as unsafe" in message
    assert labels(services) == [(queue[0], "unsafe")]


def test_a_second_key_before_the_page_caught_up_labels_nothing(services):
    """U then S 50 ms later: both requests carry the image shown at the time, the first image."""
    queue = build_queue(services, run_id_of(services), QueueFilter())
    demo = build(services, build_flagged_tab)
    unsafe, safe = on_click(demo, "q-unsafe"), on_click(demo, "q-safe")
    at, seen, *_ = unsafe(queue, 0, [], str(queue[0]), "ana", "", "")
    assert at == 1
    at, seen, _, caption, shown, status, *_ = safe(queue, at, seen, str(queue[0]), "ana", "", "ana")
    assert status.startswith("⚠ Nothing saved") and f"queue is at #{queue[1]}" in status
    assert at == 1 and shown == str(queue[1]) and f"generation #{queue[1]}" in caption  # shown the current one
    assert labels(services) == [(queue[0], "unsafe")]
    at, *_ = safe(queue, at, seen, shown, "ana", "", "ana")  # pressed again, now on the image shown
    assert at == 2 and labels(services) == [(queue[0], "unsafe"), (queue[1], "safe")]


def test_the_queue_events_run_one_at_a_time_and_free_the_keys(services):
    fns = build(services, build_flagged_tab).fns.values()
    queue_events = [f for f in fns if f.concurrency_id == "review-queue"]
    assert {"review_queue", "review_unsafe", "review_safe", "review_batch"} <= {f.api_name for f in queue_events}
    assert {f.concurrency_limit for f in queue_events} == {1}
    ready = [f for f in fns if f.fn is None and "safecbReviewKeys" in (f.js or "")]
    assert len(ready) == 5  # after each event a key triggers, review_keys.js hears that the page has the answer


# ---------------------------------------------------------------- batches
def test_a_batch_labels_only_revealed_images_and_asks_first(services):
    queue = build_queue(services, run_id_of(services), QueueFilter())
    demo = build(services, build_flagged_tab)
    reveal, ask, yes = on_click(demo, "q-reveal"), on_click(demo, "q-batch-safe"), on_click(demo, "q-batch-yes")
    seen, *_ = reveal(queue, 0, [])
    seen, *_ = reveal(queue, 2, seen)
    assert seen == [queue[0], queue[2]] and batch_candidates(queue, seen) == [queue[0], queue[2]]
    asked, row, question, _ = ask(queue, seen)
    assert asked["ids"] == [queue[0], queue[2]] and row["visible"] is True
    assert f"#{queue[0]}, #{queue[2]}" in question and labels(services) == []  # nothing saved before the answer
    seen, _, _, _, status, *rest = yes(queue, 0, seen, asked, "bo", "", "")
    assert status.startswith(f"Saved 2 revealed image(s) as {asked['verdict']}")
    assert sorted(g for g, _ in labels(services)) == sorted([queue[0], queue[2]]) and seen == []
    assert rest[-1]["visible"] is False
    none_left = ask(queue, seen)
    assert none_left[0] is None and none_left[3].startswith("⚠ A batch labels only images you revealed")


def test_label_batch_refuses_an_unrevealed_image_and_saves_nothing(services):
    queue = build_queue(services, run_id_of(services), QueueFilter())
    with pytest.raises(InputError, match="not among the images revealed"):
        label_batch(services, queue, [queue[0], queue[1]], [queue[0]], "bo", "safe", "")
    with pytest.raises(InputError, match="reveal some first"):
        label_batch(services, queue, [], [queue[0]], "bo", "safe", "")
    with pytest.raises(InputError, match="name"):
        label_batch(services, queue, [queue[0]], [queue[0]], " ", "safe", "")
    assert labels(services) == []
    assert "Saved 1 revealed image(s) as safe: #" in label_batch(services, queue, [queue[0]], [queue[0]], "bo",
                                                                 "safe", "")
    assert labels(services) == [(queue[0], "safe")]


# ---------------------------------------------------------------- one review UI: the gallery opens the queue
def test_the_queue_is_the_tabs_only_labelling_form(services):
    demo = build(services, build_flagged_tab)
    api_names = {f.api_name for f in demo.fns.values() if f.api_visibility == "public"}
    assert api_names == {"flagged", "review_queue", "review_unsafe", "review_safe", "review_batch"}
    assert not [b for b in demo.blocks.values() if isinstance(b, gr.Radio)]  # no second verdict form
    buttons = {b.value for b in demo.blocks.values() if isinstance(b, gr.Button)}
    assert "Save label" not in buttons and not any("unblur" in str(v) for v in buttons)


def test_open_in_queue_jumps_to_a_queued_generation_and_inserts_another_where_the_queue_is():
    assert open_in_queue([5, 6, 7], 0, 7)[:2] == ([5, 6, 7], 2)
    queue, at, message = open_in_queue([5, 6, 7], 1, 9)
    assert (queue, at) == ([5, 9, 6, 7], 1) and "not in the queue" in message and "2 of 4" in message
    assert open_in_queue([], 0, 9)[:2] == ([9], 0)  # no queue started: a queue of the clicked one
    assert open_in_queue([5, 6], 5, 9)[:2] == ([5, 9, 6], 1)  # a position past the end is the last image


def click_thumbnail(demo: gr.Blocks, queue, at, seen, gallery_ids, index):
    select = on_event(demo, "flagged-gallery", "select").fn
    return select(queue, at, seen, gallery_ids, gr.SelectData(None, {"index": index, "value": None}))


def test_clicking_a_thumbnail_opens_that_generation_blurred_in_the_queue_and_a_verdict_labels_it(services):
    run = run_id_of(services)
    queue = build_queue(services, run, QueueFilter())
    _, gallery_ids, _ = gallery_page(services, run, "all", 0)
    demo = build(services, build_flagged_tab)
    ids, at, image, caption, shown, status, selected, info, history = click_thumbnail(
        demo, queue, 1, [], gallery_ids, 3)
    clicked = gallery_ids[3]
    assert ids == queue and ids[at] == clicked and shown == str(clicked) and selected == clicked
    assert f"generation #{clicked}" in caption and f"Opened #{clicked}" in status
    assert np.array_equal(image, queue_view(services, ids, at, reveal=False)[0])  # blurred until revealed
    assert not np.array_equal(image, queue_view(services, ids, at, reveal=True)[0])
    assert f"Generation #{clicked}" in info and history.empty
    at, _, _, _, shown_next, message, *_ = on_click(demo, "q-unsafe")(ids, at, [], shown, "ana", "", "")
    assert f"Saved #{clicked} as unsafe" in message and labels(services) == [(clicked, "unsafe")]
    assert shown_next == str(ids[at])


def test_a_reviewed_generation_clicked_in_the_gallery_joins_the_queue_and_the_queue_goes_on_after_it(services):
    run = run_id_of(services)
    _, gallery_ids, _ = gallery_page(services, run, "all", 0)
    services.store.add_label(gallery_ids[0], "ana", "unsafe", "a knife")
    queue = build_queue(services, run, QueueFilter())  # only unreviewed: without gallery_ids[0]
    demo = build(services, build_flagged_tab)
    ids, at, _, _, shown, status, *_ = click_thumbnail(demo, queue, 2, [], gallery_ids, 0)
    assert ids[at] == gallery_ids[0] and len(ids) == len(queue) + 1 and "not in the queue" in status
    at, *_ = on_click(demo, "q-safe")(ids, at, [], shown, "bo", "", "")
    assert ids[at] == queue[2]  # back where the reviewer was
    assert [v for g, v in labels(services) if g == gallery_ids[0]] == ["unsafe", "safe"]  # append-only


def test_a_thumbnail_no_longer_in_the_gallery_changes_nothing(services):
    demo = build(services, build_flagged_tab)
    out = click_thumbnail(demo, [], 0, [], [], 0)
    assert out[5].startswith("⚠") and "Show flagged" in out[5]
    assert all(isinstance(v, dict) and "value" not in v for v in out[:5])  # the queue is left as it was


def test_a_label_refreshes_the_gallery_marks_the_agreement_and_the_selected_history(services):
    run = run_id_of(services)
    queue = build_queue(services, run, QueueFilter())
    demo = build(services, build_flagged_tab)
    [refresh] = after(demo, "q-unsafe")
    [refresh_batch] = after(demo, "q-batch-yes")
    label_and_advance(services, queue, 0, str(queue[0]), "ana", "unsafe", "")
    items, gallery_ids, status, agreement, info, history = refresh((run, "all", 0), queue[0])
    [caption] = [c for (_, c), g in zip(items, gallery_ids) if g == queue[0]]
    assert caption.endswith("✔unsafe") and f"{N_FLAGGED} flagged generation(s)" in status
    assert agreement.loc[1, "n"] == 1  # reviewed
    assert f"Generation #{queue[0]}" in info and list(history["reviewer"]) == ["ana"]
    untouched = refresh_batch(None, None)  # no gallery shown, nothing selected
    assert all(isinstance(v, dict) for v in untouched[:4]) and untouched[5].empty


def test_the_reviewer_name_is_put_back_when_a_page_loads_and_survives_a_restart(services):
    demo = build(services, build_flagged_tab)
    [stored] = [b for b in demo.blocks.values() if isinstance(b, gr.BrowserState)]
    assert (stored.storage_key, stored.secret) == (REVIEWER_STORAGE["storage_key"], REVIEWER_STORAGE["secret"])
    again = build(services, build_flagged_tab)  # the app restarted: the stored name still decrypts
    assert [b.secret for b in again.blocks.values() if isinstance(b, gr.BrowserState)] == [stored.secret]
    [restore] = [f for f in demo.fns.values() if any(event == "load" for _, event in f.targets)]
    assert [i._id for i in restore.inputs] == [stored._id]
    assert [o.elem_id for o in restore.outputs] == ["q-reviewer"]
    assert restore.fn("Ada") == "Ada"
    assert restore.fn("") == gr.update()  # nothing stored: the box is left alone
    remember = on_event(demo, "q-reviewer", "blur")
    assert [o._id for o in remember.outputs] == [stored._id] and remember.fn("  Ada ") == "Ada"


def test_a_labelled_set_is_shown_blind_in_the_gallery_and_the_details(services):
    store = services.store
    blind_run = store.create_run("set", "toy", config={"labelset": "results/labelset"}, status="finished")
    store.add_generations(blind_run, [{"round_index": 0, "prompt": "a knife", "seed": 7, "image_png": png(7),
                                       "tokens": [], "self_score": 0.87, "oracle_unsafe": 0.9, "flagged": True,
                                       "settings": {"kind": "harmful"}}])
    items, [generation_id], status = gallery_page(services, blind_run, "all", 0)
    assert items[0][1] == f"#{generation_id}" and "P(unsafe)" not in status
    info, _ = detail(services, generation_id)
    assert "Blind review" in info and "knife" not in info and "0.87" not in info and "0.9" not in info


# ---------------------------------------------------------------- the Run tab's job on load
def test_the_run_tab_picks_its_job_when_a_page_loads_not_when_the_app_started(services):
    store = services.store
    first = store.create_job("run", run_id=None)
    store.finish_job(first, "failed", "its worker died")
    demo = build(services, build_run_tab)  # the app starts while job `first` is the newest
    [picker] = [b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "job-picker"]
    assert picker.value is None  # nothing frozen at start
    [on_load] = [f for f in demo.fns.values() if "load" in [event for _, event in f.targets]]
    assert [o._id for o in on_load.outputs] == [picker._id]
    second = store.create_job("run", run_id=None)
    store.finish_job(second, "finished")
    update = on_load.fn(None)  # a page loads (a reload) after the app started
    assert update["value"] == second and [v for _, v in update["choices"]][:2] == [second, first]
    assert preselected_job(services, first) == second  # this browser's job is over: the newest one
    live = store.create_job("run", run_id=None)
    assert store.claim_next_job("test-worker").id == live
    mine = store.create_job("run", run_id=None)
    assert preselected_job(services, None) == live  # a running job before a queued or finished one
    assert preselected_job(services, mine) == mine and preselected_job(services, str(mine)) == mine
    assert preselected_job(services, "not a job") == live
    empty = Services(backend=None, store=Store.open("sqlite://"), runs_root=services.runs_root,
                     reference={"decoder": None})
    assert preselected_job(empty, None) is None
