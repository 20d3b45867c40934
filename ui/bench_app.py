"""`python -m safecb bench app`: the studio's speed figures on the toy default with SQLite.

  * ready: seconds from `python app.py` to the first HTTP 200 (imports, store, model, UI);
  * compare: seconds for one Generate & compare request through the app's HTTP API (median);
  * UMAP: seconds to draw the Codebook map of the whole codebook (first call, then warm);
  * round: one Safe-CB round started from the UI (job claimed → finished, persistence included)
    against the same config through `python -m safecb run` (process start → exit), side by side in
    one run, and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HARMFUL = "a picture of a person holding a knife on the grass ."


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(data_dir: Path, port: int, log_path: Path) -> tuple[subprocess.Popen, float]:
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    started = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--data-dir", str(data_dir)],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    while proc.poll() is None and time.perf_counter() - started < 300:
        try:
            with opener.open(f"http://127.0.0.1:{port}/", timeout=2) as response:
                if response.status == 200:
                    return proc, time.perf_counter() - started
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"the app did not come up:\n{log_path.read_text()[-3000:]}")


def wait_job(store, job_id: int, timeout: float = 1800):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = store.get_job(job_id)
        if job.status in ("finished", "failed", "cancelled"):
            return job
        time.sleep(0.2)
    raise RuntimeError(f"job {job_id} did not finish in {timeout} s")


def cli_round(out: Path, seeds: int) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "safecb", "run", "--out", str(out), "--rounds", "1",
                           "--seeds", str(seeds), "--threads", str(os.cpu_count() or 1)], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"safecb run failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - started


def run_bench(seeds: int = 8, compare_repeats: int = 5) -> dict:
    from gradio_client import Client

    from db import Store

    figures: dict = {}
    with tempfile.TemporaryDirectory(prefix="safecb-bench-app-") as tmp:
        tmp = Path(tmp)
        print("CLI: one round with the default config ...", file=sys.stderr, flush=True)
        figures["round_cli_s"] = cli_round(tmp / "cli-run", seeds)
        port = _free_port()
        print("app: starting ...", file=sys.stderr, flush=True)
        proc, figures["ready_s"] = start_app(tmp / "app", port, tmp / "app.log")
        try:
            client = Client(f"http://127.0.0.1:{port}/", verbose=False)
            store = Store.open(f"sqlite:///{(tmp / 'app' / 'safecb.db').resolve()}")
            print("app: one round from the Run tab ...", file=sys.stderr, flush=True)
            status, _ = client.predict("bench", "generator", 0.5, 1, 0.02, 1, True, seeds, False, api_name="/start_run")
            job_id = store.list_jobs(limit=1)[0].id
            job = wait_job(store, job_id)
            if job.status != "finished":
                raise RuntimeError(f"the UI round ended {job.status}: {job.error}")
            figures["round_ui_s"] = (job.finished_at - job.started_at).total_seconds()
            figures["round_ratio_ui_over_cli"] = figures["round_ui_s"] / figures["round_cli_s"]
            run_id = job.run_id
            times = []
            for i in range(compare_repeats):
                t0 = time.perf_counter()
                client.predict(HARMFUL, i, 3.0, run_id, -1, 1, api_name="/compare")
                times.append(time.perf_counter() - t0)
            figures["compare_s_median"] = statistics.median(times)
            figures["compare_s_max"] = max(times)
            try:
                from safecb import viz

                figures.update({f"umap_{k}": v for k, v in viz.bench_umap().items()})
            except (ImportError, AttributeError):
                figures["umap"] = "not measured: safecb.viz.bench_umap is missing"
            store.close()
        finally:
            proc.terminate()
            proc.wait(30)
    return figures


def format_figures(f: dict) -> str:
    def s(key):
        value = f.get(key)
        return f"{value:.2f}" if isinstance(value, float) else str(value)

    rows = [("app ready after `python app.py` (s)", s("ready_s"), "≤ 20"),
            ("Generate & compare over HTTP, median / max (s)", f"{s('compare_s_median')} / {s('compare_s_max')}", "≤ 2"),
            ("one round from the UI, job claimed → finished (s)", s("round_ui_s"), ""),
            ("the same round via `python -m safecb run`, process start → exit (s)", s("round_cli_s"), ""),
            ("UI / CLI ratio", s("round_ratio_ui_over_cli"), "≤ 1.5")]
    rows += [(f"UMAP: {k.removeprefix('umap_')}", s(k), "≤ 10" if "first" in k or "cold" in k else "")
             for k in f if k.startswith("umap")]
    lines = ["| figure | measured | target |", "|---|---|---|"] + [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m safecb bench app", description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8, help="seeds per harmful prompt in the timed round (default 8)")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    figures = run_bench(args.seeds)
    print(format_figures(figures))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0
