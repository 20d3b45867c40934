"""The red team as a job and a tab, on the real toy model, its oracle and a real store: an attack job
run by the job runner against a round's codebooks (here rounds made by importing codebook files),
its report in the run directory, progress, cancel, refusals with reasons, and the Red team tab's
handlers (history, report, the unsafe images blurred until revealed, the unedited model as a
baseline)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import save_file

from db import Store
from jobs.attack_job import (
    ATTACK_JOB,
    ORIGINAL_ROUND,
    AttackCancelled,
    AttackProgress,
    AttackRequest,
    attack_config,
    attack_directory,
    read_report,
    submit_attack,
)
from jobs.lease import Lease
from jobs.runner import JobRunner, RunnerConfig
from safecb.eval.attack import ATTACKS, quick_attack_config
from safecb.models.sampler import SamplerSettings
from safecb.paths import ORACLE_DIR, TOY_MODEL_DIR
from ui import Services
from ui.export_tab import export_round, import_codebook
from ui.redteam_tab import BUDGET_CHOICES, history, prompt_notes, report_choices, show_report, start_attack
from ui.run_tab import job_choices

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def studio(tmp_path_factory, toy_backend):
    """Services on a fresh store, with the in-process runner (toy oracle), and two imported runs: the
    unedited codebooks, and a decoder codebook whose every code is code 0 (every image is the same)."""
    data = tmp_path_factory.mktemp("redteam")
    store = Store.open(f"sqlite:///{data / 'safecb.db'}")
    runner = JobRunner(store, RunnerConfig(str(TOY_MODEL_DIR), data / "runs", "cpu", str(ORACLE_DIR)))
    services = Services(backend=toy_backend, store=store, runs_root=data / "runs", runner=runner)
    decoder = services.reference["decoder"]
    save_file({"decoder": decoder.clone()}, str(data / "unedited.safetensors"))
    save_file({"decoder": decoder[:1].expand_as(decoder).contiguous()}, str(data / "one_code.safetensors"))
    unedited, _ = import_codebook(services, str(data / "unedited.safetensors"), "unedited")
    one_code, _ = import_codebook(services, str(data / "one_code.safetensors"), "one code")
    yield services, unedited, one_code
    store.close()


def run_attack(services: Services, run_id: int, round_index: int, budget: str = "quick",
               attacks=("discrete", "soft")) -> int:
    message, job_id = start_attack(services, run_id, round_index, list(attacks), budget)
    assert job_id is not None, message
    assert services.runner.run_next()
    return job_id


def strips(services: Services, run_id: int, job_id: int) -> dict[str, list[np.ndarray]]:
    directory = attack_directory(services.artifacts(run_id).path, job_id)
    report = read_report(services.artifacts(run_id).path, job_id)
    return {name: [np.asarray(Image.open(directory / i["strip"])) for i in result["instances"]]
            for name, result in report["results"].items()}


def test_an_attack_job_writes_its_report_and_leaves_the_run_as_it_was(studio):
    services, run_id, _ = studio
    store = services.store
    before = store.get_run(run_id)
    job_id = run_attack(services, run_id, 0)
    job = store.get_job(job_id)
    assert (job.kind, job.status, job.progress, job.error) == (ATTACK_JOB, "finished", 1.0, None)
    report = read_report(services.artifacts(run_id).path, job_id)
    assert set(report["results"]) == {"discrete", "soft"}
    for name, result in report["results"].items():
        asr = result["asr"]
        instances = result["instances"]
        assert asr["n"] == len(instances) and asr["successes"] == sum(i["success"] for i in instances)
        words = {"discrete": "prompt search", "soft": "soft prompt"}[name]
        assert f"{words} {asr['successes']}/{asr['n']} got through" in job.message
        assert asr["ci"][0] <= asr["value"] <= asr["ci"][1]
    seeds = report["validation_seeds"]
    for name, images in strips(services, run_id, job_id).items():
        for image in images:  # one row of the instance's validation images at the model's size
            assert image.shape == (services.backend.image_size, len(seeds) * services.backend.image_size, 3)
    after = store.get_run(run_id)
    assert (after.status, after.best_round, after.stopped) == (before.status, before.best_round, before.stopped)
    assert all(bool((services.runner.backend.get_codebook(n) == v).all()) for n, v in services.reference.items())
    assert "attack on run" in dict((v, k) for k, v in job_choices(services))[job_id]


def test_the_attack_draws_with_the_attacked_rounds_codebooks(studio):
    """Against a decoder codebook whose every code is the same, every image of every try is the same
    picture, and nothing gets through; the unedited model, attacked alike, yields varied images."""
    services, unedited, one_code = studio
    flat = strips(services, one_code, run_attack(services, one_code, 0))
    tiles = [image[:, k * image.shape[0]:(k + 1) * image.shape[0]] for rows in flat.values() for image in rows
             for k in range(image.shape[1] // image.shape[0])]
    assert len(tiles) >= 8 and all(np.array_equal(tiles[0], t) for t in tiles)
    report = read_report(services.artifacts(one_code).path, services.store.list_jobs(run_id=one_code)[0].id)
    assert all(r["asr"]["successes"] == 0 for r in report["results"].values())
    varied = strips(services, unedited, run_attack(services, unedited, ORIGINAL_ROUND, attacks=("discrete",)))
    assert len({image.tobytes() for image in varied["discrete"]}) == len(varied["discrete"])


def test_swap_back_gives_back_what_a_decoder_only_edit_hides(studio):
    """The "one code" run paints every token alike, so nothing it serves is unsafe; its tokens are the
    unedited model's, and through the public decoder they are what the unedited model draws."""
    services, _, one_code = studio
    job_id = run_attack(services, one_code, 0, attacks=("swap_back",))
    result = read_report(services.artifacts(one_code).path, job_id)["results"]["swap_back"]
    assert result["asr"]["n"] == quick_attack_config().instances
    assert result["start_image_unsafe"]["successes"] == 0
    assert result["asr"]["successes"] >= result["asr"]["n"] // 2
    assert "swap-back" in services.store.get_job(job_id).message
    table = history(services, one_code)
    cell = table.iloc[0][table.columns[-1]]
    assert cell.startswith("swap-back ") and f"/{result['asr']['n']} ·" in cell


def test_every_attack_runs_as_a_job_and_the_tab_and_export_name_each(studio):
    """All six attacks and the token-reuse probe on the "one code" round: each attack's report, the
    tab's headline and table, the export's red-team table."""
    services, _, one_code = studio
    job_id = run_attack(services, one_code, 0, attacks=ATTACKS)
    report = read_report(services.artifacts(one_code).path, job_id)
    n = quick_attack_config().instances
    assert set(report["results"]) == {"discrete", "soft", "attribute", "prefix k=2", "swap_back",
                                      "relearn 4 images, 2 steps"}
    assert all(r["asr"]["n"] == n for r in report["results"].values())
    reuse = report["probes"]["token_reuse"]
    assert reuse["value"] == 1.0 and reuse["same_tokens"] == 1.0  # a decoder-only edit draws the same codes
    text, table, _ = show_report(services, one_code, job_id, reveal=False)
    assert "image prefix (k=2)" in text and "relearning (4 images, 2 steps)" in text and "token reuse" in text
    assert set(table["attack"]) >= {"attribute prompt", "image prefix (k=2)", "relearning (4 images, 2 steps)"}
    files, _ = export_round(services, one_code, 0)
    exported = next(Path(f).read_text() for f in files if str(f).endswith(".md"))
    assert "| prefix k=2 |" in exported and "token reuse" in exported


def test_the_red_team_tab_shows_what_got_through_blurred_until_revealed(studio):
    services, run_id, _ = studio
    jobs = {j.id: j for j in services.store.list_jobs(run_id=run_id) if j.kind == ATTACK_JOB}
    on_round = max(i for i, j in jobs.items() if j.config["round"] == 0 and j.config["attacks"] == ["discrete", "soft"])
    table = history(services, run_id)
    assert len(table) == len(jobs) and set(table["status"]) == {"finished"}
    assert on_round in [v for _, v in report_choices(services, run_id)]
    text, instances, hidden = show_report(services, run_id, on_round, reveal=False)
    _, _, shown = show_report(services, run_id, on_round, reveal=True)
    report = read_report(services.artifacts(run_id).path, on_round)
    # only the tries that got through are shown
    unsafe = sum(sum(i["validation_unsafe"]) for r in report["results"].values() for i in r["instances"]
                 if i["success"])
    assert len(shown) == len(hidden) == min(unsafe, 96)
    assert len(instances) == sum(len(r["instances"]) for r in report["results"].values())
    assert list(instances["through"]).count("yes") == sum(r["asr"]["successes"] for r in report["results"].values())
    shares = [int(cell.split("/")[0]) for cell in instances["unsafe"]]
    assert shares == sorted(shares, reverse=True)  # the most successful tries first
    assert "Against round 0" in text and "95% CI" in text
    assert "A quick look cannot conclude" in text  # the quick budget says what it cannot do
    assert shown, "the unedited model lets some attack through"
    assert "tick “Reveal images”" in text
    assert not np.array_equal(shown[0][0], hidden[0][0])  # blurred until revealed
    assert shown[0][0].shape[0] >= 128
    # the unedited model attacked with the same budget becomes the baseline sentence
    baseline = run_attack(services, run_id, ORIGINAL_ROUND)
    text, _, _ = show_report(services, run_id, on_round, reveal=False)
    assert f"On the unedited model the same attack (job {baseline})" in text


def test_found_prompts_name_their_unknown_words_and_special_tokens(studio):
    services, _, _ = studio
    tokenizer = services.backend.tokenizer
    assert prompt_notes("a knife on the grass", tokenizer) == []
    assert prompt_notes("zzzz car describe", tokenizer) == ["“zzzz” is unknown to the model (read as <unk>)"]
    assert prompt_notes("<bos> knife", tokenizer) == ["<bos> is a special token, a marker rather than a word"]
    assert "quick: a look in seconds that cannot conclude" in BUDGET_CHOICES[0][0]
    assert "32 harmful prompts per attack" in BUDGET_CHOICES[1][0]


def test_an_export_of_the_round_reports_its_attacks_and_the_baseline(studio):
    services, run_id, _ = studio
    files, _ = export_round(services, run_id, 0)
    text = Path(next(f for f in files if f.endswith("report.md"))).read_text()
    finished = [j for j in services.store.list_jobs(run_id=run_id) if j.kind == ATTACK_JOB and j.status == "finished"]
    assert finished
    for job in finished:
        report = read_report(services.artifacts(run_id).path, job.id)
        target = "the unedited model" if job.config["round"] == ORIGINAL_ROUND else "round 0"
        for name, result in report["results"].items():
            asr = result["asr"]
            assert (f"| {job.id} | {target} | {job.config['budget']} | {name} | {asr['successes']} of {asr['n']} | "
                    f"{asr['value']:.2f} [{asr['ci'][0]:.2f}, {asr['ci'][1]:.2f}] (n {asr['n']}) |") in text
    assert "imported codebook" in text and "No attack was run" not in text


def test_bad_requests_are_refused_before_anything_is_queued(studio):
    services, run_id, _ = studio
    queued = len(services.store.list_jobs())
    cases = [(None, 0, ["discrete"], "quick", "Pick a run"), (run_id, None, ["discrete"], "quick", "Pick a round"),
             (run_id, "round one", ["discrete"], "quick", "Not a round"),
             (run_id, 7, ["discrete"], "quick", "no finished round 7"), (run_id, 0, [], "quick", "at least one attack"),
             (run_id, 0, ["discrete"], "huge", "budget must be one of"), (999, 0, ["discrete"], "quick", "no run")]
    for run, round_index, attacks, budget, expected in cases:
        message, job_id = start_attack(services, run, round_index, attacks, budget)
        assert job_id is None and expected in message, (expected, message)
    assert len(services.store.list_jobs()) == queued
    job_id = submit_attack(services.store, run_id, AttackRequest(0, ("discrete",), "quick"))
    message, again = start_attack(services, run_id, 0, ["discrete"], "quick")  # one live job per run
    assert again is None and "already has a queued or running job" in message
    assert services.store.cancel_job(job_id) == "cancelled"


def test_a_running_attack_reports_progress_and_stops_when_cancelled(studio):
    services, run_id, _ = studio
    store = services.store
    job_id = submit_attack(store, run_id, AttackRequest(0, ("discrete", "soft"), "full"))
    worker = threading.Thread(target=services.runner.run_next)
    worker.start()
    deadline = time.monotonic() + 120
    while store.get_job(job_id).progress <= 0.0 and time.monotonic() < deadline:
        time.sleep(0.2)
    seen = store.get_job(job_id)
    assert seen.status == "running" and 0.0 < seen.progress < 1.0 and seen.message
    assert store.cancel_job(job_id) == "running"
    worker.join(120)
    job = store.get_job(job_id)
    assert (job.status, job.error) == ("cancelled", "cancelled by a user")
    assert read_report(services.artifacts(run_id).path, job_id) is None
    assert all(bool((services.runner.backend.get_codebook(n) == v).all()) for n, v in services.reference.items())


def test_progress_raises_once_cancel_is_asked_or_the_lease_is_lost(studio):
    services, run_id, _ = studio
    store = services.store
    job_id = submit_attack(store, run_id, AttackRequest(0, ("discrete",), "quick"))
    lease = Lease(store, job_id, "test-worker", 30.0)
    progress = AttackProgress(store, job_id, lease, every_s=0.0)
    progress("searching", 0.5)
    assert (store.get_job(job_id).progress, store.get_job(job_id).message) == (0.5, "searching")
    store.claim_next_job("test-worker")
    store.cancel_job(job_id)
    with pytest.raises(AttackCancelled, match="cancelled by a user"):
        progress("searching", 0.6)
    lease.lost.set()
    with pytest.raises(AttackCancelled, match="lost the job's lease"):
        AttackProgress(store, job_id, lease, every_s=60.0)("searching", 0.7)
    store.finish_job(job_id, "cancelled")


def test_an_attack_fails_with_its_reason_without_an_oracle_or_with_a_non_toy_oracle(studio, tmp_path):
    services, run_id, _ = studio
    store = services.store
    bare = JobRunner(store, RunnerConfig(str(TOY_MODEL_DIR), services.runs_root, "cpu", None))
    bare._backend, bare._reference = services.runner.backend, services.reference  # no second model load
    job_id = submit_attack(store, run_id, AttackRequest(0, ("discrete",), "quick"))
    assert bare.run_next()
    job = store.get_job(job_id)
    assert job.status == "failed" and "needs an evaluation oracle" in job.error

    class PromptOnlyOracle:  # what a real-image oracle offers: verdicts, no per-object probabilities
        def assess(self, images):
            raise AssertionError("never reached")

    bare._oracle = PromptOnlyOracle()
    job_id = submit_attack(store, run_id, AttackRequest(0, ("soft",), "quick"))
    assert bare.run_next()
    job = store.get_job(job_id)
    assert job.status == "failed" and "needs the toy oracle" in job.error
    assert store.get_run(run_id).status == "finished"


def test_a_job_of_an_unknown_kind_fails_with_its_reason(studio):
    services, run_id, _ = studio
    job_id = services.store.create_job("export", {}, run_id=None)
    assert services.runner.run_next()
    job = services.store.get_job(job_id)
    assert job.status == "failed" and "unknown job kind 'export'" in job.error


def test_the_budgets_draw_with_the_runs_sampler_and_validate_on_fresh_seeds():
    sampler = SamplerSettings(cfg_weight=3.0, temperature=0.7)
    quick = attack_config(AttackRequest(0, ("soft", "discrete", "soft"), "quick"), sampler)
    full = attack_config(AttackRequest(0, ("discrete",), "full"), sampler)
    assert quick.attacks == ("discrete", "soft") and full.attacks == ("discrete",)
    assert quick.sampler == full.sampler == sampler
    assert quick.discrete.candidates < full.discrete.candidates and quick.validation_seeds < full.validation_seeds
    for cfg in (quick, full):
        searched = set(cfg.search_seeds(cfg.discrete.search_seeds)) | set(cfg.target_seeds())
        assert not searched & set(cfg.validation_seeds_list())
