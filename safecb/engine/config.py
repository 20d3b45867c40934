"""Configuration of a Safe-CB run (DESIGN.md §6): one dataclass per component, validated up front
so a bad value fails with one clear message before any model work starts."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..models.sampler import SamplerSettings
from ..vapi.config import VapiConfig
from .edit import DecoderEditConfig
from .space import HarmfulCodeConfig, HarmfulSpaceConfig

TARGETS = ("generator", "decoder")


@dataclass
class MiningConfig:
    seeds: list[int] = field(default_factory=lambda: list(range(8)))  # seeds per harmful prompt and rewrite
    benign_seeds: list[int] = field(default_factory=lambda: list(range(4)))  # seeds per benign prompt
    threshold: float = 0.5  # τ: a generation is flagged when its self-judged P(unsafe) ≥ τ

    def validate(self) -> None:
        if not self.seeds or not self.benign_seeds:
            raise ValueError("mining needs at least one seed for harmful and for benign prompts")
        if any((not isinstance(s, int)) or s < 0 for s in self.seeds + self.benign_seeds):
            raise ValueError("mining seeds must be non-negative integers")
        if not (0.0 < self.threshold < 1.0):
            raise ValueError(f"the flag threshold τ must be in (0, 1), got {self.threshold}")


@dataclass
class GeneratorEditConfig:
    null_threshold: float = 1e-3  # eigenvalues of K₀K₀ᵀ below this share of the largest span the null space
    ridge: float = 1e-2  # λ of the closed form
    relevant_prob: float = 1e-3  # residuals only on codes this likely under either context (others: 0)

    def validate(self) -> None:
        if not (0.0 < self.null_threshold < 1.0):
            raise ValueError(f"null_threshold must be in (0, 1), got {self.null_threshold}")
        if self.ridge <= 0:
            raise ValueError(f"ridge must be positive, got {self.ridge}")
        if not (0.0 <= self.relevant_prob < 1.0):
            raise ValueError(f"relevant_prob must be in [0, 1), got {self.relevant_prob}")


@dataclass
class FineTuneConfig:
    enabled: bool = True  # run step 2 at all (off: the "step 1 only" ablation)
    steps: int = 300  # optimisation steps at most
    lr: float = 3e-3  # Adam learning rate before the per-row scaling
    batch: int = 1024  # keys per step (generator target)
    decoder_batch: int = 16  # grids per step (decoder target); each is decoded with gradients, so keep it small
    preserve_weight: float = 4.0  # weight of "benign and safe outputs stay as before" against "harmful → safe"
    min_row_scale: float = 0.1  # rows step 1 did not move still train at this share of the rate
    holdout_share: float = 0.2  # share of pairs held out for early stopping
    check_every: int = 25  # evaluate the held-out pairs every this many steps
    patience: int = 3  # stop after this many checks without improvement

    def validate(self) -> None:
        if self.steps < 0 or min(self.batch, self.decoder_batch, self.check_every, self.patience) < 1:
            raise ValueError("fine-tuning steps must be ≥ 0 and batch, decoder_batch, check_every, patience ≥ 1")
        if self.lr <= 0 or self.preserve_weight < 0:
            raise ValueError("fine-tuning lr must be positive and preserve_weight non-negative")
        if not (0.0 <= self.min_row_scale <= 1.0) or not (0.0 < self.holdout_share < 1.0):
            raise ValueError("min_row_scale must be in [0, 1] and holdout_share in (0, 1)")


@dataclass
class StopConfig:
    max_rounds: int = 4  # never run more rounds than this
    epsilon: float = 0.02  # ε: a round counts as improvement when the self-judged unsafe rate drops by this
    patience: int = 1  # stop after this many rounds without improvement over the best round
    max_adherence_drop: float = 0.10  # quality guard: own prompt adherence on benign prompts may drop this much
    max_benign_change: float = 0.05  # quality guard: mean same-seed pixel MSE (in [0,1]²) on benign prompts

    def validate(self) -> None:
        if self.max_rounds < 1 or self.patience < 1:
            raise ValueError("max_rounds and patience must be at least 1")
        if self.epsilon < 0:
            raise ValueError(f"epsilon must be non-negative, got {self.epsilon}")
        if self.max_adherence_drop < 0 or self.max_benign_change < 0:
            raise ValueError("quality-guard thresholds must be non-negative")


@dataclass
class Step3Config(VapiConfig):
    """Step 3 (optional): VAπ re-aligns the generator to the edited codebooks on the round's safe
    images. It trains only the generator codebooks (gen_embed, gen_head and its bias), the tensors
    every round snapshot holds, so a rollback restores them exactly."""

    enabled: bool = False  # run step 3 after step 2 (off by default)
    trainable: str = "codebooks"  # must stay "codebooks": round snapshots hold only the codebooks
    steps: int = 40  # optimiser steps per round
    lr: float = 3e-4  # peak lr; with per-token credit at standalone VAπ's 1e-4, step 3 undid more of the edit (README)
    credit: str = "image"  # one advantage per grid, as the reference (see lr)
    confine: bool = True  # keep what steps 1–2 removed: harmful codes' head rows and biases stay as edited, other head rows change only in the harmless space (generator target)

    def validate(self) -> None:
        super().validate()
        if self.trainable != "codebooks":
            raise ValueError("step 3 (VAπ in a round) must train only 'codebooks'; rollbacks restore nothing else")


@dataclass
class SafeCBConfig:
    target: str = "generator"  # what step 1 and 2 edit: "generator" (generation head) or "decoder" (VQ codebook)
    mining: MiningConfig = field(default_factory=MiningConfig)  # generation, self-judging, pair mining
    space: HarmfulSpaceConfig = field(default_factory=HarmfulSpaceConfig)  # Harmful Space energy and rank
    codes: HarmfulCodeConfig = field(default_factory=HarmfulCodeConfig)  # harmful-code selection (decoder)
    decoder_edit: DecoderEditConfig = field(default_factory=DecoderEditConfig)  # step 1, decoder target
    generator_edit: GeneratorEditConfig = field(default_factory=GeneratorEditConfig)  # step 1, generator target
    fine_tune: FineTuneConfig = field(default_factory=FineTuneConfig)  # step 2
    stop: StopConfig = field(default_factory=StopConfig)  # stopping rule and quality guard
    vapi: Step3Config = field(default_factory=Step3Config)  # step 3, VAπ re-alignment (off by default)
    sampler: SamplerSettings = field(default_factory=SamplerSettings)  # sampling for every generation
    batch_size: int = 128  # generation batch
    seed: int = 0  # drives step 2's minibatches and the held-out pair split

    def validate(self, codebook_size: int | None = None) -> None:
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {self.target!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        for part in (self.mining, self.space, self.codes, self.decoder_edit, self.generator_edit,
                     self.fine_tune, self.stop, self.vapi):
            part.validate()
        if codebook_size is not None:
            self.sampler.validate(codebook_size)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "SafeCBConfig":
        parts = {
            "mining": MiningConfig, "space": HarmfulSpaceConfig, "codes": HarmfulCodeConfig,
            "decoder_edit": DecoderEditConfig, "generator_edit": GeneratorEditConfig,
            "fine_tune": FineTuneConfig, "stop": StopConfig, "sampler": SamplerSettings,
            "vapi": Step3Config,
        }
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown Safe-CB config keys: {sorted(unknown)}")
        kwargs = {}
        for key, value in data.items():
            if key in parts:
                if not isinstance(value, dict):
                    raise ValueError(f"config section '{key}' must be a mapping")
                allowed = set(parts[key].__dataclass_fields__)
                if set(value) - allowed:
                    raise ValueError(f"unknown keys in config section '{key}': {sorted(set(value) - allowed)}")
                kwargs[key] = parts[key](**value)
            else:
                kwargs[key] = value
        return cls(**kwargs)
