"""`python -m safecb ...`: train the toy assets, benchmark them."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .paths import ORACLE_DIR, TOY_MODEL_DIR


def _train_toy(args) -> int:
    from .models.train_toy import ToyTrainConfig, train_toy

    cfg = ToyTrainConfig(device=args.device, threads=args.threads, seed=args.seed)
    for name in ("vq_steps", "lm_steps", "n_images"):
        value = getattr(args, name)
        if value is not None:
            setattr(cfg, name, value)
    metrics = train_toy(cfg, args.out, log=lambda line: print(line, flush=True))
    print(json.dumps(metrics, indent=2))
    return 0


def _train_oracle(args) -> int:
    from .oracle import OracleConfig, train_oracle

    cfg = OracleConfig()
    if args.steps is not None:
        cfg.steps = args.steps
    metrics = train_oracle(cfg, args.out)
    print(json.dumps(metrics, indent=2, default=str))
    return 0


def _bench_model(args) -> int:
    from .bench_model import BenchModelConfig, format_table, run_bench_model

    cfg = BenchModelConfig(model_dir=args.model, oracle_dir=args.oracle, quick=args.quick)
    report = run_bench_model(cfg, progress=lambda line: print(line, file=sys.stderr, flush=True))
    print(format_table(report))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2))
        print(f"wrote {args.json}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m safecb", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a shipped asset").add_subparsers(dest="what", required=True)
    toy = train.add_parser("toy", help="the toy Janus (tokenizer + unified model)")
    toy.add_argument("--out", default=str(TOY_MODEL_DIR), help="output directory (HF layout)")
    toy.add_argument("--device", default="cpu", help="cpu or cuda")
    toy.add_argument("--threads", type=int, default=2, help="CPU threads")
    toy.add_argument("--seed", type=int, default=0)
    toy.add_argument("--vq-steps", dest="vq_steps", type=int, default=None)
    toy.add_argument("--lm-steps", dest="lm_steps", type=int, default=None)
    toy.add_argument("--n-images", dest="n_images", type=int, default=None)
    toy.set_defaults(func=_train_toy)
    oracle = train.add_parser("oracle", help="the independent concept detector")
    oracle.add_argument("--out", default=str(ORACLE_DIR))
    oracle.add_argument("--steps", type=int, default=None)
    oracle.set_defaults(func=_train_oracle)

    bench = sub.add_parser("bench", help="print measured figures").add_subparsers(dest="what", required=True)
    model = bench.add_parser("model", help="the shipped default: oracle, fidelity, safety, judge, speed")
    model.add_argument("--model", default=str(TOY_MODEL_DIR))
    model.add_argument("--oracle", default=str(ORACLE_DIR))
    model.add_argument("--json", default=None, help="also write the figures to this JSON file")
    model.add_argument("--quick", action="store_true", help="fewer samples (for smoke tests)")
    model.set_defaults(func=_bench_model)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)
