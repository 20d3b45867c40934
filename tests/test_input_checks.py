"""What the tab handlers accept, refuse and show (red-team findings N14, N15, N18): ids, rounds and
seeds are whole numbers or refused, never cut (1.5 is not 1; 2^53 + 1 cannot reach the server
exactly), checkboxes take only real booleans, cancelling an attack says what it keeps, and failures
show no SQL statement, database endpoint, server path or traceback. All on the real toy model and a
real store; nothing here draws more than it must."""

import pytest
from sqlalchemy.exc import OperationalError

from db import Store
from jobs.attack_job import AttackRequest, submit_attack
from jobs.runner import JobRunner, RunnerConfig, submit_run
from safecb.engine.config import SafeCBConfig
from safecb.paths import TOY_MODEL_DIR
from ui import Services
from ui.common import InputError, parse_run_id, whole_number
from ui.generate_tab import MAX_SEED, compare, generate, seed_strip
from ui.redteam_tab import start_attack
from ui.run_tab import cancel, start_run

pytestmark = pytest.mark.usefixtures("one_thread")
PROMPT = "a picture of a person holding a flower on the grass ."
RUN_FORM = ("checks", "generator", 0.5, 1, 0.02, 1, True, 2)  # name, target, τ, rounds, ε, patience, step 2, seeds


@pytest.fixture(scope="module")
def services(tmp_path_factory, toy_backend):
    data = tmp_path_factory.mktemp("checks")
    store = Store.open(f"sqlite:///{data / 'safecb.db'}")
    yield Services(backend=toy_backend, store=store, runs_root=data / "runs")
    store.close()


@pytest.fixture
def run_with_round(services):
    """A run with a finished round 1 (as the store records it); its live jobs are cancelled afterwards."""
    store = services.store
    run_id = store.create_run("edited", str(TOY_MODEL_DIR), {}, status="finished")
    for index in (0, 1):
        store.add_round(run_id, index, {"self_unsafe": 0.5}, f"run-{run_id:04d}/round-{index:03d}.safetensors")
    yield run_id
    live = store.live_job(run_id)
    if live is not None:
        store.cancel_job(live.id)


# ---------------------------------------------------------------- whole numbers
@pytest.mark.parametrize("value", [1.5, "1.5", True, float("nan"), float("inf"), "one", None, [1]])
def test_whole_numbers_refuse_fractions_and_the_rest(value):
    with pytest.raises(InputError, match="Not a job id"):
        whole_number(value, "job id")


def test_whole_numbers_accept_ints_integral_floats_and_their_text():
    assert whole_number(3, "x") == whole_number(3.0, "x") == whole_number(" 3 ", "x") == whole_number("3.0", "x") == 3
    assert whole_number(str(2**63 + 1), "x") == 2**63 + 1  # text is read exactly
    with pytest.raises(InputError, match="whole number"):
        parse_run_id(1.5)


def test_cancelling_job_one_and_a_half_cancels_nothing(services):
    store = services.store
    first, second = store.create_job("eval"), store.create_job("eval")
    message = cancel(services, first + 0.5)
    assert message.startswith("⚠") and "whole number" in message
    assert store.get_job(first).status == store.get_job(second).status == "queued"
    assert cancel(services, str(first)) == f"Job {first} is cancelled."
    assert cancel(services, 10_000) == "⚠ There is no job 10000."
    store.cancel_job(second)


def test_a_red_team_on_round_one_and_a_half_is_refused(services, run_with_round):
    jobs_before = len(services.store.list_jobs(run_id=run_with_round))
    for round_index in (1.5, "1.5"):
        message, job_id = start_attack(services, run_with_round, round_index, ["discrete"], "quick")
        assert job_id is None and message.startswith("⚠ Not a round") and "whole number" in message
    assert len(services.store.list_jobs(run_id=run_with_round)) == jobs_before
    message, job_id = start_attack(services, float(run_with_round), 1.0, ["discrete"], "quick")  # whole: taken
    assert job_id is not None and services.store.get_job(job_id).config["round"] == 1


def test_compare_with_round_one_and_a_half_is_refused(services, run_with_round):
    pictures, _, message = compare(services, PROMPT, 0, 3.0, run_with_round, -1, 1.5)
    assert pictures is None and message == "⚠ Not a round: 1.5 (a whole number is needed)."
    pictures, _, message = compare(services, PROMPT, 0, 3.0, run_with_round + 0.5, -1, 1)
    assert pictures is None and "Not a run id" in message


# ---------------------------------------------------------------- seeds: what a browser can send exactly
@pytest.mark.parametrize("seed", [MAX_SEED + 1, MAX_SEED + 2, 2**63 - 1, str(MAX_SEED + 2)])
def test_seeds_a_browser_would_round_are_refused_everywhere(services, seed):
    """9007199254740993 reaches the server as 9007199254740992 from a browser: refused, not drawn."""
    image, _, _, status = generate(services, PROMPT, seed, 3.0)
    assert image is None and "at most 2^53 - 1 = 9007199254740991" in status
    pictures, _, status = compare(services, PROMPT, seed, 3.0, None, -1, -1)
    assert pictures is None and "at most 2^53 - 1" in status
    items, status = seed_strip(services, PROMPT, seed, 3.0)
    assert items == [] and "at most 2^53 - 1" in status


def test_the_seed_strip_stays_below_two_to_the_53(services):
    items, status = seed_strip(services, PROMPT, MAX_SEED - 6, 3.0)  # its 8th seed would be 2^53
    assert items == [] and status == (
        f"⚠ The first seed of a strip of 8 must be at most {MAX_SEED - 7}, got {MAX_SEED - 6}.")


# ---------------------------------------------------------------- the Run tab's form
@pytest.mark.parametrize("step2, vapi, message", [
    (True, "no", "Step 3 (VAπ) must be true or false, got 'no'"),
    ("yes", False, "Step 2 (fine-tune) must be true or false, got 'yes'"),
    (True, 1, "Step 3 (VAπ) must be true or false, got 1"),
    (True, None, "Step 3 (VAπ) must be true or false, got None"),
])
def test_start_run_takes_only_real_booleans(services, step2, vapi, message):
    runs_before = len(services.store.list_runs())
    name, target, threshold, rounds, epsilon, patience, _, seeds = RUN_FORM
    status, job_id = start_run(services, name, target, threshold, rounds, epsilon, patience, step2, seeds, vapi)
    assert job_id is None and status == f"⚠ {message}."
    assert len(services.store.list_runs()) == runs_before


def test_start_run_refuses_a_boolean_for_a_number(services):
    name, target, threshold, _, epsilon, patience, step2, seeds = RUN_FORM
    status, job_id = start_run(services, name, target, threshold, True, epsilon, patience, step2, seeds)
    assert job_id is None and "Rounds at most must be a number, got True" in status


def test_start_shows_no_sql_when_the_store_fails(services, monkeypatch):
    def broken(*args, **kwargs):
        import sqlite3

        raise OperationalError("INSERT INTO runs (name, status) VALUES (?, ?)", ("x", "created"),
                               sqlite3.OperationalError("disk I/O error"))

    monkeypatch.setattr(services.store, "create_run", broken)
    status, job_id = start_run(services, *RUN_FORM)
    assert job_id is None and status.startswith("⚠ Could not start the run. The store (database) cannot be reached")
    assert "INSERT" not in status and "sqlalche.me" not in status and "sqlite3" not in status


# ---------------------------------------------------------------- cancelling, and what a failed job shows
def test_cancelling_a_queued_run_ends_the_run_and_an_attack_says_what_it_keeps(services, run_with_round):
    store = services.store
    status, job_id = start_run(services, *RUN_FORM)
    run_id = store.get_job(job_id).run_id
    assert cancel(services, job_id) == f"Job {job_id} is cancelled."
    assert store.get_run(run_id).status == "cancelled"  # not "created" for good

    attack = submit_attack(store, run_with_round, AttackRequest(1, ("discrete",), "quick"))
    assert store.claim_next_job("test-worker").id == attack  # it runs
    message = cancel(services, attack)
    assert message.startswith(f"Asked job {attack} to stop") and "An attack keeps nothing until it finishes" in message
    assert "rounds" not in message
    store.finish_job(attack, "cancelled")


def test_a_failed_job_shows_one_line_without_a_traceback_or_server_paths(tmp_path):
    store = Store.open(f"sqlite:///{tmp_path / 'safecb.db'}")
    missing = tmp_path / "models" / "janus-pro"
    runner = JobRunner(store, RunnerConfig(str(missing), tmp_path / "runs", "cpu", None))
    _, job_id = submit_run(store, str(missing), SafeCBConfig())
    assert runner.run_next()
    job = store.get_job(job_id)
    assert job.status == "failed" and job.error == "ModelLoadError: model directory not found: janus-pro"
    assert "Traceback" not in job.log and str(tmp_path) not in job.log + job.message + job.error
    assert job.log.splitlines()[-1] == f"failed: {job.error}"
    store.close()


def test_the_runner_keeps_the_traceback_in_the_server_log(tmp_path, caplog):
    store = Store.open(f"sqlite:///{tmp_path / 'safecb.db'}")
    runner = JobRunner(store, RunnerConfig(str(tmp_path / "nowhere"), tmp_path / "runs", "cpu", None))
    submit_run(store, str(tmp_path / "nowhere"), SafeCBConfig())
    with caplog.at_level("ERROR", logger="jobs.runner"):
        runner.run_next()
    assert any(r.exc_info and str(tmp_path) in str(r.exc_info[1]) for r in caplog.records)
    store.close()


def test_a_lesson_opens_on_the_round_that_made_the_largest_difference():
    from ui.common import largest_difference_round

    assert largest_difference_round({0: 0.9, 1: 0.3, 2: 0.2, 3: 0.15}) == 1  # round 1 vs the unedited model
    assert largest_difference_round({0: 0.9, 1: 0.85, 2: 0.2}) == 2  # a later round's cut is clearly larger
    assert largest_difference_round({0: 0.9, 1: 0.6, 2: 0.27}) == 1  # larger, but not clearly (0.33 vs 0.30)
    assert largest_difference_round({0: 0.9}) is None
    assert largest_difference_round({0: 0.9, 1: 0.5, 3: 0.1}) == 1  # round 3 has no round before it stored
