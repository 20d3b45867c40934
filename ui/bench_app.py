"""`python -m ui bench`: the studio's speed figures on the toy default with SQLite.

  * ready: seconds from `python app.py` to the first HTTP 200 (imports, store, model, UI);
  * compare: seconds for one Generate & compare request through the app's HTTP API (median);
  * UMAP: seconds to draw the Codebook map of the whole codebook (first call, then warm);
  * round: one Safe-CB round of the default config started from the UI (job claimed → finished,
    persistence included) against the same config through `python -m safecb run` (process start →
    exit), side by side in one run, and their ratio;
  * clients (`--clients N`): the app's resident memory before and after N Generate calls, each
    from a new session (as N browser tabs or API clients make), against Gradio's session capacity.
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
APP_SETTLE_S = 15.0  # the app warms UMAP up in the background for about 10 s after it starts
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


def round_target() -> str:
    """The edit target both timed rounds use: the default config's."""
    from safecb.engine import SafeCBConfig

    return SafeCBConfig().target


def ui_round_form(seeds: int) -> dict:
    """The Run tab's form for the timed UI round, by parameter name: the default config with one round
    and `seeds` seeds, as `cli_round_command` asks of `python -m safecb run`."""
    from safecb.engine import SafeCBConfig
    from ui.run_tab import TOY_PROMPTS

    default = SafeCBConfig()
    return dict(run_name="bench", run_target=round_target(), tau=default.mining.threshold, rounds=1,
                eps=default.stop.epsilon, wait=default.stop.patience, with_step2=default.fine_tune.enabled,
                seeds=seeds, with_vapi=default.vapi.enabled, prompt_source=TOY_PROMPTS, picked_categories=[],
                only_hard=False, prompt_count=24, my_job=None, another=True)


def cli_round_command(out: Path, seeds: int) -> list[str]:
    return [sys.executable, "-m", "safecb", "run", "--out", str(out), "--rounds", "1", "--seeds", str(seeds),
            "--target", round_target(), "--threads", str(os.cpu_count() or 1)]


def cli_round(out: Path, seeds: int) -> float:
    started = time.perf_counter()
    done = subprocess.run(cli_round_command(out, seeds), cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"safecb run failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - started


def run_bench(seeds: int = 8, compare_repeats: int = 5, round_pairs: int = 1) -> dict:
    """Rounds are timed in ABBA order (CLI, UI, UI, CLI, ...) so slow drift of a shared machine
    falls on both sides alike; the ratio is of the means."""
    from gradio_client import Client

    from db import Store
    from safecb.bench.umap import bench_umap
    from safecb.engine.rundir import RunDirectory

    figures: dict = {}
    cli_wall, cli_compute, ui_wall, ui_compute = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="safecb-bench-app-") as tmp:
        tmp = Path(tmp)

        def time_cli() -> None:
            out = tmp / f"cli-run-{len(cli_wall)}"
            print(f"CLI: one round, {seeds} seeds ...", file=sys.stderr, flush=True)
            cli_wall.append(cli_round(out, seeds))
            cli_compute.append(sum(m["seconds"] for m in RunDirectory(out).metrics()))

        def time_ui(client, store) -> int:
            print(f"app: one round from the Run tab, {seeds} seeds ...", file=sys.stderr, flush=True)
            client.predict(**ui_round_form(seeds), api_name="/start_run")
            job_id = store.list_jobs(limit=1)[0].id
            job = wait_job(store, job_id)
            if job.status != "finished":
                raise RuntimeError(f"the UI round ended {job.status}: {job.error}")
            ui_wall.append((job.finished_at - job.started_at).total_seconds())
            ui_compute.append(sum(r.metrics["seconds"] for r in store.list_rounds(job.run_id)))
            return job.run_id

        port = _free_port()
        print("app: starting ...", file=sys.stderr, flush=True)
        proc, figures["ready_s"] = start_app(tmp / "app", port, tmp / "app.log")
        try:
            client = Client(f"http://127.0.0.1:{port}/", verbose=False)
            store = Store.open(f"sqlite:///{(tmp / 'app' / 'safecb.db').resolve()}")
            time.sleep(APP_SETTLE_S)  # let the app's background UMAP warm-up finish before timing rounds
            run_id = None
            for k in range(2 * round_pairs):  # ABBA: cli, ui, ui, cli, cli, ui, ...
                if k % 4 in (0, 3):
                    time_cli()
                else:
                    run_id = time_ui(client, store)
            times = []
            for i in range(compare_repeats):
                t0 = time.perf_counter()
                client.predict(HARMFUL, i, 3.0, run_id, -1, 1, api_name="/compare")
                times.append(time.perf_counter() - t0)
            figures["compare_s_median"] = statistics.median(times)
            figures["compare_s_max"] = max(times)
            compare_times = times
            store.close()
        finally:
            proc.terminate()
            proc.wait(30)
    figures.update({
        "round_cli_s": statistics.mean(cli_wall), "round_cli_compute_s": statistics.mean(cli_compute),
        "round_ui_s": statistics.mean(ui_wall), "round_ui_compute_s": statistics.mean(ui_compute),
        "round_samples": {"cli_wall": cli_wall, "ui_wall": ui_wall, "cli_compute": cli_compute, "ui_compute": ui_compute},
    })
    figures["round_ratio_ui_over_cli"] = figures["round_ui_s"] / figures["round_cli_s"]
    timings = [{"measure": "ready", "side": "app", "sample": 0, "seconds": figures["ready_s"]}]
    timings += [{"measure": "compare", "side": "http", "sample": i, "seconds": t} for i, t in enumerate(compare_times)]
    for measure, side, values in (("round_wall", "cli", cli_wall), ("round_wall", "ui", ui_wall),
                                  ("round_compute", "cli", cli_compute), ("round_compute", "ui", ui_compute)):
        timings += [{"measure": measure, "side": side, "sample": i, "seconds": t} for i, t in enumerate(values)]
    figures["round_compute_ratio_ui_over_cli"] = figures["round_ui_compute_s"] / figures["round_cli_compute_s"]
    print("UMAP of the whole codebook, in fresh processes ...", file=sys.stderr, flush=True)
    umap = bench_umap()
    figures.update({
        "umap_rows": umap["rows"],
        "umap_first_map_cold_s": umap["cold"]["first_map_s"],  # a process that never drew a map
        "umap_warm_up_s": umap["warmed"]["warm_up_s"],  # what the app does in the background at start
        "umap_first_map_after_warm_up_s": umap["warmed"]["first_map_s"],
        "umap_next_map_s": umap["warmed"]["second_map_s"],
    })
    timings += [{"measure": "umap_first_map", "side": "cold", "sample": 0, "seconds": umap["cold"]["first_map_s"]},
                {"measure": "umap_warm_up", "side": "warmed", "sample": 0, "seconds": umap["warmed"]["warm_up_s"]},
                {"measure": "umap_first_map", "side": "warmed", "sample": 0, "seconds": umap["warmed"]["first_map_s"]},
                {"measure": "umap_next_map", "side": "warmed", "sample": 0, "seconds": umap["warmed"]["second_map_s"]}]
    figures["_rows"] = {"timings": timings, "umap": [{"rows": umap["rows"]}]}
    return figures


def bench_sessions(calls: int, warm_up: int = 20) -> dict:
    """Resident memory of a fresh app before and after `calls` Generate calls from new sessions;
    the first `warm_up` calls (also new sessions) are not counted, so lazy imports and caches that
    any first use fills are not charged to sessions."""
    import uuid

    import psutil
    from gradio_client import Client

    with tempfile.TemporaryDirectory(prefix="safecb-bench-sessions-") as tmp:
        port = _free_port()
        proc, _ = start_app(Path(tmp) / "app", port, Path(tmp) / "app.log")
        try:
            client = Client(f"http://127.0.0.1:{port}/", verbose=False)
            app_process = psutil.Process(proc.pid)

            def generate(i: int) -> None:
                client.session_hash = str(uuid.uuid4())  # a new session per call
                client.predict(HARMFUL, i, 3.0, api_name="/generate")

            for i in range(warm_up):
                generate(i)
            before = app_process.memory_info().rss
            started = time.perf_counter()
            for i in range(calls):
                generate(warm_up + i)
                if (i + 1) % 100 == 0:
                    print(f"sessions: {i + 1}/{calls}, RSS {app_process.memory_info().rss / 2**20:.0f} MiB",
                          file=sys.stderr, flush=True)
            after = app_process.memory_info().rss
            seconds = time.perf_counter() - started
        finally:
            proc.terminate()
            proc.wait(30)
    return {"session_calls": calls, "session_rss_before_mib": before / 2**20, "session_rss_after_mib": after / 2**20,
            "session_rss_growth_mib": (after - before) / 2**20, "session_calls_per_s": calls / seconds}


def format_sessions(f: dict) -> str:
    return "\n".join(["| figure | measured | target |", "|---|---|---|",
                      f"| app RSS before / after {f['session_calls']} Generate calls from new sessions (MiB) | "
                      f"{f['session_rss_before_mib']:.0f} / {f['session_rss_after_mib']:.0f} | |",
                      f"| growth (MiB) | {f['session_rss_growth_mib']:+.1f} | ≤ +100 |",
                      f"| calls per second | {f['session_calls_per_s']:.1f} | |"])


def format_figures(f: dict) -> str:
    def s(key):
        value = f.get(key)
        return f"{value:.2f}" if isinstance(value, float) else str(value)

    rows = [("app ready after `python app.py` (s)", s("ready_s"), "≤ 20"),
            ("Generate & compare over HTTP, median / max (s)", f"{s('compare_s_median')} / {s('compare_s_max')}", "≤ 2"),
            ("one round from the UI, job claimed → finished (s)", s("round_ui_s"), ""),
            ("the same round via `python -m safecb run`, process start → exit (s)", s("round_cli_s"), ""),
            ("UI / CLI ratio", s("round_ratio_ui_over_cli"), "≤ 1.5"),
            ("rounds 0–1 compute only (the rounds' own `seconds`), UI / CLI", f"{s('round_ui_compute_s')} / "
             f"{s('round_cli_compute_s')} = {s('round_compute_ratio_ui_over_cli')}", "")]
    rows += [(f"UMAP map of {f.get('umap_rows')} codebook rows: first in a cold process (s)", s("umap_first_map_cold_s"), ""),
             ("UMAP warm-up the app runs in the background at start (s)", s("umap_warm_up_s"), ""),
             ("UMAP map after the warm-up (s) (what the app's users get)", s("umap_first_map_after_warm_up_s"), "≤ 10"),
             ("UMAP next map (s)", s("umap_next_map_s"), "")]
    lines = ["| figure | measured | target |", "|---|---|---|"] + [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ui bench", description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8, help="seeds per harmful prompt in the timed round (default 8)")
    parser.add_argument("--pairs", type=int, default=2,
                        help="CLI/UI round pairs, timed in ABBA order (default 2: CLI, UI, UI, CLI)")
    parser.add_argument("--clients", "--sessions", dest="clients", type=int, default=0, metavar="N",
                        help="instead: the app's memory growth over N Generate calls, each from a new browser "
                             "client (a new Gradio session)")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    parser.add_argument("--results", default=None, metavar="DIR",
                        help="write every timed sample with the command, config, versions and machine here "
                             "(e.g. results/app)")
    args = parser.parse_args(argv)
    if args.results and args.clients:
        parser.error("--results records the timing bench, not --clients")
    if args.clients < 0:
        parser.error(f"--clients must be 0 or more, got {args.clients}")
    if args.clients:
        figures = bench_sessions(args.clients)
        print(format_sessions(figures))
    else:
        started = time.time()
        figures = run_bench(args.seeds, round_pairs=args.pairs)
        rows = figures.pop("_rows")
        print(format_figures(figures))
        if args.results:
            from safecb.evidence import write_evidence

            config = {"seeds": args.seeds, "pairs": args.pairs, "compare_repeats": 5, "settle_s": APP_SETTLE_S,
                      "round_target": round_target(), "store": "sqlite"}
            command = " ".join(["python -m ui bench", *(sys.argv[1:] if argv is None else argv)])
            write_evidence(args.results, bench="app", command=command, config=config, tables=rows,
                           summary=figures, wall_seconds=time.time() - started)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0
