"""Metrics: a run's figures per round as curves with 95% bootstrap intervals, a table with every
figure's n and interval, and a short plain-language reading of what the rounds did, beside the
worst cases of the round it reads (the harmful-prompt images each judge scores highest), so the
figures are never read without the pictures.

`load_metrics(services, run)` is the whole handler; it never raises (bad input or a missing run
comes back as a "⚠ ..." status, and a gr.Warning toast in the browser).
"""

from __future__ import annotations

import logging

import gradio as gr

from safecb.viz import format_figure, metrics_figure, metrics_table, round_figure

from .common import InputError, parse_run_id, run_choices
from .report_pictures import residual_picture
from .round_images import round_images
from .run_picker import refresh_runs
from .services import Services

log = logging.getLogger(__name__)


def _overlap(a: dict | None, b: dict | None) -> bool:
    if not a or not b or not a.get("ci") or not b.get("ci"):
        return False
    return a["ci"][0] <= b["ci"][1] and b["ci"][0] <= a["ci"][1]


def _change(what: str, before: dict, after: dict) -> str:
    x, y = float(before["value"]), float(after["value"])
    if y == x:
        return f"left the {what} unchanged at {format_figure(after)}"
    return f"{'cut' if y < x else 'raised'} the {what} from {format_figure(before)} to {format_figure(after)}"


def best_round(rounds: list[dict], chosen: int | None = None) -> int:
    """The run's best round as its stopping rule chose it (`chosen`, the store's record of how the run
    ended), else the accepted round with the lowest self-judged unsafe rate."""
    indices = [int(m.get("round", i)) for i, m in enumerate(rounds)]
    if chosen is not None and chosen in indices:
        return chosen
    accepted = [(m.get("self_unsafe", 1.0), int(m.get("round", i))) for i, m in enumerate(rounds)
                if m.get("accepted", True)]
    return min(accepted)[1] if accepted else indices[0]


def reading(rounds: list[dict], best: int | None = None) -> str:
    """A few sentences on what the rounds did, honest about sample size: round 0 against the best round."""
    if not rounds:
        return "No finished round yet."
    by_index = {int(m.get("round", i)): m for i, m in enumerate(rounds)}
    first = by_index[min(by_index)]
    best = best_round(rounds, best) if best is None or best not in by_index else best
    sentences = []
    has_oracle = any(m.get("annotations") for m in rounds)
    if len(by_index) == 1 or best == min(by_index):
        self0 = round_figure(first, "self_unsafe")
        text = f"Only the unedited model (round 0) counts so far: self-judged unsafe {format_figure(self0)}"
        oracle0 = round_figure(first, "oracle_unsafe_train")
        if oracle0:
            text += f", oracle unsafe {format_figure(oracle0)}"
        sentences.append(text + ".")
        if len(by_index) > 1:
            sentences.append(f"None of rounds {', '.join(str(i) for i in sorted(by_index)[1:])} beat it; "
                             "the run keeps the unedited codebooks.")
    else:
        m = by_index[best]
        key = "oracle_unsafe_train" if has_oracle else "self_unsafe"
        what = "oracle unsafe rate on harmful prompts" if has_oracle else "self-judged unsafe rate"
        before, after = round_figure(first, key), round_figure(m, key)
        sentences.append(f"Round {best} (the best round) {_change(what, before, after)}.")
        if _overlap(before, after):
            sentences.append(f"The two intervals overlap: with n = {after.get('n', '?')} images this change is not "
                             "conclusive; run more seeds for a firmer answer.")
        drawn = round_figure(m, "oracle_unsafe_train_model")
        if drawn:
            sentences.append(f"That is what this pipeline serves; what the model itself draws (its tokens through the "
                             f"original, public decoder) is {format_figure(drawn)} unsafe by the oracle "
                             f"(round 0: {format_figure(before)}).")
        if has_oracle:
            s0, s1 = round_figure(first, "self_unsafe"), round_figure(m, "self_unsafe")
            sentences.append(f"By its own judgment the model went from {format_figure(s0)} to {format_figure(s1)}.")
        fid0, fid1 = round_figure(first, "benign_fidelity"), round_figure(m, "benign_fidelity")
        if fid1:
            sentences.append(f"Benign fidelity {format_figure(fid1)} (round 0: {format_figure(fid0)}).")
        ad0, ad1 = round_figure(first, "adherence"), round_figure(m, "adherence")
        if ad1:
            sentences.append(f"Own adherence on benign prompts {format_figure(ad1)} (round 0: {format_figure(ad0)}).")
        agree = round_figure(m, "judge_agreement")
        if agree:
            sentences.append(f"The self-judge agreed with the oracle on {100 * float(agree['value']):.0f}% of the "
                             f"harmful images of round {best}.")
    for index in sorted(by_index):
        m = by_index[index]
        if not m.get("accepted", True):
            reason = m.get("guard") or "quality guard"
            sentences.append(f"Round {index} was rejected by the quality guard ({reason}) and rolled back.")
    if not has_oracle:
        sentences.append("This run has no oracle figures (it ran without the oracle): every number is the "
                         "model's own judgment.")
    return " ".join(sentences)


def worst_cases(services: Services, run_id: int, round_index: int):
    """-> (picture or None, its caption): the round's harmful images each judge scores highest, so the
    figures are read beside the pictures they summarise."""
    images = round_images(services, run_id, round_index, with_before_after=False)
    if not images.residual:
        return None, f"Round {round_index} has no stored harmful-prompt images to show."
    counts = "; ".join(f"{judge} calls {unsafe} of {n} unsafe" for judge, (unsafe, n) in images.unsafe_counts.items())
    served = " (served | model-level: its tokens through the public decoder)" if images.edits_decoder else ""
    return residual_picture(images), (f"Worst cases at round {round_index}: the harmful-prompt images each judge "
                                      f"scores highest{served}. {counts}.")


def load_metrics(services: Services, run_value):
    """-> (figure or None, table DataFrame or None, reading markdown, status, worst-case picture or
    None, its caption)."""
    try:
        run_id = parse_run_id(run_value)
        run = services.store.get_run(run_id)
        if run is None:
            raise InputError(f"There is no run #{run_id} (refresh the run list).")
        rounds = [dict(r.metrics, round=r.index) for r in services.store.list_rounds(run_id)]
        if not rounds:  # no toast
            return None, None, "", f"Run #{run_id} has no finished round yet: wait for round 0, then refresh.", None, ""
        fig, table = metrics_figure(rounds), metrics_table(rounds)
        text = reading(rounds, run.best_round)
        shown = run.best_round if run.best_round is not None else rounds[-1]["round"]
        picture, caption = worst_cases(services, run_id, shown)
    except InputError as exc:
        return None, None, "", f"⚠ {exc}", None, ""
    except Exception as exc:
        log.exception("metrics failed")
        return (None, None, "", f"⚠ Could not load the metrics ({type(exc).__name__}: {exc}). See the server log.",
                None, "")
    stopped = f" Stopped: {run.stopped}." if run.stopped else ""
    return (fig, table, text, f"Run #{run_id} · {run.name} · {run.status} · {len(rounds)} round(s).{stopped}",
            picture, caption)


def build_metrics_tab(services: Services) -> None:
    """Lay out the tab inside the current Blocks context and wire its handlers."""
    try:
        initial = run_choices(services.store)
    except Exception:
        log.exception("could not list runs")
        initial = []
    with gr.Row():
        run = gr.Dropdown(initial, value=initial[0][1] if initial else None, label="Run", scale=4)
        refresh = gr.Button("↻ Refresh", scale=1, min_width=120)
    status = gr.Textbox(label="Status", interactive=False)
    with gr.Row():  # the reading beside the pictures it summarises; stacked below ~900 px
        summary = gr.Markdown()
        with gr.Column(min_width=360):
            worst = gr.Image(label="Worst cases", type="numpy", format="png", interactive=False, visible=False,
                             elem_classes=["safecb-pixels"], elem_id="metrics-worst")
            worst_caption = gr.Markdown(elem_id="metrics-worst-caption")
    plot = gr.Plot(label="Per-round figures")
    table = gr.Dataframe(label="Per-round figures: value [95% bootstrap interval] n", interactive=False, wrap=True)

    def show(run_value):
        fig, frame, text, message, picture, caption = load_metrics(services, run_value)
        if message.startswith("⚠") and run_value not in (None, ""):  # no run picked yet: say so, no toast
            gr.Warning(message.removeprefix("⚠ "))
        return (fig if fig is not None else gr.update(), frame if frame is not None else gr.update(),
                text, message, gr.update(value=picture, visible=picture is not None), caption)

    def on_refresh(current):
        update, message = refresh_runs(services, current)
        value = update.get("value", current) if isinstance(update, dict) else current
        if message.startswith("⚠"):
            gr.Warning(message.removeprefix("⚠ "))
            return update, gr.update(), gr.update(), gr.update(), message, gr.update(), gr.update()
        return (update, *show(value))

    def on_load():
        return on_refresh(None)

    outputs = [plot, table, summary, status, worst, worst_caption]
    gr.on(None, on_load, None, [run, *outputs], api_name=False)  # on page load
    refresh.click(on_refresh, [run], [run, *outputs], api_name=False)
    run.change(show, [run], outputs, api_name=False)
