"""Run: configure Safe-CB rounds, start them as a background job, watch progress and the live log,
cancel or resume, and read the per-round metrics as they land.

Every handler is a module-level function of (services, ...) that never raises: bad input comes
back as a message and changes nothing.
"""

from __future__ import annotations

import html
import logging
import math
from datetime import datetime, timezone

import gradio as gr
import numpy as np
import pandas as pd

from jobs.attack_job import ATTACK_JOB
from jobs.runner import RUN_JOB, is_toy_model, resume_run, submit_run
from safecb.engine.config import TARGETS, SafeCBConfig
from safecb.prompts.i2p import I2P_CATEGORIES, I2PConfig

from .common import InputError, client_of, parse_run_id, whole_number
from .errors import public_message
from .services import Services

log = logging.getLogger(__name__)

MAX_UI_ROUNDS = 8
MAX_UI_SEEDS = 16
MAX_UI_I2P_PROMPTS = 500
TOY_PROMPTS, I2P_PROMPTS = "toy world", "I2P"  # where a run's harmful prompts come from
I2P_SAMPLE_SEED = 0  # an I2P selection is a seeded random sample of the matching prompts
ROUND_COLUMNS = ["round", "self-unsafe", "oracle unsafe (train)", "benign fidelity", "own adherence",
                 "benign change", "pairs", "accepted", "seconds"]


def _number(value, what: str, lo: float, hi: float, whole: bool = False) -> float:
    if isinstance(value, bool):  # float(True) would be 1
        raise InputError(f"{what} must be a number, got {value!r}.")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be a number, got {value!r}.") from None
    if not math.isfinite(number) or not lo <= number <= hi:
        raise InputError(f"{what} must be between {lo:g} and {hi:g}, got {value!r}.")
    if whole and number != int(number):
        raise InputError(f"{what} must be a whole number, got {value!r}.")
    return int(number) if whole else number


def build_config(target, threshold, max_rounds, epsilon, patience, step2, n_seeds, vapi=False) -> SafeCBConfig:
    """A validated SafeCBConfig from the form's values; InputError names the first bad field."""
    if target not in TARGETS:
        raise InputError(f"The edit target must be one of {', '.join(TARGETS)}, got {target!r}.")
    return SafeCBConfig().override({  # the fields are read in this order, so the first bad one is named
        "target": target,
        "mining.threshold": _number(threshold, "The flag threshold τ", 0.01, 0.99),
        "mining.seeds": list(range(_number(n_seeds, "Seeds per harmful prompt", 1, MAX_UI_SEEDS, whole=True))),
        "stop.max_rounds": _number(max_rounds, "Rounds at most", 1, MAX_UI_ROUNDS, whole=True),
        "stop.epsilon": _number(epsilon, "ε (least improvement)", 0.0, 1.0),
        "stop.patience": _number(patience, "Patience", 1, MAX_UI_ROUNDS, whole=True),
        "fine_tune.enabled": _flag(step2, "Step 2 (fine-tune)"),
        "vapi.enabled": _flag(vapi, "Step 3 (VAπ)"),
    })


def _flag(value, what: str) -> bool:
    """A checkbox's value: only a real boolean (bool("no") would be True)."""
    if not isinstance(value, (bool, np.bool_)):
        raise InputError(f"{what} must be true or false, got {value!r}.")
    return bool(value)


def i2p_selection(services: Services, categories, hard_only, n_prompts) -> I2PConfig:
    """The I2P selection of the form; InputError when the app has no I2P file or the count is bad."""
    if services.i2p_path is None:
        raise InputError("This app has no I2P file: start it with --i2p PATH/TO/unsafe-prompts4703.csv.")
    unknown = [c for c in categories or () if c not in I2P_CATEGORIES]
    if unknown:
        raise InputError(f"Unknown I2P categories {unknown}; they are {', '.join(I2P_CATEGORIES)}.")
    limit = _number(n_prompts, "I2P prompts", 1, MAX_UI_I2P_PROMPTS, whole=True)
    return I2PConfig(str(services.i2p_path), tuple(categories or ()), _flag(hard_only, "Hard prompts only"), limit,
                     I2P_SAMPLE_SEED)


def start_run(services: Services, name, target, threshold, max_rounds, epsilon, patience, step2, n_seeds,
              vapi=False, source=TOY_PROMPTS, categories=(), hard_only=False, n_prompts=24,
              requested_by: str | None = None) -> tuple[str, int | None]:
    """-> (status message, job id or None). `requested_by` (user@address) is held to the queue caps."""
    try:
        config = build_config(target, threshold, max_rounds, epsilon, patience, step2, n_seeds, vapi)
        if source not in (TOY_PROMPTS, I2P_PROMPTS):
            raise InputError(f"Prompts come from {TOY_PROMPTS!r} or {I2P_PROMPTS!r}, not {source!r}.")
        i2p = i2p_selection(services, categories, hard_only, n_prompts) if source == I2P_PROMPTS else None
        name = (name or "").strip()[:80] or f"{target} · τ {config.mining.threshold:g} · ≤{config.stop.max_rounds} rounds"
        busy = services.store.list_jobs(status="running") + services.store.list_jobs(status="queued")
        run_id, job_id = submit_run(services.store, services.backend.source, config, name=name,
                                    codebook_size=services.backend.codebook_size, i2p=i2p,
                                    requested_by=requested_by, limits=services.queue_limits)
    except ValueError as exc:
        return f"⚠ {exc}", None
    except Exception as exc:  # e.g. the database went away
        log.exception("could not start a run")
        return f"⚠ Could not start the run. {public_message(exc)}", None
    wait = f" ({len(busy)} job(s) ahead of it)" if busy else ""
    where = "" if services.runner is not None else " A separate worker (python -m jobs worker) will pick it up."
    first = " Its job first builds the I2P prompt set: the model proposes each prompt's safe rewrite." if i2p else ""
    return f"Started run #{run_id} as job {job_id}{wait}.{first}{where}", job_id


def job_choices(services: Services) -> list[tuple[str, int]]:
    return [(f"job {j.id} · {'' if j.kind == RUN_JOB else j.kind + ' on '}run #{j.run_id} · {j.status}", j.id)
            for j in services.store.list_jobs(limit=50)]


def preselected_job(services: Services, my_job) -> int | None:
    """The job a page shows when it loads: this browser's last job while it is queued or running, else
    a live job (running first), else the newest job. Computed at each page load, not at app start, so
    a reload after a restart shows the current jobs."""
    mine = _job_or_none(services, my_job)
    if mine is not None and mine.status in ("queued", "running"):
        return mine.id
    live = services.store.list_jobs(status="running") + services.store.list_jobs(status="queued")
    if live:
        return live[0].id
    newest = services.store.list_jobs(limit=1)
    return newest[0].id if newest else None


def _job_or_none(services: Services, job_id):
    """The job record of `job_id` (None for no id, a bad id or a job that is gone)."""
    try:
        return None if job_id in (None, "") else services.store.get_job(int(job_id))
    except (TypeError, ValueError):
        return None


def progress_html(fraction: float, status: str, message: str) -> str:
    percent = max(0.0, min(1.0, fraction)) * 100
    colour = {"failed": "#c0392b", "cancelled": "#7f8c8d", "finished": "#27ae60"}.get(status, "#2f6fde")
    return (
        f'<div class="safecb-progress" data-status="{html.escape(status)}">'
        f'<div style="background:#e5e7eb;border-radius:6px;height:18px;overflow:hidden">'
        f'<div style="width:{percent:.1f}%;background:{colour};height:18px"></div></div>'
        f"<div><b>{html.escape(status)}</b> · {percent:.0f}% · {html.escape(message)}</div></div>"
    )


def rounds_table(services: Services, run_id: int | None) -> pd.DataFrame:
    rows = []
    for r in services.store.list_rounds(run_id) if run_id is not None else []:
        m, notes = r.metrics, r.metrics.get("annotations", {})

        def figure(key):
            fig = notes.get(key)
            return None if fig is None else round(fig["value"], 3)

        rows.append([r.index, round(m.get("self_unsafe", float("nan")), 3), figure("oracle_unsafe_train"),
                     figure("benign_fidelity"), round(m.get("adherence", float("nan")), 3),
                     round(m.get("benign_change", 0.0), 4), m.get("pairs", 0),
                     "yes" if m.get("accepted", True) else f"no: {m.get('guard', '')}",
                     round(m.get("seconds", 0.0), 1)])
    return pd.DataFrame(rows, columns=ROUND_COLUMNS)


def examples_image(services: Services, run_id: int | None) -> str | None:
    """The latest round's examples.png (harmful before | safe counterpart | same prompt after)."""
    if run_id is None:
        return None
    directory = services.artifacts(run_id)
    for r in reversed(services.store.list_rounds(run_id)):
        path = directory.examples(r.index)
        if path is not None:
            return str(path)
    return None


def timing_note(started_at: datetime, progress: float, now: datetime | None = None) -> str:
    """"2 min 10 s so far, about 1 min 30 s left": the estimate assumes the rest goes at the pace so far."""
    elapsed = max(0.0, ((now or datetime.now(timezone.utc)) - started_at).total_seconds())
    note = f"{_duration(elapsed)} so far"
    if 0.05 <= progress < 1.0:
        note += f", about {_duration(elapsed * (1.0 - progress) / progress)} left"
    return note


def _duration(seconds: float) -> str:
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def status_line(job) -> str:
    """A job's one line: why it ended when it failed or was cancelled, else its message, with the
    time so far and an estimate while it runs."""
    message = job.error if job.status in ("failed", "cancelled") and job.error else job.message
    if job.status == "running" and job.started_at is not None:
        message += f" · {timing_note(job.started_at, job.progress)}"
    return message


def job_view(services: Services, job_id):
    """-> (progress HTML, log text, rounds table, examples image path, run id)."""
    empty = pd.DataFrame(columns=ROUND_COLUMNS)
    if job_id in (None, ""):
        return progress_html(0.0, "no job", "start a run or pick a job"), "", empty, None, None
    try:
        job = services.store.get_job(whole_number(job_id, "job id"))
    except InputError as exc:
        return progress_html(0.0, "no job", str(exc)), "", empty, None, None
    except Exception as exc:  # e.g. the database went away
        return progress_html(0.0, "error", f"could not read the job. {public_message(exc)}"), "", empty, None, None
    if job is None:
        return progress_html(0.0, "no job", f"there is no job {job_id}"), "", empty, None, None
    return (progress_html(job.progress, job.status, status_line(job)), job.log[-20_000:], rounds_table(services, job.run_id),
            examples_image(services, job.run_id), job.run_id)


STOP_NOTES = {  # what a running job keeps when asked to stop, by kind
    RUN_JOB: "it stops at the next stage. Finished rounds are kept.",
    ATTACK_JOB: "it stops at its next model call. An attack keeps nothing until it finishes.",
}


def cancel(services: Services, job_id) -> str:
    """Cancel a queued job, or ask a running one to stop. A fraction of an id is refused, not cut."""
    if job_id in (None, ""):
        return "⚠ Pick a job to cancel."
    try:
        job_id = whole_number(job_id, "job id")
        status = services.store.cancel_job(job_id)
    except InputError as exc:
        return f"⚠ {exc}"
    except KeyError:
        return f"⚠ There is no job {job_id}."
    if status == "running":
        job = services.store.get_job(job_id)
        return f"Asked job {job_id} to stop; {STOP_NOTES.get(job.kind, 'it stops at its next check.')}"
    return f"Job {job_id} is {status}."


def resume(services: Services, run_id, requested_by: str | None = None) -> tuple[str, int | None]:
    try:
        job_id = resume_run(services.store, parse_run_id(run_id), requested_by, services.queue_limits)
    except ValueError as exc:
        return f"⚠ {exc}", None
    return f"Resuming run #{run_id} as job {job_id}: it continues after its last finished round.", job_id


def build_run_tab(services: Services) -> tuple[gr.Button, gr.State]:
    """Lay out the tab and wire its handlers; -> (the "compare this run" button, the shown job's run id),
    which the page wires to the Generate & compare tab."""
    with gr.Row():
        with gr.Column(scale=1, min_width=380):
            gr.Markdown("### Configure\nOnly the model's own judgments drive the rounds; the oracle only scores them.")
            with gr.Row(equal_height=True):  # Start in view at 1280×800: the defaults make a good first run
                name = gr.Textbox(label="Run name (optional)", max_length=80, scale=3)
                start = gr.Button("Start run", variant="primary", elem_id="start-run", scale=1, min_width=110)
            start_status = gr.Markdown(elem_id="start-status")
            target = gr.Radio(list(TARGETS), value=SafeCBConfig().target, label="Edit target",
                              info="generator (default): the generation head, so what the model draws changes; "
                                   "decoder: the VQ codebook only (the public decoder gives every image back); both")
            defaults = SafeCBConfig()
            threshold = gr.Slider(0.05, 0.95, value=defaults.mining.threshold, step=0.05,
                                  label="Flag threshold τ (self-judged P(unsafe))")
            with gr.Row():
                max_rounds = gr.Number(value=defaults.stop.max_rounds, step=1, label="Rounds at most", minimum=1,
                                       maximum=MAX_UI_ROUNDS)
                patience = gr.Number(value=defaults.stop.patience, step=1, label="Patience", minimum=1,
                                     maximum=MAX_UI_ROUNDS)
            with gr.Row():
                epsilon = gr.Number(value=defaults.stop.epsilon, label="ε (least improvement)", minimum=0, maximum=1)
                n_seeds = gr.Number(value=8, step=1, label="Seeds per harmful prompt", minimum=1,
                                    maximum=MAX_UI_SEEDS)
            i2p_ready = services.i2p_path is not None
            i2p_first = i2p_ready and not is_toy_model(services.backend.source)  # a real model: I2P by default
            source = gr.Radio([TOY_PROMPTS, I2P_PROMPTS] if i2p_ready else [TOY_PROMPTS],
                              value=I2P_PROMPTS if i2p_first else TOY_PROMPTS,
                              label="Harmful prompts", elem_id="prompt-source",
                              info=("the toy world's scenes, or I2P prompts with safe rewrites the model proposes"
                                    if i2p_ready else "the toy world's scenes (start the app with --i2p CSV to "
                                    "draw them from I2P)"))
            with gr.Group(visible=i2p_first) as i2p_box:
                categories = gr.CheckboxGroup(list(I2P_CATEGORIES), label="I2P categories (none ticked: all)",
                                              elem_id="i2p-categories")
                with gr.Row():
                    n_prompts = gr.Number(value=24, step=1, minimum=1, maximum=MAX_UI_I2P_PROMPTS,
                                          label="I2P prompts (a seeded random sample)", elem_id="i2p-count")
                    hard_only = gr.Checkbox(value=False, label="hard prompts only", elem_id="i2p-hard")
            source.change(lambda value: gr.update(visible=value == I2P_PROMPTS), [source], [i2p_box], api_name=False)
            step2 = gr.Checkbox(value=True, label="Step 2: fine-tune inside the harmless space",
                                info="after a decoder or last-layer edit; the default whole-head fit has it built in")
            vapi = gr.Checkbox(value=False, label="Step 3: VAπ re-alignment")
            queue_another = gr.Checkbox(value=False, label="Queue another run while mine is queued or running",
                                        elem_id="queue-another")
        with gr.Column(scale=2, min_width=420):
            gr.Markdown("### Progress")
            with gr.Row():
                # No value here: Gradio would preselect the first choice, the newest job when the app
                # started, on every page from then on. The page's load event picks one (preselected_job).
                job = gr.Dropdown(allow_custom_value=True, choices=[], value=None, label="Job", interactive=True,
                                  scale=3, elem_id="job-picker")
                refresh = gr.Button("↻", scale=0, min_width=40)
            bar = gr.HTML(progress_html(0.0, "no job", "start a run or pick a job"), elem_id="job-progress")
            with gr.Row():
                cancel_button = gr.Button("Cancel job", variant="stop", elem_id="cancel-job", interactive=False)
                resume_button = gr.Button("Resume run", elem_id="resume-run", interactive=False)
            action_status = gr.Markdown()
            compare_button = gr.Button("Compare this run's best round with the unedited model →", visible=False,
                                       variant="primary", elem_id="compare-this-run")
            table = gr.Dataframe(headers=ROUND_COLUMNS, label="Per-round metrics", interactive=False,
                                 elem_id="rounds-table")
            examples = gr.Image(label="Latest round: harmful before | safe counterpart | same prompt after",
                                type="filepath", interactive=False, elem_classes=["safecb-pixels"])
            log_box = gr.Textbox(label="Live log", lines=8, max_lines=8, interactive=False, autoscroll=True)
            run_id = gr.State(None)
    timer = gr.Timer(1.0)
    mine = gr.BrowserState(None, storage_key="safecb-my-job")  # the job this browser started last

    def live(job_id) -> bool:
        if job_id in (None, ""):
            return False
        job_record = services.store.get_job(int(job_id))
        return job_record is not None and job_record.status in ("queued", "running")

    def on_start(run_name, run_target, tau, rounds, eps, wait, with_step2, seeds, with_vapi, prompt_source,
                 picked_categories, only_hard, prompt_count, my_job, another, request: gr.Request):
        form = [run_name, run_target, tau, rounds, eps, wait, with_step2, seeds, with_vapi, prompt_source,
                picked_categories, only_hard, prompt_count]
        if live(my_job) and not another:  # e.g. a second click on Start
            message = (f"⚠ Your run (job {my_job}) is still queued or running: watch it here, cancel it, or tick "
                       "“Queue another run” to start one more.")
            gr.Warning(message.removeprefix("⚠ "))
            return message, gr.update(value=int(my_job)), my_job
        message, job_id = start_run(services, *form, requested_by=client_of(request))
        if job_id is None:
            gr.Warning(message.removeprefix("⚠ "))
            return message, gr.update(), my_job
        return message, gr.update(choices=job_choices(services), value=job_id), job_id

    def on_view(job_id):
        return job_view(services, job_id)

    def on_cancel(job_id):
        return cancel(services, job_id)

    def on_resume(current_run, request: gr.Request):
        message, job_id = resume(services, current_run, client_of(request))
        if job_id is None:
            gr.Warning(message.removeprefix("⚠ "))
            return message, gr.update()
        return message, gr.update(choices=job_choices(services), value=job_id)

    view_outputs = [bar, log_box, table, examples, run_id]
    start.click(on_start, [name, target, threshold, max_rounds, epsilon, patience, step2, n_seeds, vapi, source,
                           categories, hard_only, n_prompts, mine, queue_another], [start_status, job, mine],
                api_name="start_run", concurrency_limit=1,
                concurrency_id="start-run")
    job.change(on_view, [job], view_outputs, api_name=False)
    shown_status = gr.State("")

    def on_tick(job_id, shown, my_job, another):
        picked, mine_live = None, live(my_job)  # every second per open page: one query for "my job"
        if job_id in (None, ""):  # a fresh page (or a reload): show this browser's job, else any live one
            if mine_live:
                picked = my_job
            else:
                live_jobs = services.store.list_jobs(status="running") + services.store.list_jobs(status="queued")
                picked = live_jobs[0].id if live_jobs else None
            job_id = picked
        view = job_view(services, job_id)
        try:
            job_record = services.store.get_job(int(job_id)) if job_id not in (None, "") else None
        except (TypeError, ValueError):  # a typed-in job id that is not a number: job_view said so
            job_record = None
        status = job_record.status if job_record is not None else ""
        # Relabel the job picker only when the job's status changed ("queued" → "running" → "finished").
        if picked is not None:
            picker = gr.update(choices=job_choices(services), value=picked)
        else:
            picker = gr.update(choices=job_choices(services)) if status != shown else gr.update()
        can_start = bool(another) or not mine_live
        can_resume = (status in ("failed", "cancelled") and job_record is not None and job_record.kind == RUN_JOB
                      and job_record.run_id is not None
                      and services.store.live_job(job_record.run_id) is None)
        return (*view, picker, status, gr.update(interactive=can_start),
                gr.update(interactive=status in ("queued", "running")), gr.update(interactive=can_resume),
                gr.update(visible=job_record is not None and job_record.kind == RUN_JOB and status == "finished"))

    def on_load(my_job):
        return gr.update(choices=job_choices(services), value=preselected_job(services, my_job))

    gr.on(None, on_load, [mine], [job], api_name=False)  # on page load, and when this browser starts a job
    timer.tick(on_tick, [job, shown_status, mine, queue_another],
               view_outputs + [job, shown_status, start, cancel_button, resume_button, compare_button],
               api_name=False, show_progress="hidden")
    refresh.click(lambda: gr.update(choices=job_choices(services)), None, [job], api_name=False)
    cancel_button.click(on_cancel, [job], [action_status], api_name="cancel_job")
    resume_button.click(on_resume, [run_id], [action_status, job], api_name=False)
    return compare_button, run_id
