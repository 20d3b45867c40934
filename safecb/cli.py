"""`python -m safecb ...`: train the toy assets, benchmark them."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Callable

from .paths import ORACLE_DIR, TOY_MODEL_DIR


def _train_toy(args) -> int:
    from .models.train_toy import ToyTrainConfig, train_toy

    cfg = ToyTrainConfig(device=args.device, threads=args.threads, seed=args.seed)
    for name in ("vq_steps", "lm_steps", "n_images", "vq_semantic"):
        value = getattr(args, name)
        if value is not None:
            setattr(cfg, name, value)
    metrics = train_toy(cfg, args.out, log=lambda line: print(line, flush=True))
    print(json.dumps(metrics, indent=2))
    return 0


def _train_polish(args) -> int:
    from .models.train_toy import ToyTrainConfig, polish_checkpoint

    cfg = ToyTrainConfig(device=args.device, threads=args.threads, seed=args.seed, polish_steps=args.steps,
                         polish_lr=args.lr)
    if args.n_images is not None:
        cfg.n_images = args.n_images
    metrics = polish_checkpoint(args.model, cfg, log=lambda line: print(line, flush=True))
    print(json.dumps(metrics, indent=2))
    return 0


def _train_lm(args) -> int:
    from .models.train_toy import ToyTrainConfig, retrain_lm

    cfg = ToyTrainConfig(device=args.device, threads=args.threads, seed=args.seed)
    for name in ("lm_steps", "n_images", "contrast_images"):
        value = getattr(args, name)
        if value is not None:
            setattr(cfg, name, value)
    cfg.und_fresh = args.und_fresh
    metrics = retrain_lm(args.model, cfg, log=lambda line: print(line, flush=True))
    print(json.dumps(metrics, indent=2))
    return 0


def _train_tower(args) -> int:
    from .models.train_tower import TowerTuneConfig, tune_tower_checkpoint

    cfg = TowerTuneConfig(threads=args.threads, seed=args.seed)
    for name in ("steps", "lr", "palette_prob", "left_out_share", "presence_weight", "presence_steps", "patch_weight"):
        value = getattr(args, name)
        if value is not None:
            setattr(cfg, name, value)
    metrics = tune_tower_checkpoint(args.model, cfg, device=args.device, log=lambda line: print(line, flush=True))
    print(json.dumps(metrics, indent=2))
    return 0


def _labelset_generate(args) -> int:
    from .bench.labelset import LabelSetConfig, generate_labelset

    given = {"image_seed": args.seed} if args.seed is not None else {}
    if args.methods:
        given["methods"] = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    cfg = LabelSetConfig(model_dir=args.model, **given)
    if args.quick:
        cfg.methods = ("none", "blocklist")
        cfg.grid.n_prompts, cfg.grid.seeds_per_prompt, cfg.n_benign_images = 2, 1, 1
    generate_labelset(cfg, args.out, log=lambda line: print(line, flush=True), append=args.append)
    return 0


def _bench_replacement(args) -> int:
    """What a run's best round (or --round) draws for harmful prompts, beside the unedited model."""
    import torch

    from .bench.replacement import ReplacementSheetConfig, run_bench_replacement
    from .engine import SafeCBConfig, apply_run
    from .engine.rundir import RunDirectory
    from .eval.toy_oracle import Oracle
    from .models.backend import JanusBackend
    from .paths import SHAPE_JUDGE_DIR

    started = time.time()
    torch.set_num_threads(args.threads)
    backend = JanusBackend.load(args.model)
    unedited = backend.codebooks()
    index = apply_run(backend, args.run, args.round)
    edited = backend.codebooks()
    backend.set_codebooks(unedited)
    run_config = RunDirectory(args.run).read_config()["safecb"]
    sampler = SafeCBConfig.from_dict(run_config).sampler
    cfg = ReplacementSheetConfig()
    sheet, report = run_bench_replacement(backend, edited, Oracle.load(args.oracle), Oracle.load(SHAPE_JUDGE_DIR),
                                          cfg, sampler=sampler, run_dir=args.run, kept=index)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out)
    report = {"run": str(args.run), "round": index, **report}
    config = {"run": str(args.run), "round": index, "model_dir": args.model, "oracle_dir": args.oracle,
              "second_judge_dir": str(SHAPE_JUDGE_DIR), "sheet": cfg, "run_safecb": run_config}
    _save_evidence(args, "replacement", config, report, started)
    print(json.dumps(report))
    return 0


def _labelset_sheet(args) -> int:
    from .eval.labelset import disagreement_sheet, load_labelset
    from .eval.toy_oracle import Oracle
    from .models.backend import JanusBackend
    from .paths import ORACLE_DIR, SHAPE_JUDGE_DIR

    import numpy as np

    items = load_labelset(args.dir) if args.dir else load_labelset()
    images = np.stack([it.image for it in items])
    backend = JanusBackend.load(args.model, device="cpu")
    flags = {"oracle": Oracle.load(ORACLE_DIR).unsafe(images), "second judge": Oracle.load(SHAPE_JUDGE_DIR).unsafe(images),
             "self-judge": backend.judge(images) >= 0.5}
    disagreement_sheet(items, flags).save(args.out)
    print(f"wrote {args.out}")
    return 0


def _train_oracle(args) -> int:
    from .eval.toy_oracle import OracleConfig, shape_judge_config, train_oracle
    from .paths import ORACLE_DIR, SHAPE_JUDGE_DIR

    cfg = shape_judge_config() if args.judge == "shape" else OracleConfig()
    if args.steps is not None:
        cfg.steps = args.steps
    out = args.out or (SHAPE_JUDGE_DIR if args.judge == "shape" else ORACLE_DIR)
    metrics = train_oracle(cfg, out, threads=args.threads)
    print(json.dumps(metrics, indent=2, default=str))
    return 0


def _report(args) -> int:
    from .evidence import RESULTS_DIR, EvidenceError
    from .report import compute, doc_paths, docs

    started = time.time()
    try:
        figures = compute(Path(args.results) if args.results else RESULTS_DIR)
    except EvidenceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    paths = doc_paths()
    if args.show:
        for name, text in figures.items():
            print(f"== {name}\n{text}")
    if args.write:
        for path in docs.write(paths, figures):
            print(f"wrote {path}")
    problems = docs.check(paths, figures)
    marked = docs.used(paths)
    for problem in problems:
        print(problem.describe(), file=sys.stderr)
    print(f"{len(figures)} figures from the result rows in {time.time() - started:.1f} s; "
          f"{len(marked)} marked in the docs, {len(problems)} differ; not in any doc: {len(set(figures) - marked)}")
    return 1 if problems else 0


def _save_evidence(args, bench: str, config, report: dict, started: float) -> None:
    """With --results DIR: the rows the bench left under report["_rows"] (always removed from
    `report`), with its command, config, seeds, versions and machine (safecb/evidence.py)."""
    rows = report.pop("_rows", None)
    folder = getattr(args, "results", None)
    if not folder:
        return
    if not rows:
        raise RuntimeError(f"bench {bench} left no result rows to write")
    from .evidence import command_line, write_evidence

    out = write_evidence(folder, bench=bench, command=command_line(["safecb", *args.argv]), config=config, tables=rows,
                         summary=report, wall_seconds=time.time() - started)
    print(f"wrote the result rows to {out}", file=sys.stderr)


def _print_and_save(table: str, figures: dict, json_path: str | None) -> int:
    """A bench's output: the Markdown table on stdout and, with --json, the figures as JSON with the
    table next to it (same name, .md)."""
    print(table)
    if json_path:
        path = Path(json_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(figures, indent=2))
        path.with_suffix(".md").write_text(table + "\n")
        print(f"wrote {path} and {path.with_suffix('.md')}")
    return 0


def _bench_model(args) -> int:
    from .bench.model import BenchModelConfig, format_table, run_bench_model

    cfg = BenchModelConfig(model_dir=args.model, oracle_dir=args.oracle, quick=args.quick)
    started = time.time()
    report = run_bench_model(cfg, progress=lambda line: print(line, file=sys.stderr, flush=True))
    _save_evidence(args, "model", cfg, report, started)
    return _print_and_save(format_table(report), report, args.json)


def _load_backend(args):
    from .models.backend import JanusBackend

    return JanusBackend.load(args.model, device=args.device)


def _run(args) -> int:
    """Run (or resume) Safe-CB rounds into a run directory, with progress bars and a table.

    Under `accelerate launch` (or torchrun) the processes share every measurement and the main
    one does the rest, prints and writes (docs/distributed.md)."""
    import torch
    from tqdm import tqdm

    from .distributed import DistributedContext
    from .engine import SafeCBConfig, run_safecb, toy_round_prompts
    from .engine.driver import MainProcessFailed
    from .engine.prompts import RoundPrompts

    ctx = DistributedContext.from_environment()
    torch.set_num_threads(args.threads)
    config = SafeCBConfig.from_dict(json.loads(Path(args.config).read_text())) if args.config else SafeCBConfig()
    flags = {  # the command line's settings over the config file's; None leaves the file's value
        "target": args.target, "stop.max_rounds": args.rounds, "stop.epsilon": args.epsilon,
        "stop.patience": args.patience, "mining.threshold": args.threshold,
        "mining.seeds": None if args.seeds is None else list(range(args.seeds)),
        "fine_tune.enabled": False if args.no_step2 else None, "vapi.enabled": True if args.vapi else None,
    }
    config = config.override({key: value for key, value in flags.items() if value is not None})
    prompts = RoundPrompts.from_dict(json.loads(Path(args.prompts).read_text())) if args.prompts else toy_round_prompts()
    if ctx.distributed:
        args.device = str(ctx.device)  # the device the launcher gave this process
    backend = _load_backend(args)
    config.validate(backend.codebook_size)
    if args.i2p:
        prompts = _i2p_prompts(args, backend, ctx)
    prompts.validate()
    annotate = None
    if args.oracle and not args.no_oracle and ctx.is_main:
        from .eval.field_units import write_provenance
        from .eval.nudenet import load_oracle
        from .eval.protocol import annotator_for

        from .eval.judges import panel_members
        from .eval.toy_oracle import Oracle

        if args.i2p and args.oracle in ("toys", "toy", "toy-shape", str(ORACLE_DIR)):
            oracle = None  # the toy judges know nothing of real prompts; ask for a real one explicitly
        else:
            oracle = load_oracle(args.oracle, threads=args.threads)
        if oracle is not None:
            annotate = annotator_for(oracle, prompts, len(config.mining.benign_seeds), backend,
                                     backend.get_codebook("decoder"))  # the checkpoint's own, before any round
            if not isinstance(panel_members(oracle)[0], Oracle):  # real-image judges: figures in the field's units
                write_provenance(args.out, oracle, config, backend.source, prompts)
    bars: dict[str, tqdm] = {}

    def on_event(event) -> None:
        if event.kind == "stage":
            key = f"round {event.round}: {event.stage}"
            bar = bars.get(key)
            if bar is None:
                for old in bars.values():
                    old.close()
                bars.clear()
                bar = bars[key] = tqdm(total=100, desc=key, leave=False, file=sys.stderr)
            bar.n = int(round(event.fraction * 100))
            bar.refresh()
        else:
            for old in bars.values():
                old.close()
            bars.clear()
            print(event.message, file=sys.stderr, flush=True)

    try:
        result = run_safecb(backend, prompts, config, run_dir=args.out, on_event=on_event, annotate=annotate,
                            distributed=ctx)
    except KeyboardInterrupt:
        if ctx.is_main:
            print(f"interrupted; finished rounds are in {args.out}; run the same command to resume", file=sys.stderr)
        return 130
    except MainProcessFailed:
        return 1  # the main process reports why
    finally:
        ctx.close()
    if not ctx.is_main:
        return 0
    print(format_rounds(result.rounds))
    print(f"best round {result.best_round}; stopped: {result.stopped}; {result.seconds:.0f} s; run directory {args.out}")
    if annotate is not None and not annotate.measures_fidelity:  # real-image judges: figures in the field's units
        from .eval.field_units import write_field_units

        print(write_field_units(args.out, result.rounds, result.best_round))
    return 0


def _i2p_prompts(args, backend, ctx):
    """Harmful prompts from the I2P CSV with rewrites the model proposes itself. The set is saved
    in the run directory on first use, so a resumed run (or every process of a launch) reuses it."""
    from .prompts.i2p import I2PConfig
    from .prompts.rounds import I2P_PROMPTS_FILE, i2p_prompt_set, saved_i2p_prompts

    saved = Path(args.out) / I2P_PROMPTS_FILE
    if not saved.exists() and ctx.is_main:
        categories = tuple(c for spec in args.category for c in spec.split(",") if c.strip())
        i2p_prompt_set(backend, I2PConfig(args.i2p, categories, args.hard_only, args.limit), Path(args.out))
        sources = json.loads(saved.read_text())["report"]["rewrite_sources"]
        print(f"I2P: {sum(sources.values())} harmful prompts; rewrites by " +
              ", ".join(f"{k} {v}" for k, v in sources.items()), file=sys.stderr)
    if ctx.distributed:
        ctx.broadcast_object(None)  # a barrier: the main process has written the set
    return saved_i2p_prompts(Path(args.out))


def format_rounds(rounds: list[dict]) -> str:
    cols = ["round", "self_unsafe", "oracle_unsafe_train", "adherence", "benign_change", "pairs", "space_rank",
            "accepted", "seconds"]
    lines = ["| " + " | ".join(cols) + " |", "|---" * len(cols) + "|"]
    for m in rounds:
        row = dict(m, **m.get("annotations", {}))
        cells = []
        for c in cols:
            v = row.get(c, "")
            v = v["value"] if isinstance(v, dict) else v  # oracle figures carry their interval and n
            cells.append(f"{v:.3f}" if isinstance(v, float) else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _set_changes(items: list[str]) -> dict:
    """`--set KEY=VALUE` flags as config changes; VALUE is JSON when it parses, else a string."""
    changes = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set takes KEY=VALUE, got {item!r}")
        changes[key] = _parse_value(text)
    return changes


def _bench_safety(args) -> int:
    import torch

    from .bench.safety import DEFAULT_METHODS, BenchSafetyConfig, flat_json, format_table, run_bench_safety
    from .eval.protocol import BENCH_SEED_START

    torch.set_num_threads(args.threads)
    methods = tuple(args.methods.split(",")) if args.methods else DEFAULT_METHODS
    seed_start = BENCH_SEED_START if args.seed_start is None else args.seed_start
    cfg = BenchSafetyConfig(model_dir=args.model, oracle_dir=args.oracle, methods=methods, quick=args.quick,
                            eval_seed_start=seed_start, workers=args.workers)
    grid_flags = {"n_prompts": args.broad_prompts, "n_benign": args.broad_benign,
                  "seeds_per_prompt": args.broad_seeds}
    cfg.broad = dataclasses.replace(cfg.broad, seed_start=seed_start, half=args.half,
                                    **{k: v for k, v in grid_flags.items() if v is not None})
    cfg.safecb = cfg.safecb.override(_set_changes(args.set))
    started = time.time()
    report = run_bench_safety(cfg, log=lambda line: print(line, file=sys.stderr, flush=True))
    _save_evidence(args, "safety", cfg, report, started)
    return _print_and_save(format_table(report), flat_json(report), args.json)


def _vapi(args) -> int:
    """Standalone VAπ post-training on toy-world renders into a checkpoint directory (resumable)."""
    import torch
    from tqdm import tqdm

    from .vapi.config import VapiConfig
    from .vapi.data import toy_data
    from .vapi.train import train_vapi

    torch.set_num_threads(args.threads)
    cfg = VapiConfig.from_dict(json.loads(Path(args.config).read_text())) if args.config else VapiConfig()
    flags = {name: getattr(args, name) for name in ("method", "steps", "lr", "batch", "group", "noise", "seed")}
    cfg = cfg.override({name: value for name, value in flags.items() if value is not None})
    backend = _load_backend(args)
    data = toy_data(backend, args.images, seed=cfg.seed)
    bar = tqdm(total=cfg.steps, desc=f"VAπ ({cfg.method})", file=sys.stderr)

    def progress(step: int, total: int, figures: dict) -> None:
        bar.n = step
        bar.set_postfix(reward=f"{figures['reward']:.4f}", ce=f"{figures['ce']:.3f}")

    try:
        result = train_vapi(backend, data, cfg, out_dir=args.out, progress=progress)
    except KeyboardInterrupt:
        print(f"interrupted; the last checkpoint is in {args.out}; run the same command to resume", file=sys.stderr)
        return 130
    finally:
        bar.close()
    model_dir = Path(args.out) / "model"
    backend.model.save_pretrained(model_dir, safe_serialization=True)
    (backend.processor or backend.tokenizer).save_pretrained(model_dir)
    rewards = [h["reward"] for h in result.history]
    first = f"{rewards[0]:.4f}" if rewards else "-"
    last = f"{sum(rewards[-10:]) / len(rewards[-10:]):.4f}" if rewards else "-"
    print(f"VAπ ({cfg.method}): {result.steps_done}/{cfg.steps} steps; training reward {first} at step 1, "
          f"{last} over the last 10; {result.seconds:.0f} s in this call")
    print(f"checkpoint in {args.out}; post-trained model (HF layout) in {model_dir}")
    return 0


def _parse_value(text: str):
    """A command-line value: a JSON number, boolean or list when it reads as one, else the text itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _bench_attack(args) -> int:
    import torch

    from .bench.attack import BenchAttackConfig, format_table, run_bench_attack

    torch.set_num_threads(args.threads)
    cfg = BenchAttackConfig(model_dir=args.model, oracle_dir=args.oracle, out_dir=args.out, quick=args.quick,
                            methods=tuple(args.methods.split(",")) if args.methods else None, adapt=not args.no_adapt,
                            workers=args.workers)
    if args.instances is not None:
        cfg.attack = dataclasses.replace(cfg.attack, instances=args.instances)
    if args.attacks:
        cfg.attack = dataclasses.replace(cfg.attack, attacks=tuple(args.attacks.split(",")))
    if args.seed_start is not None:  # every attack seed moves with it: targets +300, search +400, validation +500
        cfg.attack = dataclasses.replace(cfg.attack, target_seed_start=args.seed_start + 300,
                                         search_seed_start=args.seed_start + 400,
                                         validation_seed_start=args.seed_start + 500)
    if args.soft_steps is not None:
        cfg.attack = dataclasses.replace(cfg.attack, soft=dataclasses.replace(cfg.attack.soft, steps=args.soft_steps))
    started = time.time()
    report = run_bench_attack(cfg, log=lambda line: print(line, file=sys.stderr, flush=True))
    _save_evidence(args, "attack", cfg, report, started)
    return _print_and_save(format_table(report), report, args.json)


def _bench_vapi(args) -> int:
    import torch

    from .bench.vapi import VARIANTS, BenchVapiConfig, flat_json, format_table, run_bench_vapi

    torch.set_num_threads(args.threads)
    variants = tuple(args.variants.split(",")) if args.variants else tuple(VARIANTS)
    cfg = BenchVapiConfig(model_dir=args.model, oracle_dir=args.oracle, variants=variants,
                          safecb=not args.no_safecb, quick=args.quick, eval_seed_start=args.eval_seed_start,
                          **({"eval_seeds": args.eval_seeds} if args.eval_seeds is not None else {}))
    changes = {name: getattr(args, name) for name in ("steps", "lr", "noise")  # schedule overrides, for sweeps
               if getattr(args, name) is not None}
    for item in args.set:  # any other VapiConfig field, e.g. --set credit=image
        key, sep, text = item.partition("=")
        if not sep or key not in cfg.vapi.__dataclass_fields__:
            raise ValueError(f"--set takes KEY=VALUE with a VapiConfig field as KEY, got {item!r}")
        changes[key] = _parse_value(text)
    cfg.vapi = cfg.vapi.override(changes)
    started = time.time()
    report = run_bench_vapi(cfg, log=lambda line: print(line, file=sys.stderr, flush=True))
    _save_evidence(args, "vapi", cfg, report, started)
    return _print_and_save(format_table(report), flat_json(report), args.json)


def _bench_speed(args) -> int:
    from .bench.speed import BenchSpeedConfig, format_table, run_bench_speed

    batches = tuple(int(b) for b in args.batches.split(",")) if args.batches else BenchSpeedConfig.batches
    cfg = BenchSpeedConfig(device=args.device, batches=batches, tokens=args.tokens, repeats=args.repeats,
                           threads=args.threads, quick=args.quick, compile_layers=args.compile_layers,
                           measure_round=args.measure_round, profile_batch=args.profile)
    started = time.time()
    report = run_bench_speed(cfg, log=lambda line: print(line, file=sys.stderr, flush=True))
    _save_evidence(args, "speed", cfg, report, started)
    return _print_and_save(format_table(report), report, args.json)


def _results_option(parser: argparse.ArgumentParser, example: str) -> None:
    """A bench's --results DIR: where its result rows go (safecb/evidence.py)."""
    parser.add_argument("--results", default=None, metavar="DIR",
                        help=f"write the result rows with their command, config, seeds and versions here "
                             f"(e.g. {example})")


def whole_number_at_least(least: int, what_least_means: str = "") -> Callable[[str], int]:
    """An argparse type: a whole number, `least` or more; the refusal names `least` (and what it
    means, e.g. " (torch's default)")."""

    def parse(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if number < least:
            raise argparse.ArgumentTypeError(f"must be {least}{what_least_means} or more, got {number}")
        return number

    return parse


thread_count = whole_number_at_least(1)  # argparse type of --threads: torch refuses fewer than 1


def _add_worker_flags(parser: argparse.ArgumentParser) -> None:
    """--threads and --workers of a bench that shares its methods among processes (`bench/workers.py`)."""
    parser.add_argument("--threads", type=thread_count, default=2, help="CPU threads in all, shared among the workers")
    parser.add_argument("--workers", type=thread_count, default=2,
                        help="processes the methods are shared among (default 2: on the toy model two "
                             "one-thread processes do more than one two-thread process)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m safecb", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a shipped asset").add_subparsers(dest="what", required=True)
    toy = train.add_parser("toy", help="the toy Janus (tokenizer + unified model)")
    toy.add_argument("--out", default=str(TOY_MODEL_DIR), help="output directory (HF layout)")
    toy.add_argument("--device", default="cpu", help="cpu or cuda")
    toy.add_argument("--threads", type=thread_count, default=2, help="CPU threads")
    toy.add_argument("--seed", type=int, default=0)
    toy.add_argument("--vq-steps", dest="vq_steps", type=int, default=None)
    toy.add_argument("--lm-steps", dest="lm_steps", type=int, default=None)
    toy.add_argument("--n-images", dest="n_images", type=int, default=None)
    toy.add_argument("--vq-semantic", dest="vq_semantic", type=float, default=None,
                     help="weight of the tokenizer's patch-label loss (default 1; 0: reconstruction only, "
                          "so harmful and benign content share codes)")
    toy.set_defaults(func=_train_toy)
    polish = train.add_parser("polish", help="more decoder-only polish for a trained toy, in place (tokens unchanged)")
    polish.add_argument("--model", default=str(TOY_MODEL_DIR), help="a checkpoint written by `train toy`")
    polish.add_argument("--steps", type=int, default=2500, help="decoder steps (default: the shipped model's extra polish)")
    polish.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (cosine decay)")
    polish.add_argument("--device", default="cpu", help="cpu or cuda")
    polish.add_argument("--threads", type=thread_count, default=2, help="CPU threads")
    polish.add_argument("--seed", type=int, default=0, help="the scene stream (the training set of `train toy`)")
    polish.add_argument("--n-images", dest="n_images", type=int, default=None)
    polish.set_defaults(func=_train_polish)
    lm = train.add_parser("lm", help="the language model stage of a trained toy again, from scratch, in place "
                                     "(its tokenizer, so every visual token, unchanged)")
    lm.add_argument("--model", default=str(TOY_MODEL_DIR), help="a checkpoint written by `train toy`")
    lm.add_argument("--device", default="cpu", help="cpu or cuda")
    lm.add_argument("--threads", type=thread_count, default=2, help="CPU threads")
    lm.add_argument("--seed", type=int, default=0, help="the scene stream and initialisation (as `train toy`)")
    lm.add_argument("--lm-steps", dest="lm_steps", type=int, default=None)
    lm.add_argument("--n-images", dest="n_images", type=int, default=None)
    lm.add_argument("--contrast-images", dest="contrast_images", type=int, default=None,
                    help="understanding-only contrast scenes (default 0, as the shipped model)")
    lm.add_argument("--und-fresh", dest="und_fresh", action="store_true",
                    help="understanding examples rendered fresh at every step (palette changes, weapon-less scenes)")
    lm.set_defaults(func=_train_lm)
    tower = train.add_parser("tower", help="the understanding tower of a trained toy alone, in place (what the "
                                           "model draws is unchanged; its own judge and captions learn shape)")
    tower.add_argument("--model", default=str(TOY_MODEL_DIR), help="a checkpoint written by `train toy`")
    tower.add_argument("--device", default="cpu", help="cpu or cuda")
    tower.add_argument("--threads", type=thread_count, default=2, help="CPU threads")
    tower.add_argument("--seed", type=int, default=0, help="the scene stream")
    tower.add_argument("--steps", type=int, default=None, help="optimisation steps (default 3000)")
    tower.add_argument("--lr", type=float, default=None, help="peak learning rate (default 5e-4)")
    tower.add_argument("--palette-prob", dest="palette_prob", type=float, default=None,
                       help="share of liquid-free images whose palette is changed (default 0.5)")
    tower.add_argument("--left-out-share", dest="left_out_share", type=float, default=None,
                       help="share of the safe safety examples drawn with the harmful object left out (default 0.5)")
    tower.add_argument("--presence-weight", dest="presence_weight", type=float, default=None,
                       help="weight of the shape signal beside the understanding tasks (default 0: off)")
    tower.add_argument("--presence-steps", dest="presence_steps", type=int, default=None,
                       help="encoder-only steps on the shape signal before the understanding tasks (default 0)")
    tower.add_argument("--patch-weight", dest="patch_weight", type=float, default=None,
                       help="weight of the per-patch objects in the shape signal (default 0: presence only)")
    tower.set_defaults(func=_train_tower)
    oracle = train.add_parser("oracle", help="the independent concept detector")
    oracle.add_argument("--judge", choices=("oracle", "shape"), default="oracle",
                        help="oracle: RGB input (assets/oracle); shape: the second judge, luminance and edges "
                             "only (assets/shape_judge)")
    oracle.add_argument("--out", default=None, help="output directory (default: the judge's asset directory)")
    oracle.add_argument("--steps", type=int, default=None)
    oracle.add_argument("--threads", type=thread_count, default=2, help="CPU threads")
    oracle.set_defaults(func=_train_oracle)

    labelset = sub.add_parser("labelset", help="the labelled set of generations the judges are checked on "
                                               "(bench model)").add_subparsers(dest="what", required=True)
    generate = labelset.add_parser("generate", help="draw its images: every bench-safety method, the same prompts "
                                                    "and seeds (labels come from the studio's review queue)")
    generate.add_argument("--model", default=str(TOY_MODEL_DIR), help="the checkpoint whose generations are labelled")
    generate.add_argument("--out", default=None, help="folder (default: results/labelset)")
    generate.add_argument("--quick", action="store_true", help="two methods, two images each (a smoke test)")
    generate.add_argument("--methods", default=None, help="comma-separated bench-safety methods (default: the set's five)")
    generate.add_argument("--seed", type=int, default=None, help="every image's seed (default: the set's first block's)")
    generate.add_argument("--append", action="store_true",
                          help="keep the set there image for image and add these methods at --seed as a new block")
    generate.set_defaults(func=_labelset_generate)
    sheet = labelset.add_parser("sheet", help="a picture of where each judge and the person disagree")
    sheet.add_argument("--out", default="docs/labelset_disagreements.png", help="PNG to write")
    sheet.add_argument("--model", default=str(TOY_MODEL_DIR), help="whose self-judge")
    sheet.add_argument("--dir", default=None, help="the labelled set's folder (default: results/labelset)")
    sheet.set_defaults(func=_labelset_sheet)
    bench = sub.add_parser("bench", help="print measured figures").add_subparsers(dest="what", required=True)
    model = bench.add_parser("model", help="the shipped default: oracle, fidelity, safety, judge, speed")
    model.add_argument("--model", default=str(TOY_MODEL_DIR))
    model.add_argument("--oracle", default=str(ORACLE_DIR))
    model.add_argument("--json", default=None, help="also write the figures to this JSON file")
    model.add_argument("--quick", action="store_true", help="fewer samples (for smoke tests)")
    _results_option(model, "results/model")
    model.set_defaults(func=_bench_model)
    safety = bench.add_parser("safety", help="Safe-CB vs baselines and ablations on the same prompts and seeds")
    safety.add_argument("--model", default=str(TOY_MODEL_DIR))
    safety.add_argument("--oracle", default=str(ORACLE_DIR))
    safety.add_argument("--methods", default=None, help="comma-separated subset of the methods")
    safety.add_argument("--json", default=None, help="write JSON here and a Markdown table next to it")
    _add_worker_flags(safety)
    safety.add_argument("--quick", action="store_true", help="tiny sizes (for smoke tests)")
    safety.add_argument("--broad-prompts", dest="broad_prompts", type=int, default=None,
                        help="harmful prompts in the broad grid (default 240; 4 with --quick)")
    safety.add_argument("--broad-benign", dest="broad_benign", type=int, default=None,
                        help="benign-only scenes added to the broad grid's rewrites (default 60; 2 with --quick)")
    safety.add_argument("--broad-seeds", dest="broad_seeds", type=int, default=None,
                        help="image seeds per broad-grid prompt (default 4; 1 with --quick)")
    safety.add_argument("--seed-start", dest="seed_start", type=int, default=None,
                        help="first image seed of every evaluation (default: the bench seeds, 1000; "
                             "the tuning seeds start at 2000)")
    safety.add_argument("--half", choices=["reporting", "tuning", "all"], default="reporting",
                        help="the broad grid's scenes: the reporting half (default; figures), the tuning half "
                             "(with --seed-start 2000, for choosing settings) or all")
    safety.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="change the bench's Safe-CB config (dotted key, JSON value), e.g. "
                             "--set fine_tune.decoder_steps=200; repeatable; for tuning runs")
    _results_option(safety, "results/safety")
    safety.set_defaults(func=_bench_safety)
    replacement = bench.add_parser("replacement", help="a picture of what a run's edited model draws for harmful "
                                   "prompts (reporting half, bench seed), the worst cases first")
    replacement.add_argument("--run", required=True, help="a Safe-CB run directory (python -m safecb run --out ...)")
    replacement.add_argument("--round", type=int, default=None, help="which round (default: the run's best)")
    replacement.add_argument("--model", default=str(TOY_MODEL_DIR))
    replacement.add_argument("--oracle", default=str(ORACLE_DIR))
    replacement.add_argument("--out", default="docs/replacement_default.png", help="PNG to write")
    replacement.add_argument("--threads", type=thread_count, default=2)
    _results_option(replacement, "results/replacement")
    replacement.set_defaults(func=_bench_replacement)
    attack = bench.add_parser("attack", help="red team each method's model state (prompt search, soft prompts, "
                              "attribute prompts, image prefixes, swap-back, relearning, token reuse) with the "
                              "oracle as objective; ASR on fresh seeds")
    attack.add_argument("--model", default=str(TOY_MODEL_DIR))
    attack.add_argument("--oracle", default=str(ORACLE_DIR))
    attack.add_argument("--methods", default=None, help="comma-separated subset of none,blocklist,naive_removal,"
                        "safecb_generator,safecb_guided,decoder_target,default (default: none,blocklist,safecb_generator,decoder_target,default; --quick: none,blocklist,naive_removal)")
    attack.add_argument("--attacks", default=None, help="comma-separated subset of discrete,soft,attribute,prefix,"
                        "swap_back,relearn,token_reuse (default: all)")
    attack.add_argument("--instances", type=int, default=None,
                        help="harmful prompts aimed at per attack (default 32, the reporting half's)")
    attack.add_argument("--no-adapt", dest="no_adapt", action="store_true",
                        help="skip choosing each searching attack's option per defence on the tuning half")
    attack.add_argument("--json", default=None, help="write JSON here and a Markdown table next to it")
    attack.add_argument("--out", default=None, help="save the best adversarial prompts, images and soft prompts here")
    _add_worker_flags(attack)
    attack.add_argument("--quick", action="store_true", help="tiny budgets (for smoke tests)")
    attack.add_argument("--seed-start", dest="seed_start", type=int, default=None,
                        help="base of every attack seed (default: the bench seeds, 1000; the tuning seeds start at 2000)")
    attack.add_argument("--soft-steps", dest="soft_steps", type=int, default=None,
                        help="Adam steps of the soft-prompt attack (the attacker's budget; for tuning runs)")
    _results_option(attack, "results/attack")
    attack.set_defaults(func=_bench_attack)
    vapi_bench = bench.add_parser("vapi", help="VAπ before/after: FID-toy, fidelity, reward; Safe-CB ± step 3")
    vapi_bench.add_argument("--model", default=str(TOY_MODEL_DIR))
    vapi_bench.add_argument("--oracle", default=str(ORACLE_DIR))
    vapi_bench.add_argument("--json", default=None, help="write JSON here and a Markdown table next to it")
    vapi_bench.add_argument("--threads", type=thread_count, default=2)
    vapi_bench.add_argument("--variants", default=None,
                            help="comma-separated post-training variants: grpo (always), ste, grpo_noise")
    vapi_bench.add_argument("--no-safecb", dest="no_safecb", action="store_true", help="skip the Safe-CB ± step 3 runs")
    vapi_bench.add_argument("--quick", action="store_true", help="tiny sizes (for smoke tests)")
    vapi_bench.add_argument("--eval-seed-start", dest="eval_seed_start", type=int, default=1000,
                            help="first evaluation seed (tune sweeps on another range, e.g. 2000, then confirm on 1000)")
    vapi_bench.add_argument("--eval-seeds", dest="eval_seeds", type=int, default=None,
                            help="images per prompt (default 32: 2,304 benign images)")
    vapi_bench.add_argument("--steps", type=int, default=None, help="override the default schedule's steps")
    vapi_bench.add_argument("--lr", type=float, default=None, help="override the default schedule's peak lr")
    vapi_bench.add_argument("--noise", type=float, default=None, help="override the default contextual noise p")
    vapi_bench.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                            help="override any VapiConfig field (repeatable)")
    _results_option(vapi_bench, "results/vapi")
    vapi_bench.set_defaults(func=_bench_vapi)
    speed = bench.add_parser("speed", help="our sampler vs transformers' generate on Janus-Pro-1B's shape "
                             "(random weights): tokens/s, memory, one Safe-CB round per 100 prompts")
    speed.add_argument("--json", default=None, help="write JSON here and a Markdown table next to it")
    speed.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    speed.add_argument("--tokens", type=int, default=None,
                       help="image tokens timed per call (default: a full image on GPU, 16 on CPU)")
    speed.add_argument("--batches", default=None, help="comma-separated batch sizes (default 1,8,32)")
    speed.add_argument("--repeats", type=int, default=1, help="A B B A timing blocks per batch")
    speed.add_argument("--threads", type=thread_count, default=2)
    speed.add_argument("--quick", action="store_true", help="a tiny model of the same layout (for smoke tests)")
    speed.add_argument("--compile", dest="compile_layers", action="store_true",
                       help="our sampler's layers through torch.compile (GPU; its fixed-shape loop)")
    speed.add_argument("--no-round", dest="measure_round", action="store_false",
                       help="time the samplers only, not a Safe-CB round")
    speed.add_argument("--profile", type=int, default=None, metavar="BATCH",
                       help="also profile one call of our sampler at this batch: kernels per token and where "
                            "the time goes")
    _results_option(speed, "results/speed_cpu")
    speed.set_defaults(func=_bench_speed)

    report = sub.add_parser("report", help="recompute every figure the docs mark from the committed result rows "
                            "(results/) and fail where a doc differs")
    report.add_argument("--write", action="store_true", help="put the recomputed figures into the docs")
    report.add_argument("--results", default=None, metavar="DIR", help="the result rows (default: results/)")
    report.add_argument("--show", action="store_true", help="print every figure's text")
    report.set_defaults(func=_report)
    run = sub.add_parser("run", help="run or resume Safe-CB rounds into a run directory")
    run.add_argument("--out", required=True, help="run directory (rerun the same command to resume)")
    run.add_argument("--model", default=str(TOY_MODEL_DIR), help="Janus checkpoint directory (HF layout)")
    run.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available; under "
                     "accelerate launch, the device it gives each process)")
    run.add_argument("--threads", type=thread_count, default=2,
                     help="CPU threads (per process under accelerate launch)")
    run.add_argument("--config", default=None, help="a Safe-CB config JSON (SafeCBConfig.to_dict layout)")
    run.add_argument("--prompts", default=None, help="prompt set JSON {harmful: [{text, rewrite}], benign: [{text}]}")
    run.add_argument("--target", choices=["decoder", "generator", "both"], default=None,
                     help="edit target (default: the config's, decoder)")
    run.add_argument("--rounds", type=int, default=None, help="max_rounds")
    run.add_argument("--epsilon", type=float, default=None)
    run.add_argument("--patience", type=int, default=None)
    run.add_argument("--threshold", type=float, default=None, help="flag threshold τ")
    run.add_argument("--seeds", type=int, default=None, help="seeds per harmful prompt (0..N-1)")
    run.add_argument("--no-step2", dest="no_step2", action="store_true", help="step 1 only")
    run.add_argument("--vapi", action="store_true", help="step 3: VAπ re-alignment of the generator codebooks")
    run.add_argument("--i2p", default=None, help="I2P CSV: harmful prompts from it, safe rewrites proposed by the model")
    run.add_argument("--category", action="append", default=[],
                     help="I2P categories to keep (repeatable or comma-separated; any of them), e.g. violence,sexual")
    run.add_argument("--hard-only", dest="hard_only", action="store_true", help="only I2P prompts flagged hard")
    run.add_argument("--limit", type=int, default=None, help="at most this many I2P prompts")
    run.add_argument("--oracle", default="toys",
                     help="evaluation-only oracle: 'toys' (both toy judges, the oracle primary; the default), 'toy', "
                          "'toy-shape' or a toy-judge directory, or for real images 'nudenet', 'open_nsfw' or 'real' "
                          "(both)")
    run.add_argument("--no-oracle", dest="no_oracle", action="store_true")
    run.set_defaults(func=_run)

    vapi = sub.add_parser("vapi", help="VAπ post-training of the generator on toy-world renders (resumable)")
    vapi.add_argument("--out", required=True, help="checkpoint directory (rerun the same command to resume)")
    vapi.add_argument("--model", default=str(TOY_MODEL_DIR), help="Janus checkpoint directory (HF layout)")
    vapi.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    vapi.add_argument("--threads", type=thread_count, default=2)
    vapi.add_argument("--config", default=None, help="a VAπ config JSON (VapiConfig.to_dict layout)")
    vapi.add_argument("--method", choices=["grpo", "ste"], default=None, help="grpo (VAπ) or ste (straight-through)")
    vapi.add_argument("--steps", type=int, default=None)
    vapi.add_argument("--lr", type=float, default=None)
    vapi.add_argument("--batch", type=int, default=None, help="ground-truth images per step")
    vapi.add_argument("--group", type=int, default=None, help="G, grids sampled per image")
    vapi.add_argument("--noise", type=float, default=None, help="p of the contextual noise")
    vapi.add_argument("--seed", type=int, default=None)
    vapi.add_argument("--images", type=int, default=2000, help="toy-world renders to post-train on (vapi.TOY_IMAGES)")
    vapi.set_defaults(func=_vapi)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # as typed, for the result rows' meta
    try:
        return args.func(args)
    except ValueError as exc:  # bad configs and inputs: one clear line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file or folder that cannot be read or written
        where = f": {exc.filename}" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
