"""Scaling a Safe-CB round out over processes (safecb/distributed.py): two gloo processes, started
by hand or by `accelerate launch`, give bit for bit what one process gives on the real toy model:
tokens, hidden states, images, self-judgments, captions' adherence, pairs, Harmful Space,
edited codebooks and metrics. Plus the order of sharding and gathering, and failures and
cancellations that stop every process instead of leaving one waiting.

Run as a script (`python tests/test_distributed.py OUT`) it is one process of a two-process run;
the tests start it with the environment `torchrun` or `accelerate launch` would set."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from safecb import world
from safecb.distributed import DistributedContext, merge_shards, shard_items
from safecb.engine import SafeCBConfig, run_safecb
from safecb.engine.driver import MainProcessFailed
from safecb.engine.measure import work_units
from safecb.engine.prompts import from_world
from safecb.models.backend import JanusBackend
from safecb.paths import TOY_MODEL_DIR

ROOT = Path(__file__).resolve().parents[1]
MEASURED = {"harmful": ("tokens", "hidden", "images", "scores"), "rewrite": ("tokens", "images", "scores"),
            "benign": ("tokens", "hidden", "images", "scores", "adherent")}  # kind -> the fields compared


def small_prompts():
    sets = world.build_prompt_sets()
    return from_world(sets.train_harmful[:3], sets.train_benign[:2])


def small_config(max_rounds: int = 1) -> SafeCBConfig:
    cfg = SafeCBConfig()
    cfg.mining.seeds, cfg.mining.benign_seeds = [0, 1, 2], [0, 1]
    cfg.fine_tune.steps, cfg.fine_tune.decoder_steps, cfg.fine_tune.check_every = 20, 20, 5
    cfg.stop.max_rounds = max_rounds
    cfg.batch_size = 2  # several work units of every kind, so both processes generate, judge and caption
    return cfg


def measured(measurement) -> dict:
    return {f"{kind}.{name}": getattr(measurement.sets[kind], name)
            for kind, names in MEASURED.items() for name in names}


def run_once(backend, run_dir: Path, distributed=None) -> tuple:
    """One Safe-CB round on the small set; returns (result, the main process's measurements)."""
    measurements = []

    def keep(event) -> None:
        if event.measurement is not None:
            measurements.append(measured(event.measurement))

    result = run_safecb(backend, small_prompts(), small_config(), run_dir=run_dir, on_event=keep,
                        distributed=distributed)
    return result, measurements


def one_rank(out: Path) -> None:
    """One process of the two-process run (the environment says which)."""
    ctx = DistributedContext.from_environment()
    torch.set_num_threads(1)
    backend = JanusBackend.load(TOY_MODEL_DIR, device="cpu")
    result, measurements = run_once(backend, out / "run", ctx)
    # A failure on the main process alone (its run directory holds another config) stops the others.
    try:
        run_safecb(backend, small_prompts(), small_config(max_rounds=2), run_dir=out / "run", distributed=ctx)
        failure = "none"
    except ValueError as exc:
        failure = f"ValueError: {exc}"
    except MainProcessFailed as exc:
        failure = f"MainProcessFailed: {exc}"
    # Cancelling on the main process in the middle of a measurement stops every process.
    cancelled = run_safecb(backend, small_prompts(), small_config(), should_stop=lambda: True, distributed=ctx)
    torch.save({"world_size": ctx.world_size, "result": result, "measurements": measurements,
                "codebooks": backend.codebooks(), "failure": failure, "cancelled": cancelled},
               out / f"rank{ctx.rank}.pt")
    ctx.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def same_measurements(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b) == 2  # round 0 and round 1
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for name in x:
            if isinstance(x[name], torch.Tensor):
                assert torch.equal(x[name], y[name]), name
            else:
                assert np.array_equal(x[name], y[name]), name


def without_seconds(rounds: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rounds]


def same_run_directory(a: Path, b: Path) -> None:
    for name in ("config.json", "state.json"):
        assert json.loads((a / name).read_text()) == json.loads((b / name).read_text()), name
    for i in (0, 1):
        x, y = load_file(str(a / f"round_{i:03d}/codebooks.safetensors")), load_file(str(b / f"round_{i:03d}/codebooks.safetensors"))
        assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x), f"round {i} codebooks"
        mx, my = (json.loads((d / f"round_{i:03d}/metrics.json").read_text()) for d in (a, b))
        assert without_seconds([mx]) == without_seconds([my]), f"round {i} metrics"
    assert (a / "round_001/examples.png").read_bytes() == (b / "round_001/examples.png").read_bytes()
    assert json.loads((a / "round_001/pairs.json").read_text()) == json.loads((b / "round_001/pairs.json").read_text())
    assert torch.equal(load_file(str(a / "round_001/space.safetensors"))["basis"],
                       load_file(str(b / "round_001/space.safetensors"))["basis"])


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, one_thread):
    """The reference: the same round in this one process."""
    out = tmp_path_factory.mktemp("one")
    backend = JanusBackend.load(TOY_MODEL_DIR, device="cpu")
    result, measurements = run_once(backend, out / "run")
    return out / "run", result, measurements, backend.codebooks()


# ---------------------------------------------------------------- order of the work
@pytest.mark.parametrize("n", range(0, 11))
def test_shards_of_three_processes_cover_every_item_once_and_merge_back_in_order(n):
    items = [f"row {i}" for i in range(n)]
    pieces = [shard_items(items, rank, 3) for rank in range(3)]
    assert sorted(sum(pieces, [])) == sorted(items)
    assert max(map(len, pieces)) - min(map(len, pieces)) <= 1
    assert pieces[1] == items[1::3]  # strided: rank r takes r, r + 3, ...
    assert merge_shards(pieces) == items


def test_work_units_hold_whole_prompts_and_whole_batches():
    for n_prompts, n_seeds, batch in ((7, 3, 2), (48, 8, 128), (5, 4, 6), (1, 1, 1)):
        units = work_units(n_prompts, n_seeds, batch)
        assert units[0][0] == 0 and units[-1][1] == n_prompts
        assert all(a[1] == b[0] for a, b in zip(units, units[1:]))  # contiguous, no gaps
        # every unit but the last starts the next one on a batch boundary of the whole row list
        assert all((last * n_seeds) % batch == 0 for _, last in units[:-1])


def test_a_single_process_context_passes_everything_through():
    ctx = DistributedContext()
    assert ctx.is_main and not ctx.distributed
    items = list(range(5))
    assert ctx.shard(items) == items and ctx.gather_in_order(items) == items
    tensors = {"a": torch.ones(2)}
    assert ctx.broadcast_tensors(tensors) is tensors and ctx.broadcast_object("x") == "x"
    with pytest.raises(KeyError):
        ctx.gather_in_order([], failure=KeyError("boom"))


# ---------------------------------------------------------------- two gloo processes
def test_two_processes_give_bit_for_bit_what_one_process_gives(one_process, tmp_path):
    port = free_port()
    children = []
    for rank in range(2):
        env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2",
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), ACCELERATE_USE_CPU="true",
                   OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
        children.append(subprocess.Popen([sys.executable, __file__, str(tmp_path)], env=env, cwd=ROOT,
                                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    for child in children:
        try:
            output, _ = child.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            for c in children:
                c.kill()
            pytest.fail("a process waited forever")
        assert child.returncode == 0, output[-3000:]
    run_dir, result, measurements, codebooks = one_process
    main, other = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2))
    assert main["world_size"] == other["world_size"] == 2

    same_measurements(main["measurements"], measurements)  # tokens, hidden states, images, judgments
    assert other["measurements"] == []  # only the main process emits events
    same_run_directory(tmp_path / "run", run_dir)  # edits, pairs, Harmful Space, metrics
    for rank in (main, other):
        assert without_seconds(rank["result"].rounds) == without_seconds(result.rounds)
        assert rank["result"].best_round == result.best_round and rank["result"].stopped == result.stopped
        assert all(torch.equal(rank["codebooks"][k], codebooks[k]) for k in codebooks)
    assert not (tmp_path / "run" / "round_002").exists()

    assert main["failure"].startswith("ValueError") and "another config" in main["failure"]
    assert other["failure"].startswith("MainProcessFailed") and "another config" in other["failure"]
    assert main["cancelled"].cancelled and other["cancelled"].cancelled


def test_accelerate_launch_of_the_cli_writes_the_one_process_run_directory(one_process, tmp_path):
    config, prompts = tmp_path / "config.json", tmp_path / "prompts.json"
    config.write_text(json.dumps(small_config().to_dict()))
    prompts.write_text(json.dumps(small_prompts().to_dict()))
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1",
               OMP_NUM_THREADS="1")  # HF_HOME: no accelerate config file of this machine's user
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--cpu", "-m", "safecb", "run",
           "--out", str(tmp_path / "run"), "--config", str(config), "--prompts", str(prompts),
           "--threads", "1", "--no-oracle"]
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("| round | self_unsafe") == 1  # only the main process prints
    same_run_directory(tmp_path / "run", one_process[0])


if __name__ == "__main__":
    one_rank(Path(sys.argv[1]))
