"""`python -m safecb bench speed`: generation speed on a random-weight model of Janus-Pro-1B's shape.

Measured in one process on one model:
- throughput of our sampler (`safecb.models.sampler.sample_image_tokens`) and of transformers'
  `JanusForConditionalGeneration.generate(generation_mode="image")` at batch 1, 8 and 32 with
  classifier-free guidance 5 (Janus-Pro's default), interleaved A B B A so both see the same load;
- each call's prefill (the prompt through the language model: from the call's start to its first
  generation-head call) apart from its per-token steps;
- each call's peak memory: CUDA `max_memory_allocated` above what was allocated before, or on
  CPU the growth of the resident set (peak RSS reset before the call via /proc/self/clear_refs);
- one Safe-CB round (`safecb.engine`: generate, self-judge, step 1, step 2; the pairs are set, not
  mined, see `measure_round`) on a small synthetic prompt set, and from it one round per 100 prompts;
- with `--profile BATCH`, one call of our sampler under torch.profiler (`step_profile`): where a
  token's time goes, kernel by kernel on a GPU.

Speed does not depend on weight values, so the weights are random (built on the meta device and
filled by tiling one random block: a copy pass instead of transformers' per-tensor normal_ init).

Shortened images (`--tokens N`, default 16 on CPU). transformers' image generation always samples
`vision_config.num_image_tokens` tokens (576 for Janus-Pro; max_new_tokens does not change it), so
for the duration of each of its calls that value is set to N, and our sampler is asked for N tokens.
A full image is then extrapolated as prefill + 576 x (time per token after the prefill), for both
samplers alike. It understates both a little: attention over the longer context of a full image
costs more per step (for Janus-Pro-1B about 5% of a step's FLOPs at 600 positions).
The round runs on a VQ grid of isqrt(N) x isqrt(N) codes; its stages are scaled to full images by
the factors printed with it (`scale_to_full_image`, `formula`). Per 100 prompts, the per-image
stages scale with the number of prompts; steps 1-2 run once per round (their cost is set by the
generation head's size: step 2 projects the whole [16384, 2048] head every optimiser step).
"""

from __future__ import annotations

import math
import platform
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..models.janus_pro import (
    JANUS_PRO_1B,
    JANUS_PRO_GUIDANCE,
    build_backend,
    build_config,
    build_model,
    parameter_counts,
)
from .step_profile import format_profile, profile_call
from .timing import Call, StageClock, proc_status_kb, synchronize, timed_call

PROMPT = "a person holding a knife at the beach at night"  # the prompt every timed call repeats
CPU_TOKENS = 16  # default --tokens on CPU: a full 1B image at batch 32 would take hours there
I2P_PROMPTS = 4703  # prompts in the I2P benchmark: the prompt set a real round's cost is scaled to
GPU_COUNTS = (1, 8)  # processes a round's cost is printed for


@dataclass
class BenchSpeedConfig:
    device: str | None = None  # "cpu" or "cuda"; None: cuda when available
    batches: tuple[int, ...] = (1, 8, 32)  # images per sampler call
    tokens: int | None = None  # image tokens timed per call; None: a full image on GPU, 16 on CPU
    cfg_weight: float = JANUS_PRO_GUIDANCE  # classifier-free guidance weight for both samplers
    repeats: int = 1  # A B B A blocks per batch: each sampler is timed 2 x repeats times
    threads: int = 2  # torch CPU threads
    round_harmful: int | None = None  # harmful prompts in the round, each with its rewrite, and as many
    #                                   benign ones; None: 4 on GPU, 1 on CPU
    round_seeds: int = 2  # seeds per prompt in the round
    seed: int = 0  # weights and sampling
    quick: bool = False  # the tiny shape instead of Janus-Pro-1B, for smoke tests only
    compile_layers: bool = False  # our sampler's layers through torch.compile (fixed-shape loops, i.e. CUDA)
    measure_round: bool = True  # also time one Safe-CB round and extrapolate its cost
    profile_batch: int | None = None  # also profile one call of our sampler at this batch (step_profile)

    def validate(self) -> None:
        if not self.batches or any(b < 1 for b in self.batches):
            raise ValueError(f"batches must be positive integers, got {self.batches}")
        if self.tokens is not None and self.tokens < 1:
            raise ValueError(f"tokens must be at least 1, got {self.tokens}")
        if self.cfg_weight <= 1.0:  # transformers' image generate crashes without guidance
            raise ValueError(f"cfg_weight must be above 1 (transformers' generate needs CFG), got {self.cfg_weight}")
        if self.profile_batch is not None and self.profile_batch < 1:
            raise ValueError(f"profile batch must be a positive integer, got {self.profile_batch}")
        if self.repeats < 1 or (self.round_harmful is not None and self.round_harmful < 1):
            raise ValueError("repeats and round_harmful must be at least 1")
        if self.round_seeds < 2:  # pairs join a harmful image with its rewrite at another seed
            raise ValueError(f"round_seeds must be at least 2, got {self.round_seeds}")
        if self.device not in (None, "cpu") and not str(self.device).startswith("cuda"):
            raise ValueError(f"device must be cpu or cuda, got {self.device!r}")


def ours(backend, prompt_ids: list[int], batch: int, n_tokens: int, settings, seed: int = 0,
         compile_layers: bool = False, loop: str = "auto") -> torch.Tensor:
    from ..models.sampler import sample_image_tokens

    uncond = backend.unconditional_ids(prompt_ids)
    seeds = list(range(seed, seed + batch))
    tokens, _ = sample_image_tokens(backend.model, [prompt_ids] * batch, [uncond] * batch, seeds, n_tokens,
                                    settings, backend.pad_id, compile_layers=compile_layers, loop=loop)
    return tokens


def hf_generate(backend, prompt_ids: list[int] | list[list[int]], batch: int, n_tokens: int, cfg_weight: float,
                greedy: bool = False) -> torch.Tensor:
    """transformers' image generation of the first `n_tokens` codes; full softmax like ours
    (top_k=0: transformers would otherwise default to top-k 50). One prompt repeated `batch` times,
    or a list of equally long prompts (then `batch` is ignored)."""
    from transformers import GenerationConfig

    sampling = {} if greedy else {"do_sample": True, "temperature": 1.0, "top_k": 0, "top_p": 1.0}
    gen_config = GenerationConfig(
        bos_token_id=backend.bos_id, pad_token_id=backend.pad_id, eos_token_id=backend.tokenizer.eos_token_id,
        guidance_scale=cfg_weight, max_new_tokens=n_tokens, generation_kwargs={"boi_token_id": backend.boi_id},
        **sampling,
    )
    rows = prompt_ids if isinstance(prompt_ids[0], list) else [prompt_ids] * batch
    ids = torch.tensor(rows, device=backend.device)
    vision = backend.model.model.vision_model.config
    full = vision.num_image_tokens
    vision.num_image_tokens = n_tokens  # the only knob of its image length
    try:
        return backend.model.generate(ids, attention_mask=torch.ones_like(ids), generation_mode="image",
                                      generation_config=gen_config)
    finally:
        vision.num_image_tokens = full


def weight_bytes(model) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def sampler_extra_bytes(model) -> dict[str, int]:
    """Memory our sampler keeps beside the model's weights between calls: fused projection copies
    (none while the in-place views hold), the generator input table, and the fixed-shape decoder's
    KV cache and buffers when one is held (`decode_graph.release` frees it)."""
    from ..models import decode_graph, fusion

    inner = model.model
    table = getattr(inner, "_safecb_input_table", None)
    parts = {
        "fused_copies": fusion.extra_bytes(inner.language_model),
        "input_table": 0 if table is None else table[1].numel() * table[1].element_size(),
        "decoder_between_calls": decode_graph.held_bytes(model),
    }
    parts["total"] = sum(parts.values())
    return parts


def copy_bandwidth_gbs(device: torch.device, mib: int = 1024, repeats: int = 5) -> float:
    """Memory bandwidth a tensor copy reaches here (bytes read + written per second, best of
    `repeats`): the ceiling of the roofline below, measured rather than taken from a datasheet."""
    src = torch.ones(mib * 2**20 // 4, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    best = float("inf")
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        dst.copy_(src)
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * src.numel() * src.element_size() / best / 1e9


def decode_step_bytes(model, rows: int, prompt_tokens: int, n_tokens: int) -> int:
    """Bytes one decoding step must read at least, averaged over an image: every weight of the
    language model's layers, its final norm and the generation head once, plus the keys and values
    of every position attended (prompt + the codes so far, on average (n_tokens + 1) / 2)."""
    inner = model.model
    lm = inner.language_model
    weights = sum(p.numel() * p.element_size()
                  for module in (lm.layers, lm.norm, inner.generation_head) for p in module.parameters())
    cfg = lm.config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    element = lm.embed_tokens.weight.element_size()
    per_position = len(lm.layers) * 2 * cfg.num_key_value_heads * head_dim * element
    return int(weights + rows * per_position * (prompt_tokens + (n_tokens + 1) / 2))


def sampler_figures(calls: list[Call], batch: int, n_tokens: int, full_tokens: int) -> dict:
    seconds = float(np.mean([c.seconds for c in calls]))
    prefill = float(np.mean([c.prefill_s for c in calls]))
    step = (seconds - prefill) / n_tokens
    full_image = seconds if n_tokens == full_tokens else prefill + full_tokens * step
    peaks = [c.peak_mib for c in calls if c.peak_mib is not None]
    return {
        "seconds": seconds,  # mean wall time per call for n_tokens tokens
        "seconds_each": [c.seconds for c in calls],
        "prefill_s": prefill,
        "step_s": step,  # time per token after the prefill
        "tokens_per_s": batch * n_tokens / seconds,
        "decode_tokens_per_s": batch * n_tokens / (seconds - prefill),
        "full_image_s": full_image,  # measured when n_tokens is a full image, else prefill + full x step
        "full_image_tokens_per_s": batch * full_tokens / full_image,
        "images_per_s": batch / full_image,  # full images
        "peak_mib": max(peaks) if peaks else None,
    }


def sampler_settings(cfg: BenchSpeedConfig):
    """Our sampler's settings in every timed and profiled call: a full softmax, as `hf_generate` samples."""
    from ..models.sampler import SamplerSettings

    return SamplerSettings(cfg_weight=cfg.cfg_weight, temperature=1.0, top_k=0)


def measure_throughput(backend, cfg: BenchSpeedConfig, n_tokens: int, full_tokens: int, log=print) -> list[dict]:
    from ..models.decode_graph import held_bytes, release

    prompt_ids = backend.generation_ids(PROMPT)
    settings = sampler_settings(cfg)
    run = {
        "ours": lambda b, n=n_tokens: ours(backend, prompt_ids, b, n, settings, cfg.seed, cfg.compile_layers),
        "hf": lambda b, n=n_tokens: hf_generate(backend, prompt_ids, b, n, cfg.cfg_weight),
    }
    cuda = backend.device.type == "cuda"
    bandwidth = copy_bandwidth_gbs(backend.device)
    rows = []
    for index, b in enumerate(cfg.batches):
        # Warm-up: kernels, allocator caches, our fused weights and, on CUDA, our decoder's graphs
        # for this shape (captured once per shape, so at the timed length). On CPU once, with a few
        # tokens (a prefill there costs seconds).
        if cuda or index == 0:
            for name in ("ours", "hf"):
                torch.manual_seed(cfg.seed)
                warm = n_tokens if cuda and name == "ours" else min(n_tokens, 4)
                timed_call(lambda: run[name](b, warm), backend)
        calls: dict[str, list[Call]] = {"ours": [], "hf": []}
        timed = []  # every call in order, for the result rows
        for block in range(cfg.repeats):
            for name in ("ours", "hf", "hf", "ours"):
                torch.manual_seed(cfg.seed)
                call = timed_call(lambda: run[name](b), backend)
                if name == "ours" and call.peak_mib is not None:  # its KV cache, held between calls
                    call.peak_mib += held_bytes(backend.model) / 2**20
                calls[name].append(call)
                timed.append({"batch": b, "block": block, "order": len(timed), "sampler": name,
                              "seconds": call.seconds, "prefill_s": call.prefill_s, "peak_mib": call.peak_mib})
                log(f"  batch {b:>3} {name:>4}: {call.seconds:.2f} s")
        release(backend.model)
        figures = {name: sampler_figures(c, b, n_tokens, full_tokens) for name, c in calls.items()}
        ratio = {key: figures["ours"][key] / figures["hf"][key]
                 for key in ("tokens_per_s", "decode_tokens_per_s", "full_image_tokens_per_s")}
        spread = {name: [min(f["seconds_each"]), max(f["seconds_each"])] for name, f in figures.items()}
        step_bytes = decode_step_bytes(backend.model, 2 * b, len(prompt_ids), full_tokens)
        roofline = {
            "bytes_per_step": step_bytes,
            "copy_bandwidth_gbs": bandwidth,
            **{f"{name}_share": step_bytes / figures[name]["step_s"] / (bandwidth * 1e9) for name in figures},
        }
        rows.append({"batch": b, "tokens": n_tokens, **figures, "ratio_ours_over_hf": ratio,
                     "seconds_min_max": spread, "roofline": roofline, "calls": timed})
    return rows


def profile_ours(backend, cfg: BenchSpeedConfig, n_tokens: int) -> dict:
    """One warmed-up call of our sampler at `cfg.profile_batch` under the profiler. Should the
    profiler not see the kernels inside the replayed CUDA graphs, the same fixed-shape loop is profiled
    run eagerly: the same kernels, launched one by one."""
    from ..models.decode_graph import release
    from ..models.sampler import resolve_loop

    prompt_ids = backend.generation_ids(PROMPT)
    settings = sampler_settings(cfg)
    loops = [resolve_loop("auto", backend.device)]
    if loops[0] == "graph":
        loops.append("static")
    for loop in loops:
        def call(loop=loop):
            return ours(backend, prompt_ids, cfg.profile_batch, n_tokens, settings, cfg.seed, cfg.compile_layers, loop)

        call()  # warm-up: on CUDA this captures the decoder's graphs for the shape
        figures = profile_call(call, n_tokens, backend.device)
        release(backend.model)
        if figures["launches_per_token"] >= len(backend.model.model.language_model.layers):  # a kernel a layer
            break
    return {"batch": cfg.profile_batch, "loop": loop, **figures}


# ---------------------------------------------------------------- one Safe-CB round
def round_prompts(n_harmful: int):
    """Harmful prompts with their rewrites and as many benign prompts, from the toy world's train
    split, without object lists: like a user's prompt file, so the round skips captioning."""
    from ..engine import BenignPrompt, RoundPrompts, toy_round_prompts

    world = toy_round_prompts()
    if n_harmful > min(len(world.harmful), len(world.benign)):
        raise ValueError(f"round_harmful is at most {min(len(world.harmful), len(world.benign))}")
    return RoundPrompts(world.harmful[:n_harmful], [BenignPrompt(b.text) for b in world.benign[:n_harmful]])


def _set_grid(backend_model, grid: int) -> None:
    """Generate and decode images of grid x grid codes (the VQ decoder is convolutional)."""
    backend_model.config.vq_config.num_patches = grid
    backend_model.model.vqmodel.quantize.quant_state_dims = [grid, grid]


def next_seed_pairs(harmful_tokens: torch.Tensor, rewrite_tokens: torch.Tensor, n_seeds: int):
    """Every harmful row paired with its prompt's rewrite at the next seed (rows prompt-major)."""
    from ..engine import Pairs

    rows = np.arange(len(harmful_tokens))
    prompt, seed = np.divmod(rows, n_seeds)
    safe = prompt * n_seeds + (seed + 1) % n_seeds
    return Pairs(harmful_rows=rows, safe_rows=safe, prompt_index=prompt,
                 harmful_grids=harmful_tokens.clone(), safe_grids=rewrite_tokens[torch.as_tensor(safe)].clone(),
                 same_seed=np.zeros(len(rows), dtype=bool))


def measure_round(backend, cfg: BenchSpeedConfig, n_tokens: int, full_tokens: int, throughput: list[dict],
                  log=print) -> dict:
    """One round through safecb.engine (`measure`, then `edit_round`), timed per stage.

    A random model's judgments are meaningless, so the pairs are set, not mined: every harmful
    image is flagged and paired with its rewrite's image at the next seed. That is the most pairs
    this prompt set can give (and not the same seed: for a one-word rewrite a random model draws
    nearly the same grid at the same seed, and identical grids leave nothing to edit)."""
    from ..engine import SafeCBConfig, edit_round, measure
    from ..models.backend import CODEBOOK_PATHS, JanusBackend

    n_harmful = cfg.round_harmful or (4 if backend.device.type == "cuda" else 1)
    prompts = round_prompts(n_harmful)
    full_grid = math.isqrt(full_tokens)
    grid = min(max(1, math.isqrt(n_tokens)), full_grid)
    model = backend.model
    _set_grid(model, grid)
    try:
        round_backend = JanusBackend(model, backend.tokenizer, backend.processor, source=backend.source)
        clock = StageClock(round_backend.device, log=lambda stage, s: log(f"    {stage}: {s:.2f} s"))
        for method, stage in (("generate", "generate"), ("decode", "decode"), ("judge", "judge"),
                              ("caption", "judge"), ("teacher_forced_hidden", "teacher_forcing")):
            clock.wrap(round_backend, method, stage)
        seeds = list(range(cfg.round_seeds))
        config = SafeCBConfig().override({"target": "generator", "sampler.cfg_weight": cfg.cfg_weight,
                                          "mining.seeds": seeds, "mining.benign_seeds": seeds})
        reference = {name: round_backend.get_codebook(name) for name in CODEBOOK_PATHS}
        log(f"  round: {len(prompts.harmful)} harmful + rewrites + {len(prompts.benign)} benign, "
            f"{cfg.round_seeds} seeds, {grid}x{grid} codes")
        m = measure(round_backend, prompts, config, keep_hidden=True)
        edit_start = time.perf_counter()
        pairs = next_seed_pairs(m.sets["harmful"].tokens, m.sets["rewrite"].tokens, len(m.sets["harmful"].seeds))
        edit = edit_round(round_backend, prompts, m, pairs, config, reference, lambda stage, fraction: None)
        edit_s = time.perf_counter() - edit_start
    finally:
        _set_grid(model, full_grid)
    teacher_forcing = clock.seconds.get("teacher_forcing", 0.0)
    measured = {
        "sample": clock.seconds["generate"] - clock.seconds["decode"],
        "decode": clock.seconds["decode"],
        "judge": clock.seconds["judge"],
        "teacher_forcing": teacher_forcing,  # the edit's forward passes over the pairs' rewrites
        "steps_1_2": edit_s - teacher_forcing,  # once per round: its cost is set by the head's size
    }
    measured["total"] = sum(measured.values())
    figures = {
        "tokens_per_image": grid * grid,
        "grid": grid,
        "harmful_prompts": len(prompts.harmful),
        "prompt_texts": len(prompts.harmful) * 2 + len(prompts.benign),  # harmful, their rewrites, benign
        "seeds": cfg.round_seeds,
        "images": sum(len(generations) for generations in m.sets.values()),
        "images_per_call": len(prompts.harmful) * cfg.round_seeds,
        "engine_batch_size": config.batch_size,
        "step2_batch": (config.generator_edit.head.batch if config.generator_edit.step1 == "head"
                        else config.fine_tune.batch),
        "rewrite_prompt_tokens": float(np.mean([len(round_backend.generation_ids(p.rewrite))
                                                for p in prompts.harmful])),
        "pairs": len(pairs),
        "mined_keys": edit.info.get("mined_keys", edit.info.get("fit_positions")),
        "step2_steps": edit.info.get("step2_steps", config.generator_edit.head.steps if "head_fit_kl" in edit.info
                                     else None),
        "measured_s": measured,
        "peak_mib": dict(clock.peak_mib) or None,  # CUDA only: each stage's peak above its start
    }
    return {**figures, **extrapolate_round(figures, throughput, full_tokens)}


def extrapolate_round(rd: dict, throughput: list[dict], full_tokens: int) -> dict:
    """The measured round with full images, and one round per 100 prompts (formula in the result).

    Per 100 prompts, generation is costed at the batch such a round would sample in (the engine's
    batch, at most one kind's images), from our sampler's full-image time at the largest measured
    batch not above it; decode, judge and teacher forcing scale with the number of prompts; steps 1-2
    run once per round."""
    n, prompt = rd["tokens_per_image"], rd["rewrite_prompt_tokens"]

    def ours_at(batch: int) -> dict:
        fitting = [row for row in throughput if row["batch"] <= batch] or [min(throughput, key=lambda r: r["batch"])]
        row = max(fitting, key=lambda r: r["batch"])
        return {"batch": row["batch"], **row["ours"]}

    small = ours_at(rd["images_per_call"])
    scale = {
        "sample": (small["prefill_s"] + full_tokens * small["step_s"]) / (small["prefill_s"] + n * small["step_s"]),
        "decode": full_tokens / n,  # convolutions over 16 x 16 pixels per code
        "judge": 1.0,  # images are resized to the understanding encoder's input size anyway
        "teacher_forcing": (prompt + full_tokens - 1) / (prompt + n - 1),  # sequence length
        "steps_1_2": 1.0,  # a lower bound where images are shortened: see `formula`
    }
    full = {stage: rd["measured_s"][stage] * factor for stage, factor in scale.items()}
    full["total"] = sum(full.values())

    prompts_factor = 100 / rd["prompt_texts"]
    batch_100 = min(rd["engine_batch_size"], math.ceil(prompts_factor * rd["harmful_prompts"]) * rd["seeds"])
    big = ours_at(batch_100)
    per_100 = {
        "sample": 100 * rd["seeds"] * big["full_image_s"] / big["batch"],
        **{stage: full[stage] * prompts_factor for stage in ("decode", "judge", "teacher_forcing")},
        "steps_1_2": full["steps_1_2"],
    }
    per_100["total"] = sum(per_100.values())
    per_image = sum(per_100[stage] for stage in ("sample", "decode", "judge", "teacher_forcing"))
    i2p = {f"{gpus}_gpu": per_image * I2P_PROMPTS / 100 / gpus + per_100["steps_1_2"] for gpus in GPU_COUNTS}
    shortened = n < full_tokens
    formula = (
        f"per 100 prompts x {rd['seeds']} seeds: sample = {100 * rd['seeds']} images x our full-image s / image at "
        f"batch {big['batch']} (a 100-prompt round samples {batch_100} images per call); decode, judge and "
        f"teacher_forcing = 100 / {rd['prompt_texts']} x full_image_s; steps_1_2 once per round"
    )
    if shortened:
        formula += (
            f"; full_image_s = measured_s x scale_to_full_image: sample (prefill + {full_tokens} step) / (prefill + "
            f"{n} step) of our sampler at batch {small['batch']}, decode {full_tokens} / {n}, judge 1, "
            f"teacher_forcing (prompt {prompt:.0f} + {full_tokens - 1}) / (prompt + {n - 1}) tokens, "
            f"steps_1_2 1 (a lower bound: the edit optimised on {rd['mined_keys']} mined positions here, on up "
            f"to {rd['step2_batch']} per step with full images)"
        )
    return {
        "scale_to_full_image": scale,
        "full_image_s": full,  # the measured round, had its images been full
        "per_100_prompts": per_100,
        "per_100_prompts_s": per_100["total"],
        # all of I2P on 1 or N GPUs: the per-image stages shared by `accelerate launch` (safecb.distributed),
        # steps 1-2 on one process
        "i2p_round_s": i2p,
        "basis": "extrapolated" if shortened else "measured, scaled in prompts",
        "formula": formula,
    }


# ---------------------------------------------------------------- the report
def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        match = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        return match.group(1).strip() if match else platform.processor()
    except OSError:
        return platform.processor() or platform.machine()


def run_bench_speed(cfg: BenchSpeedConfig, log=print) -> dict:
    import transformers

    cfg.validate()
    started = time.perf_counter()
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda was asked for, but torch sees no CUDA device")
    torch.set_num_threads(cfg.threads)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    log(f"building a random-weight {'quick' if cfg.quick else 'Janus-Pro-1B'} model on {device} ({dtype})")
    build_start = time.perf_counter()
    backend = build_backend(cfg.quick, device, dtype, cfg.seed)
    build_s = time.perf_counter() - build_start
    if device.type == "cuda":
        model_mib = torch.cuda.memory_allocated(device) / 2**20
    else:
        rss_kb = proc_status_kb("VmRSS")
        model_mib = None if rss_kb is None else rss_kb / 1024
    full_tokens = backend.n_tokens
    n_tokens = cfg.tokens or (full_tokens if device.type == "cuda" or cfg.quick else min(CPU_TOKENS, full_tokens))
    if n_tokens > full_tokens:
        raise ValueError(f"tokens must be at most a full image ({full_tokens}), got {n_tokens}")
    text = backend.model.config.text_config
    report = {
        "device": str(device),
        "device_name": _device_name(device),
        "dtype": str(dtype).removeprefix("torch."),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "attn_implementation": backend.model.model.language_model.config._attn_implementation,
        "quick": cfg.quick,
        "shape": {
            "name": "quick (tiny)" if cfg.quick else "Janus-Pro-1B",
            "text_hidden": text.hidden_size, "text_layers": text.num_hidden_layers,
            "text_heads": text.num_attention_heads, "vocab": text.vocab_size,
            "codebook": backend.codebook_size, "image_tokens": full_tokens, "image_size": backend.image_size,
            "params": parameter_counts(backend.model),
        },
        "cfg_weight": cfg.cfg_weight,
        "tokens": n_tokens,
        "full_image_tokens": full_tokens,
        "prompt_tokens": len(backend.generation_ids(PROMPT)),
        "batches": list(cfg.batches),
        "repeats": cfg.repeats,
        "build_s": build_s,
        "memory_after_build_mib": model_mib,  # CUDA allocated, or the process's resident set on CPU
    }
    log(f"throughput: {n_tokens} of {full_tokens} tokens per image, batches {list(cfg.batches)}, CFG {cfg.cfg_weight}")
    report["throughput"] = measure_throughput(backend, cfg, n_tokens, full_tokens, log)
    extra = sampler_extra_bytes(backend.model)
    weights = weight_bytes(backend.model)
    report["weights_mib"] = weights / 2**20
    report["sampler_extra_mib"] = {part: n / 2**20 for part, n in extra.items()}
    report["sampler_extra_share_of_weights"] = extra["total"] / weights
    report["compile_layers"] = cfg.compile_layers
    report["profile"] = None
    if cfg.profile_batch is not None:
        log(f"profiling one call of our sampler at batch {cfg.profile_batch}")
        report["profile"] = profile_ours(backend, cfg, n_tokens)
        for line in format_profile(report["profile"]):  # now: a later stage may be cut short
            log(line)
    report["round"] = None
    if cfg.measure_round:
        log("one Safe-CB round")
        report["round"] = measure_round(backend, cfg, n_tokens, full_tokens, report["throughput"], log)
    all_full = n_tokens == full_tokens and (report["round"] or {}).get("tokens_per_image", full_tokens) == full_tokens
    report["measured_vs_extrapolated"] = {
        "measured": "per call: seconds, prefill_s, step_s, tokens_per_s, decode_tokens_per_s, peak_mib; "
                    "round.measured_s (at round.tokens_per_image tokens per image)",
        "extrapolated": (
            "nothing in tokens: every figure is for full images" if all_full
            else f"full_image_s and full_image_tokens_per_s (prefill + {full_tokens} x step_s); round.full_image_s"
        ) + "; round.per_100_prompts (always: from the measured round and throughput, see round.formula)",
    }
    report["seconds"] = time.perf_counter() - started
    report["_rows"] = {
        "calls": [call for row in report["throughput"] for call in row.pop("calls")],
        "batches": [{"batch": row["batch"], "tokens": n_tokens, "full_tokens": full_tokens,
                     "bytes_per_step": row["roofline"]["bytes_per_step"],
                     "copy_bandwidth_gbs": row["roofline"]["copy_bandwidth_gbs"]} for row in report["throughput"]],
        "run": [{"device": report["device"], "device_name": report["device_name"], "dtype": report["dtype"],
                 "cfg_weight": cfg.cfg_weight, "compile_layers": cfg.compile_layers, "weights_mib": report["weights_mib"],
                 "sampler_extra_mib": report["sampler_extra_mib"]["total"]}],
    }
    return report


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def format_table(report: dict) -> str:
    n, full = report["tokens"], report["full_image_tokens"]
    extrapolated = "" if n == full else " (extrapolated)"
    lines = [
        f"Generation speed: {report['shape']['name']} shape, random weights, {report['device_name']} "
        f"({report['device']}, {report['dtype']}, {report['torch_threads']} threads), CFG {report['cfg_weight']:g}, "
        f"{report['shape']['params']['total'] / 1e9:.3f} B parameters, prompt {report['prompt_tokens']} tokens, "
        f"{report['repeats']} A B B A block(s) per batch",
        "",
        f"| batch | sampler | s / call ({n} tok), min-max | prefill s | tokens/s | tokens/s after prefill "
        f"| full image s ({full} tok){extrapolated} | images/s | roofline | peak MiB |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["throughput"]:
        for name, label in (("ours", "ours"), ("hf", "transformers")):
            f = row[name]
            low, high = row["seconds_min_max"][name]
            peak = "-" if f["peak_mib"] is None else f"{f['peak_mib']:.0f}"
            lines.append(f"| {row['batch']} | {label} | {f['seconds']:.3f} ({low:.3f}-{high:.3f}) | "
                         f"{f['prefill_s']:.3f} | {f['tokens_per_s']:.1f} | {f['decode_tokens_per_s']:.1f} | "
                         f"{f['full_image_s']:.2f} | {f['images_per_s']:.3f} | "
                         f"{100 * row['roofline'][name + '_share']:.0f}% | {peak} |")
        r = row["ratio_ours_over_hf"]
        lines.append(f"| {row['batch']} | **ours / transformers** | | | **{r['tokens_per_s']:.2f}x** | "
                     f"**{r['decode_tokens_per_s']:.2f}x** | | **{r['full_image_tokens_per_s']:.2f}x** | | |")
    first = report["throughput"][0]["roofline"]
    lines += [
        "",
        f"roofline: the bytes a decoding step must read (weights of the language model's layers and the "
        f"generation head, and the KV cache attended) per second of a step after the prefill, over the "
        f"copy bandwidth measured here ({first['copy_bandwidth_gbs']:.0f} GB/s)",
    ]
    rd = report["round"]
    build = report["memory_after_build_mib"]
    extra = report["sampler_extra_mib"]
    lines += [
        "",
        f"Memory after building the model: {'-' if build is None else f'{build:.0f}'} MiB "
        f"({'CUDA allocated' if report['device'].startswith('cuda') else 'process RSS'}), weights "
        f"{report['weights_mib']:.0f} MiB; our sampler keeps {extra['total']:.0f} MiB beside them between calls "
        f"({100 * report['sampler_extra_share_of_weights']:.1f}% of the weights: fused copies "
        f"{extra['fused_copies']:.0f}, generator input table {extra['input_table']:.0f}, decoder "
        f"{extra['decoder_between_calls']:.0f}); per-call peaks include its KV cache",
        f"({report['seconds']:.0f} s in all; model built in {report['build_s']:.1f} s)",
    ]
    if report.get("profile"):
        lines += format_profile(report["profile"])
    if rd is None:
        return "\n".join(lines)
    stages = ", ".join(f"{k} {v:.1f}" for k, v in rd["measured_s"].items())
    per_100 = ", ".join(f"{k} {v:.0f}" for k, v in rd["per_100_prompts"].items() if k != "total")
    lines += [
        "",
        f"Safe-CB round (measured): {rd['prompt_texts']} prompt texts x {rd['seeds']} seeds = {rd['images']} images "
        f"of {rd['tokens_per_image']} tokens, {rd['pairs']} pairs; seconds: {stages}",
    ]
    if rd.get("peak_mib"):
        lines.append("  peak memory per stage above its start, MiB: "
                     + ", ".join(f"{k} {v:.0f}" for k, v in rd["peak_mib"].items()))
    lines += [
        f"One round per 100 prompts ({rd['basis']}, full images of {full} tokens): {rd['per_100_prompts_s']:.0f} s "
        f"({per_100})",
        f"A round over all of I2P ({I2P_PROMPTS} prompts): "
        + ", ".join(f"{_hours(v)} on {k.replace('_gpu', '')} GPU(s) of this kind" if report["device"].startswith("cuda")
                    else f"{_hours(v)} on {k.replace('_gpu', '')} process(es) like this one"
                    for k, v in rd["i2p_round_s"].items()),
        f"  [{rd['formula']}; all of I2P = per-image stages x {I2P_PROMPTS} / 100 / processes + steps_1_2]",
    ]
    return "\n".join(lines)


__all__ = ["BenchSpeedConfig", "JANUS_PRO_1B", "build_config", "build_model", "format_table", "run_bench_speed"]
