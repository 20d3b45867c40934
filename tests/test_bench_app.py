"""`python -m ui bench` times like with like: its UI round, started through the app's HTTP API with the
Run tab's arguments by name, runs the same Safe-CB config as its `python -m safecb run` round."""

from __future__ import annotations

import subprocess

from gradio_client import Client

from db import Store
from safecb.engine import SafeCBConfig
from safecb.engine.rundir import RunDirectory
from ui import bench_app


def test_the_ui_round_and_the_cli_round_run_one_config(tmp_path):
    proc, ready_s = bench_app.start_app(tmp_path / "app", bench_app._free_port(), tmp_path / "app.log")
    try:
        port = proc.args[proc.args.index("--port") + 1]
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        client.predict(**bench_app.ui_round_form(seeds=1), api_name="/start_run")
        store = Store.open(f"sqlite:///{(tmp_path / 'app' / 'safecb.db').resolve()}")
        job = bench_app.wait_job(store, store.list_jobs(limit=1)[0].id, timeout=600)
        assert job.status == "finished", job.error
        ui_config = store.get_run(job.run_id).config["safecb"]
        assert len(store.list_rounds(job.run_id)) == 2  # round 0 (the unedited model) and the timed round
        store.close()
    finally:
        proc.terminate()
        proc.wait(30)
    assert ready_s > 0

    out = tmp_path / "cli-run"
    done = subprocess.run(bench_app.cli_round_command(out, seeds=1), cwd=bench_app.ROOT, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    cli_config = RunDirectory(out).read_config()["safecb"]
    assert ui_config == cli_config
    assert ui_config["target"] == SafeCBConfig().target
    assert ui_config["stop"]["max_rounds"] == 1 and ui_config["mining"]["seeds"] == [0]
