"""Safe-CB Studio: parse flags, load the backend, launch the UI.

    python app.py                                  # the shipped toy model on http://127.0.0.1:7860
    python app.py --model /models/Janus-Pro-1B     # a real Janus-Pro from a local directory (HF layout)
    python app.py --host 0.0.0.0 --auth me:secret  # reachable from other machines: needs a password
    python app.py --share --auth me:secret         # a public Gradio link: needs a password
    python app.py --db-url postgresql://u@db/safecb --no-runner   # jobs run by `python -m jobs worker`
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
import sys
from pathlib import Path

# Before torch is imported: OpenMP threads sleep instead of spinning while they wait (see safecb/__main__.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from safecb.eval.nudenet import ORACLE_NAMES  # noqa: E402
from safecb.paths import TOY_MODEL_DIR  # noqa: E402


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name other than localhost
        return False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python app.py", description="Safe-CB Studio web app")
    parser.add_argument("--model", default=str(TOY_MODEL_DIR),
                        help="Janus model directory in the Hugging Face layout (default: the shipped toy)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                        help="where the model runs (auto: cuda when available)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (default 0: torch's own choice, all cores; rounds use them)")
    parser.add_argument("--data-dir", default="artifacts",
                        help="where the SQLite store and run directories live (default: artifacts/)")
    parser.add_argument("--db-url", default=None,
                        help="store URL, e.g. postgresql://user@host/db (default: $SAFECB_DB_URL, else "
                             "SQLite in --data-dir)")
    parser.add_argument("--oracle", default=None,
                        help="evaluation-only oracle for runs: 'toys' (both toy judges), 'toy', 'toy-shape', 'nudenet', "
                             "'open_nsfw', 'real' (both) or a toy-oracle directory (default: 'toys' for the toy model, "
                             "none for other models)")
    parser.add_argument("--i2p", default=os.environ.get("SAFECB_I2P"), metavar="CSV",
                        help="the I2P prompt CSV runs may draw their harmful prompts from (default: $SAFECB_I2P; "
                             "without it runs use the toy world's prompts)")
    parser.add_argument("--no-runner", action="store_true",
                        help="do not run jobs in this process; a `python -m jobs worker` on the same store does")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1; any other needs --auth)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--share", action="store_true", help="also open a public Gradio link (needs --auth)")
    parser.add_argument("--auth", default=None, metavar="USER:PASSWORD",
                        help="require this login; mandatory with --share or a non-loopback --host")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and check the flags; refuses (exit 2, with a message) anything that would expose the app
    without a password. `args.auth` becomes a (user, password) tuple or None."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 1 <= args.port <= 65535:
        parser.error(f"--port must be in 1..65535, got {args.port}")
    if args.threads < 0:
        parser.error(f"--threads must be 0 (torch's choice) or more, got {args.threads}")
    if ":" in args.host:  # Gradio's launch builds http://HOST:PORT, which an IPv6 address breaks
        parser.error(f"--host {args.host}: IPv6 addresses are not supported; use an IPv4 address or a host name "
                     "(e.g. 127.0.0.1 or localhost)")
    if args.oracle and args.oracle not in ORACLE_NAMES and not os.path.isdir(args.oracle):
        parser.error(f"--oracle must be one of {', '.join(ORACLE_NAMES)} or a toy-oracle directory, "
                     f"got {args.oracle!r}")
    if args.i2p and not os.path.isfile(args.i2p):
        parser.error(f"--i2p {args.i2p}: no such file (the I2P CSV, e.g. unsafe-prompts4703.csv)")
    if args.auth is not None:
        user, sep, password = args.auth.partition(":")
        if not sep or not user or not password:
            parser.error("--auth must look like USER:PASSWORD, both non-empty")
        args.auth = (user, password)
    if args.share and args.auth is None:
        parser.error("--share puts the app on a public URL; refusing without --auth USER:PASSWORD")
    if not is_loopback(args.host) and args.auth is None:
        parser.error(f"--host {args.host} makes the app reachable from other machines; "
                     "refusing without --auth USER:PASSWORD (or use --host 127.0.0.1)")
    return args


MAX_UPLOAD = "600mb"  # Gradio refuses bigger uploads before storing them (codebook imports stop at 512 MB)
SESSION_CAPACITY = 128  # sessions whose state Gradio keeps in memory (~0.4 MB each); the oldest are dropped past it
SERVED_FOLDERS = ("runs", "exports")  # of the data dir: run images and exports; the store beside them is not served


def port_in_use(host: str, port: int) -> bool:
    """True when another process already listens on host:port (checked before the model loads)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def ready_data_dir(path: str) -> tuple[Path | None, str]:
    """The data directory, created and checked writable: (path, "") or (None, why not)."""
    from safecb.io import unwritable_reason

    data_dir = Path(path).expanduser().resolve()
    reason = unwritable_reason(data_dir)
    if reason:
        return None, f"--data-dir {path}: cannot create or write there ({reason})"
    return data_dir, ""


def launch_settings(args: argparse.Namespace, data_dir: Path, store) -> dict:
    """What `launch()` gets: the bind address, the login (its limits kept in `store`), the files
    Gradio may serve (the data directory's runs and exports folders, wherever it is, never the store;
    all but pictures as downloads, `ui/file_headers.py`), the upload limit and how many sessions'
    state it keeps in memory."""
    from starlette.middleware import Middleware

    from db.logins import LoginLog
    from ui.auth import ClientAddressMiddleware, LimitedLogin
    from ui.file_headers import DownloadOnlyFiles

    return {"server_name": args.host, "server_port": args.port, "share": args.share,
            "auth": LimitedLogin(*args.auth, LoginLog(store)) if args.auth else None,
            "allowed_paths": [str(data_dir / folder) for folder in SERVED_FOLDERS], "max_file_size": MAX_UPLOAD,
            "state_session_capacity": SESSION_CAPACITY,
            "app_kwargs": {"middleware": [Middleware(ClientAddressMiddleware), Middleware(DownloadOnlyFiles)]}}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Checks that need no model come first, so a mistake costs no model load.
    if port_in_use(args.host, args.port):
        print(f"error: port {args.port} on {args.host} is already in use; pick another with --port",
              file=sys.stderr)
        return 1
    data_dir, problem = ready_data_dir(args.data_dir)
    if data_dir is None:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    # Heavy imports after the flags are checked, so --help and refusals are instant.
    import torch

    from db import Store, StoreError
    from jobs.runner import JobRunner, RunnerConfig, default_oracle
    from safecb.models.backend import JanusBackend, ModelLoadError
    from ui import CSS, HEAD, QUEUE_MAX, THEME, Services, build_demo

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda, but no CUDA GPU is available here", file=sys.stderr)
        return 1
    url = args.db_url or os.environ.get("SAFECB_DB_URL") or f"sqlite:///{(data_dir / 'safecb.db').resolve()}"
    try:
        store = Store.open(url)
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"loading {args.model} ...", flush=True)
    device = None if args.device == "auto" else args.device
    try:
        backend = JanusBackend.load(args.model, device=device)
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    from safecb.viz import warm_up_in_background

    warm_up_in_background()  # compiles UMAP's numba code now, so the first Codebook map is quick
    runner = None
    if not args.no_runner:
        oracle = default_oracle(args.model, args.oracle)
        runner = JobRunner(store, RunnerConfig(args.model, data_dir / "runs", device, oracle))
        failed = runner.fail_lost_jobs()  # e.g. this app's previous life, killed while a job ran
        if failed:
            print(f"marked job(s) {failed} failed: no live worker held them", flush=True)
        runner.start()
    services = Services(backend=backend, store=store, runs_root=data_dir / "runs", runner=runner,
                        i2p_path=Path(args.i2p).resolve() if args.i2p else None)
    demo = build_demo(services)
    demo.queue(default_concurrency_limit=2, max_size=QUEUE_MAX)
    demo.launch(css=CSS, head=HEAD, theme=THEME, **launch_settings(args, data_dir, store))
    return 0


if __name__ == "__main__":
    sys.exit(main())
