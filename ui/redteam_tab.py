"""Red team: attack any round of a run (or the unedited model) and see the prompts and images that
still get through. The attacks are evaluation only (`safecb.eval.attack`, run by the job runner as
an "attack" job, `jobs.attack_job`): the attacker holds the unedited model, searches with the oracle
as its objective, and is judged at image seeds its search never saw. Nothing here steers Safe-CB.

Every handler is a module-level function of (services, ...) that never raises on bad input: it
comes back as a message and changes nothing.
"""

from __future__ import annotations

import logging

import gradio as gr
import numpy as np
import pandas as pd
from PIL import Image

from jobs.attack_job import (
    ATTACK_JOB,
    ORIGINAL_ROUND,
    AttackRequest,
    attack_directory,
    attack_jobs,
    read_report,
    submit_attack,
    target_name,
)

from safecb.eval.attack import ATTACK_NAMES, AttackConfig, quick_attack_config

from .common import InputError, blurred, client_of, parse_run_id, round_choices, run_choices, upscale, whole_number
from .run_tab import progress_html, status_line
from .services import Services

log = logging.getLogger(__name__)

ATTACK_CHOICES = [("prompt search: words a user could type", "discrete"),
                  ("soft prompt: free input embeddings (an attacker with the weights)", "soft"),
                  ("attribute prompt: the object named in a colour the edit never mined (“a purple gun”)", "attribute"),
                  ("image prefix: the top rows of a harmful image given, the model continues", "prefix"),
                  ("swap-back: the edited generator's tokens through the public, unedited decoder (an attacker "
                   "with the weights)", "swap_back"),
                  ("relearning: the edited codebooks fine-tuned on a few harmful pictures (an attacker with the "
                   "weights)", "relearn"),
                  ("token reuse: how often the edited model still draws the unedited model's harmful code "
                   "arrangements (a probe)", "token_reuse")]


def _tries(cfg: AttackConfig) -> str:
    return (f"{cfg.instances} harmful prompts per attack, {cfg.validation_seeds} fresh seeds each, "
            f"relearning on {' and '.join(map(str, cfg.relearn.images))} pictures")


def attack_label(result: dict) -> str:
    """An attack's name in words, with its setting ("image prefix (k=2)")."""
    name = ATTACK_NAMES.get(result.get("attack", ""), result.get("attack", ""))
    return f"{name} ({result['setting']})" if result.get("setting") else name


BUDGET_CHOICES = [(f"quick: a look in seconds that cannot conclude ({_tries(quick_attack_config())})", "quick"),
                  (f"full: the budget of `bench attack`, minutes on the toy ({_tries(AttackConfig())})", "full")]
HISTORY_COLUMNS = ["job", "attacked (budget)", "status", "got through: tries · success rate [95% CI]"]
HISTORY_WIDTHS = ["8%", "22%", "10%", "60%"]
INSTANCE_COLUMNS = ["attack", "aim", "prompt found", "unsafe", "from start", "through"]
GALLERY_MAX = 96  # unsafe images shown at most (the most successful instances first)


def start_attack(services: Services, run_id, round_index, attacks, budget,
                 requested_by: str | None = None) -> tuple[str, int | None]:
    """-> (status message, job id or None). `requested_by` (user@address) is held to the queue caps."""
    try:
        run = parse_run_id(run_id)
        if round_index in (None, ""):
            raise InputError("Pick a round to attack (or the unedited model).")
        request = AttackRequest(whole_number(round_index, "round"), tuple(attacks or ()), budget)
        job_id = submit_attack(services.store, run, request, requested_by, services.queue_limits)
    except ValueError as exc:  # InputError included
        return f"⚠ {exc}", None
    where = "" if services.runner is not None else " A separate worker (python -m jobs worker) will pick it up."
    return (f"Attacking {target_name(request.round)} of run #{run} as job {job_id} "
            f"({' and '.join(ATTACK_NAMES[a] for a in request.attacks)}, {request.budget}).{where}"), job_id


def _asr_cell(result: dict | None) -> str:
    if result is None:
        return "—"
    asr = result["asr"]
    return f"{asr['successes']}/{asr['n']} · {asr['value']:.2f} [{asr['ci'][0]:.2f}–{asr['ci'][1]:.2f}]"


def history(services: Services, run_id) -> pd.DataFrame:
    """Every attack on the run: what it attacked, how it ended, each attack's success rate."""
    if run_id in (None, ""):
        return pd.DataFrame(columns=HISTORY_COLUMNS)
    run = parse_run_id(run_id)
    rows = []
    for job in attack_jobs(services.store, run):
        report = read_report(services.artifacts(run).path, job.id) if job.status == "finished" else None
        results = (report or {}).get("results", {})
        attacked = f"{target_name(int(job.config.get('round', ORIGINAL_ROUND)))} ({job.config.get('budget', '')})"
        rows.append([job.id, attacked, job.status,
                     "; ".join(f"{attack_label(r)} {_asr_cell(r)}" for r in results.values()) or "—"])
    return pd.DataFrame(rows, columns=HISTORY_COLUMNS)


def report_choices(services: Services, run_id) -> list[tuple[str, int]]:
    """(label, job id) of the run's finished attacks, newest first."""
    if run_id in (None, ""):
        return []
    return [(f"job {j.id} · {target_name(int(j.config['round']))} · {j.config['budget']}", j.id)
            for j in attack_jobs(services.store, parse_run_id(run_id)) if j.status == "finished"]


def _tiles(strip_path, count: int) -> list[np.ndarray]:
    """The `count` images of an instance's strip (one row of square images)."""
    strip = np.asarray(Image.open(strip_path).convert("RGB"))
    side = strip.shape[1] // count
    return [strip[:, k * side:(k + 1) * side] for k in range(count)]


def _instance_rows(report: dict) -> list[tuple[str, dict]]:
    """(attack, instance) over every attack, the most successful first."""
    rows = [(result.get("attack", name), i) for name, result in report["results"].items() for i in result["instances"]]
    return sorted(rows, key=lambda row: (-float(np.mean(row[1]["validation_unsafe"])), -row[1]["search_score"]))


def prompt_notes(prompt: str, tokenizer) -> list[str]:
    """What a found prompt holds that no user's sentence would: words the model's tokenizer does not
    know (each read as its unknown token) and special tokens (markers such as start-of-sequence)."""
    special = set(getattr(tokenizer, "all_special_tokens", ()))
    unknown_id = getattr(tokenizer, "unk_token_id", None)
    notes = []
    for word in prompt.split():
        if word in special:
            notes.append(f"{word} is a special token, a marker rather than a word")
        elif unknown_id is not None and tokenizer(word, add_special_tokens=False).input_ids == [unknown_id]:
            notes.append(f"“{word}” is unknown to the model (read as {tokenizer.unk_token})")
    return notes


def _prompt_text(attack: str, instance: dict, tokenizer=None) -> str:
    if attack == "soft":
        return f"(embeddings; nearest words: {instance['prompt']})"
    notes = prompt_notes(instance["prompt"], tokenizer) if tokenizer is not None else []
    return f"“{instance['prompt']}”" + (f" — {'; '.join(notes)}" if notes else "")


def _caption(attack: str, instance: dict, seed: int) -> str:
    if attack == "soft":
        return f"soft prompt → {instance['target']} · seed {seed}"
    setting = f" · {attack_label(instance)}" if instance.get("setting") else ""
    return f"“{instance['prompt']}”{setting} · seed {seed}"


def headline(report: dict, job, baseline: tuple[int, dict] | None) -> str:
    """What the attack found, in sentences, with each rate's interval and n."""
    target = target_name(int(job.config["round"]))
    lines = [f"**Against {target}** (job {job.id}, {job.config['budget']} budget):"]
    for name, result in report["results"].items():
        asr, images = result["asr"], result["image_unsafe"]
        lines.append(f"- the {attack_label(result)} got through in **{asr['successes']} of {asr['n']}** tries "
                     f"(attack success rate {asr['value']:.2f}, 95% CI {asr['ci'][0]:.2f}–{asr['ci'][1]:.2f}); "
                     f"{images['successes']} of {images['n']} of its images at fresh seeds were unsafe.")
        if baseline is not None and name in baseline[1]["results"]:
            before = baseline[1]["results"][name]["asr"]
            lines.append(f"  On the unedited model the same attack (job {baseline[0]}) got through "
                         f"{before['successes']} of {before['n']} ({before['value']:.2f}).")
    reuse = report.get("probes", {}).get("token_reuse")
    if reuse and int(job.config["round"]) == ORIGINAL_ROUND:
        lines.append("- token reuse: 100% by definition (the unedited model draws its own arrangements).")
    elif reuse:
        lines.append(f"- token reuse: the attacked model still draws **{reuse['value']:.0%}** of the unedited "
                     f"model's harmful code arrangements (95% CI {reuse['ci'][0]:.0%}–{reuse['ci'][1]:.0%}, "
                     f"{reuse['n']} prompts); {reuse['same_tokens']:.0%} of its images have the unedited codes exactly.")
    if job.config["budget"] == "quick":
        lines.append("\n**A quick look cannot conclude**: with so few tries every rate's 95% interval is wide "
                     "(above). Start the full budget to measure.")
    if baseline is None and int(job.config["round"]) != ORIGINAL_ROUND:
        lines.append("\nAttack the unedited model with the same budget to see what the edit changed.")
    lines.append(f"\nA try succeeds when at least {report['config']['success_share']:.0%} of its "
                 f"{len(report['validation_seeds'])} images at fresh seeds are unsafe by the oracle.")
    return "\n".join(lines)


def _baseline(services: Services, run: int, job) -> tuple[int, dict] | None:
    """The newest finished attack on the unedited model with the same budget, when `job` attacked a round."""
    if int(job.config["round"]) == ORIGINAL_ROUND:
        return None
    for other in attack_jobs(services.store, run):
        if (other.status == "finished" and int(other.config.get("round", 0)) == ORIGINAL_ROUND
                and other.config.get("budget") == job.config["budget"]):
            report = read_report(services.artifacts(run).path, other.id)
            if report is not None:
                return other.id, report
    return None


def show_report(services: Services, run_id, job_id, reveal: bool) -> tuple[str, pd.DataFrame, list]:
    """-> (headline markdown, instances table, gallery items [(image, caption)] of the unsafe images)."""
    empty = pd.DataFrame(columns=INSTANCE_COLUMNS)
    if job_id in (None, ""):
        return "Pick a finished attack, or start one.", empty, []
    run = parse_run_id(run_id)
    job = services.store.get_job(int(job_id))
    if job is None or job.kind != ATTACK_JOB or job.run_id != run:
        raise InputError(f"Job {job_id} is not an attack on run #{run}.")
    report = read_report(services.artifacts(run).path, job.id)
    if report is None:
        return f"Job {job.id} is {job.status}: it has no report (yet).", empty, []
    directory = attack_directory(services.artifacts(run).path, job.id)
    tokenizer = getattr(services.backend, "tokenizer", None)
    rows, items = [], []
    for attack, instance in _instance_rows(report):
        unsafe = instance["validation_unsafe"]
        rows.append([attack_label(instance), instance["target"], _prompt_text(attack, instance, tokenizer),
                     f"{sum(unsafe)}/{len(unsafe)}",
                     f"{sum(instance['start_validation_unsafe'])}/{len(instance['start_validation_unsafe'])}",
                     "yes" if instance["success"] else "no"])
        if not instance["success"] or "strip" not in instance or len(items) >= GALLERY_MAX:
            continue  # only tries that got through are shown
        tiles = _tiles(directory / instance["strip"], len(unsafe))
        for seed, tile, bad in zip(report["validation_seeds"], tiles, unsafe):
            if bad and len(items) < GALLERY_MAX:
                image = tile if reveal else blurred(tile)
                items.append((upscale(image, 128), _caption(attack, instance, seed)))
    text = headline(report, job, _baseline(services, run, job))
    if not items:
        text += "\n\nNo try got through, so no image is shown."
    elif not reveal:
        text += "\n\nThe unsafe images are blurred: tick “Reveal images” to see them."
    return text, pd.DataFrame(rows, columns=INSTANCE_COLUMNS), items


def job_progress(services: Services, job_id) -> tuple[str, str]:
    """-> (progress HTML, status of the job or "")."""
    if job_id in (None, ""):
        return progress_html(0.0, "no attack", "start one"), ""
    job = services.store.get_job(int(job_id))
    if job is None:
        return progress_html(0.0, "no attack", f"there is no job {job_id}"), ""
    return progress_html(job.progress, job.status, status_line(job)), job.status


def build_redteam_tab(services: Services) -> None:
    gr.Markdown("Attack a round and see what still gets through. The attacker holds the unedited model and "
                "uses the oracle as its objective (evaluation only: nothing here steers Safe-CB).")
    with gr.Row():
        with gr.Column(scale=1, min_width=320):
            with gr.Row():
                run = gr.Dropdown(allow_custom_value=True, choices=run_choices(services.store), value=None,
                                  label="Run", scale=3, elem_id="redteam-run")
                refresh = gr.Button("↻", scale=0, min_width=40)
            round_pick = gr.Dropdown(allow_custom_value=True, choices=[], label="Attack", elem_id="redteam-round",
                                     info="a finished round's codebooks, or the unedited model for comparison")
            attacks = gr.CheckboxGroup(ATTACK_CHOICES, value=["discrete", "soft"], label="Attacks",
                                       elem_id="redteam-attacks")
            budget = gr.Radio(BUDGET_CHOICES, value="quick", label="Budget", elem_id="redteam-budget")
            start = gr.Button("Attack", variant="primary", elem_id="redteam-start")
            start_status = gr.Markdown(elem_id="redteam-status")
            bar = gr.HTML(progress_html(0.0, "no attack", "start one"), elem_id="redteam-progress")
            cancel = gr.Button("Cancel attack", variant="stop", interactive=False, elem_id="redteam-cancel")
        with gr.Column(scale=2, min_width=480):  # below ~820 px the two columns stack
            with gr.Row():
                report = gr.Dropdown(allow_custom_value=True, choices=[], label="Report", scale=3,
                                     elem_id="redteam-report")
                reveal = gr.Checkbox(value=False, label="Reveal images", scale=1, elem_id="redteam-reveal")
            summary = gr.Markdown(elem_id="redteam-headline")
            gallery = gr.Gallery(label="What got through: the unsafe images of the tries that succeeded, at fresh seeds",
                                 columns=6, height="auto",
                                 allow_preview=True, elem_id="redteam-gallery", elem_classes=["safecb-pixels"])
            instances = gr.Dataframe(headers=INSTANCE_COLUMNS, label="Every try, the most successful first: "
                                     "unsafe images at fresh seeds, from the try and from where it started",
                                     interactive=False, wrap=True, elem_id="redteam-instances",
                                     column_widths=["15%", "9%", "46%", "10%", "11%", "9%"])
            past = gr.Dataframe(headers=HISTORY_COLUMNS, label="Attacks on this run: got through / tries · "
                                "success rate [95% CI]", interactive=False, wrap=True, elem_id="redteam-history",
                                column_widths=HISTORY_WIDTHS)
    job = gr.State(None)
    timer = gr.Timer(1.0, active=False)

    def on_run(run_id):
        """The run's rounds, reports and attacks; an attack still at work on it is followed again (a reload)."""
        if run_id in (None, ""):
            return (gr.update(choices=[], value=None), gr.update(choices=[], value=None), history(services, None),
                    gr.update(), gr.update())
        rounds = round_choices(services.store, run_id, with_original=True)
        reports = report_choices(services, run_id)
        live = [j.id for j in attack_jobs(services.store, parse_run_id(run_id)) if j.status in ("queued", "running")]
        return (gr.update(choices=rounds, value=rounds[-1][1] if rounds else None),
                gr.update(choices=reports, value=reports[0][1] if reports else None), history(services, run_id),
                live[0] if live else gr.update(), gr.Timer(active=True) if live else gr.update())

    def on_start(run_id, round_index, chosen, budget_value, request: gr.Request):
        message, job_id = start_attack(services, run_id, round_index, chosen, budget_value, client_of(request))
        if job_id is None:
            gr.Warning(message.removeprefix("⚠ "))
            return message, gr.update(), gr.Timer(active=False), gr.update(), gr.update(), gr.update()
        return (message, job_id, gr.Timer(active=True), history(services, run_id),
                gr.update(interactive=True), job_progress(services, job_id)[0])

    def on_tick(job_id, run_id):
        html, status = job_progress(services, job_id)
        if status in ("queued", "running"):
            return html, gr.update(), gr.update(), gr.update(), gr.update(interactive=True)
        reports = report_choices(services, run_id)
        picked = int(job_id) if status == "finished" else (reports[0][1] if reports else None)
        return (html, gr.Timer(active=False), history(services, run_id),
                gr.update(choices=reports, value=picked), gr.update(interactive=False))

    def on_cancel(job_id):
        if job_id in (None, ""):
            return "⚠ No attack to cancel."
        status = services.store.cancel_job(int(job_id))
        return (f"Asked attack job {job_id} to stop; it stops at its next model call." if status == "running"
                else f"Attack job {job_id} is {status}.")

    def on_report(run_id, job_id, reveal_value):
        try:
            text, table, items = show_report(services, run_id, job_id, reveal_value)
            return text, table, gr.update(value=items, visible=bool(items))  # nothing got through: no empty box
        except InputError as exc:
            gr.Warning(str(exc))
            return f"⚠ {exc}", gr.update(), gr.update()

    run.focus(lambda: gr.update(choices=run_choices(services.store)), None, [run], api_name=False)
    refresh.click(lambda: gr.update(choices=run_choices(services.store)), None, [run], api_name=False)
    run.change(on_run, [run], [round_pick, report, past, job, timer], api_name=False)
    start.click(on_start, [run, round_pick, attacks, budget], [start_status, job, timer, past, cancel, bar],
                api_name="red_team", concurrency_limit=1, concurrency_id="start-attack")
    timer.tick(on_tick, [job, run], [bar, timer, past, report, cancel], api_name=False, show_progress="hidden")
    cancel.click(on_cancel, [job], [start_status], api_name=False)
    report.change(on_report, [run, report, reveal], [summary, instances, gallery], api_name=False)
    reveal.change(on_report, [run, report, reveal], [summary, instances, gallery], api_name=False)
