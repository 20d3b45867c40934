"""The Flagged tab's review queue against a real store, without the model: a verdict carries the
generation the page showed and is refused when the queue has moved on (a fast key), batches label
only revealed images after a confirmation; and the Run tab picks its job when a page loads."""

import io

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from db import Store
from ui import Services
from ui.common import InputError
from ui.flagged_tab import build_flagged_tab
from ui.review import QueueFilter, batch_candidates, build_queue, label_and_advance, label_batch
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


def on_click(demo: gr.Blocks, elem_id: str):
    """The handler of a click on the button with `elem_id`."""
    [block_id] = [i for i, b in demo.blocks.items() if getattr(b, "elem_id", None) == elem_id]
    [fn] = [f for f in demo.fns.values() if f.fn is not None and (block_id, "click") in f.targets]
    return fn.fn


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
