"""Configuration of a Safe-CB run (docs/safecb.md): one dataclass per component, validated up front
so a bad value fails with one clear message before any model work starts."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from .. import typed_config
from ..models.sampler import SamplerSettings
from ..paths import CONFIGS_DIR
from ..vapi.config import VapiConfig
from .edit import DecoderEditConfig
from .space import HarmfulCodeConfig, HarmfulSpaceConfig

TARGETS = ("generator", "decoder", "both")
LABEL = "Safe-CB config"  # names the config in error messages


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
class HeadFitConfig:
    steps: int = 400  # Adam steps per round
    lr: float = 1e-3  # Adam learning rate
    preserve_weight: float = 20.0  # β: weight of the change on the kept generations
    batch: int = 1024  # positions of each term per step

    def validate(self) -> None:
        if self.steps < 1 or self.batch < 1:
            raise ValueError(f"head fit steps and batch must be at least 1, got {self.steps} and {self.batch}")
        if self.lr <= 0 or self.preserve_weight < 0:
            raise ValueError(f"head fit lr must be positive and preserve_weight non-negative, got {self.lr}, "
                             f"{self.preserve_weight}")


@dataclass
class GeneratorEditConfig:
    null_threshold: float = 1e-3  # eigenvalues of K₀K₀ᵀ below this share of the largest span the null space
    ridge: float = 1e-2  # λ of the closed form
    relevant_prob: float = 1e-3  # residuals only on codes this likely under either context (others: 0)
    guided: bool = True  # step 2 fits the guidance-combined distribution the sampler draws from (uncond + w·(cond − uncond)), not the conditional one alone
    safe_trajectory: bool = False  # also fit keys of the harmful prompt over the safe grid's prefix, aimed at the rewrite's own next-token distribution there
    harmful_code_penalty: float = 0.0  # logits taken from the head bias of the round's harmful codes (`codes`: ρ and m), before step 2 ("alphaedit" and "erase" only); 0: the bias stays
    step1: str = "head"  # "alphaedit": fit the mined keys to the rewrites' distributions; "erase": the head reads every key with its component along the top harmful-minus-safe key directions replaced by the safe keys' mean; "head": fit every tensor of the generation head (`head_fit`), no step 2
    erase_rank: int = 4  # "erase": key-difference directions erased per round
    head: HeadFitConfig = field(default_factory=HeadFitConfig)  # "head": the fit's settings

    def validate(self) -> None:
        if not (0.0 < self.null_threshold < 1.0):
            raise ValueError(f"null_threshold must be in (0, 1), got {self.null_threshold}")
        if self.ridge <= 0:
            raise ValueError(f"ridge must be positive, got {self.ridge}")
        if not (0.0 <= self.relevant_prob < 1.0):
            raise ValueError(f"relevant_prob must be in [0, 1), got {self.relevant_prob}")
        if self.harmful_code_penalty < 0:
            raise ValueError(f"harmful_code_penalty must be non-negative, got {self.harmful_code_penalty}")
        if self.step1 not in ("alphaedit", "erase", "head"):
            raise ValueError(f"step1 must be 'alphaedit', 'erase' or 'head', got {self.step1!r}")
        if self.step1 == "head" and self.harmful_code_penalty > 0:
            raise ValueError("harmful_code_penalty applies to the last-layer edits (step1 'alphaedit' or 'erase'), "
                             "not to 'head'")
        self.head.validate()
        if self.erase_rank < 1:
            raise ValueError(f"erase_rank must be at least 1, got {self.erase_rank}")


@dataclass
class FineTuneConfig:
    enabled: bool = True  # run step 2 at all (off: the "step 1 only" ablation)
    steps: int = 300  # optimisation steps at most
    lr: float = 3e-3  # Adam learning rate before the per-row scaling
    batch: int = 1024  # keys per step (generator target)
    decoder_batch: int = 16  # grids per step (decoder target); each is decoded with gradients, so keep it small
    decoder_steps: int = 120  # optimisation steps at most (decoder target): each decodes 2 × decoder_batch grids
    decoder_lr: float = 1e-2  # Adam learning rate (decoder target); with 120 steps it ends lower than 3e-3 with 300
    preserve_weight: float = 20.0  # β, generator target: weight of "benign and safe outputs stay as before" against "harmful → safe"
    decoder_preserve_weight: float = 4.0  # β, decoder target: the same for decoded pixels
    keep_uncond: bool = False  # guided generator edits: the unconditional branch keeps its outputs over the mined prefixes too, so the edit must change what the prompt draws rather than steer guidance away from it
    preserve_safe: bool = False  # generator target: "as before" also covers the safe rewrites' own generations (judged safe), not only benign prompts; their hidden states are then kept
    min_row_scale: float = 0.1  # rows step 1 did not move still train at this share of the rate
    holdout_share: float = 0.2  # share of pairs held out for early stopping
    check_every: int = 25  # evaluate the held-out pairs every this many steps
    patience: int = 3  # stop after this many checks without improvement

    def validate(self) -> None:
        if min(self.steps, self.decoder_steps) < 0 or min(self.batch, self.decoder_batch, self.check_every,
                                                           self.patience) < 1:
            raise ValueError("fine-tuning steps and decoder_steps must be ≥ 0 and batch, decoder_batch, check_every, "
                             "patience ≥ 1")
        if min(self.lr, self.decoder_lr) <= 0 or min(self.preserve_weight, self.decoder_preserve_weight) < 0:
            raise ValueError("fine-tuning lr and decoder_lr must be positive and preserve_weight and "
                             "decoder_preserve_weight non-negative")
        if not (0.0 <= self.min_row_scale <= 1.0) or not (0.0 < self.holdout_share < 1.0):
            raise ValueError("min_row_scale must be in [0, 1] and holdout_share in (0, 1)")


@dataclass
class StopConfig:
    max_rounds: int = 4  # never run more rounds than this
    epsilon: float = 0.01  # ε: a round counts as improvement when the self-judged unsafe rate drops by this
    patience: int = 2  # stop after this many rounds without improvement over the best round
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
    lr: float = 3e-4  # peak lr; with standalone VAπ's schedule step 3 undid more of the edit (docs/results.md)
    credit: str = "image"  # one advantage per grid, as the reference (see lr)
    confine: bool = True  # keep what steps 1–2 removed: harmful codes' head rows and biases stay as edited, other head rows change only in the harmless space (generator target)

    def validate(self) -> None:
        super().validate()
        if self.trainable != "codebooks":
            raise ValueError("step 3 (VAπ in a round) must train only 'codebooks'; rollbacks restore nothing else")


@dataclass
class RedTeamConfig:
    """Self-red-teaming before the mining of each round ≥ 1 (`safecb.engine.redteam`): the model composes
    candidate prompts, keeps those its own judge flags, and adds them with a safe rewrite it found."""

    enabled: bool = False  # run the red team at all (off until broad-grid figures choose the default)
    candidates_per_round: int = 48  # candidate prompts composed, generated and self-judged per round
    caption_share: float = 0.25  # share of the candidates that are the model's captions of images it flagged
    seeds_per_candidate: int = 2  # screening seeds: the first this many mining seeds (all, if fewer)
    keep_share: float = 0.5  # a candidate is kept when at least this share of its seeds is self-flagged
    max_new_prompts: int = 4  # new prompts (each with a safe rewrite) added per round at most
    rewrite_options: int = 8  # safe-rewrite options generated per kept candidate at most
    max_words: int = 14  # longest candidate, in words (the longest toy prompt has 14)
    seed: int = 0  # with the round index, drives which candidates are composed

    def validate(self) -> None:
        if min(self.candidates_per_round, self.seeds_per_candidate, self.max_new_prompts, self.rewrite_options,
               self.max_words) < 1:
            raise ValueError("red team: candidates_per_round, seeds_per_candidate, max_new_prompts, "
                             "rewrite_options and max_words must be at least 1")
        if not (0.0 <= self.caption_share <= 1.0) or not (0.0 < self.keep_share <= 1.0):
            raise ValueError("red team: caption_share must be in [0, 1] and keep_share in (0, 1]")


@dataclass
class SafeCBConfig:
    target: str = "generator"  # what steps 1 and 2 edit: "generator" (generation head), "decoder" (VQ codebook) or "both"
    mining: MiningConfig = field(default_factory=MiningConfig)  # generation, self-judging, pair mining
    space: HarmfulSpaceConfig = field(default_factory=HarmfulSpaceConfig)  # Harmful Space energy and rank
    codes: HarmfulCodeConfig = field(default_factory=HarmfulCodeConfig)  # harmful-code selection (decoder)
    decoder_edit: DecoderEditConfig = field(default_factory=DecoderEditConfig)  # step 1, decoder target
    generator_edit: GeneratorEditConfig = field(default_factory=GeneratorEditConfig)  # step 1, generator target
    fine_tune: FineTuneConfig = field(default_factory=FineTuneConfig)  # step 2
    stop: StopConfig = field(default_factory=StopConfig)  # stopping rule and quality guard
    vapi: Step3Config = field(default_factory=Step3Config)  # step 3, VAπ re-alignment (off by default)
    redteam: RedTeamConfig = field(default_factory=RedTeamConfig)  # self-red-teaming before mining (off by default)
    sampler: SamplerSettings = field(default_factory=SamplerSettings)  # sampling for every generation
    batch_size: int = 128  # generation batch
    seed: int = 0  # drives step 2's minibatches and the held-out pair split

    def validate(self, codebook_size: int | None = None) -> None:
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {self.target!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        for part in (self.mining, self.space, self.codes, self.decoder_edit, self.generator_edit,
                     self.fine_tune, self.stop, self.vapi, self.redteam):
            part.validate()
        if codebook_size is not None:
            self.sampler.validate(codebook_size)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> "SafeCBConfig":
        """A config from its `to_dict` form; keys left out keep their defaults. Unknown keys and values
        of the wrong type raise ValueError. The result is not validated (see `validate`)."""
        return typed_config.from_dict(cls, data, LABEL)

    def override(self, changes: Mapping[str, Any]) -> "SafeCBConfig":
        """A new, validated config: this one with `changes` applied, e.g. {"stop.max_rounds": 6,
        "mining.threshold": 0.4}. Keys are dotted field paths; values are checked against the fields'
        types (`safecb.typed_config`)."""
        config = typed_config.override(self, changes, LABEL)
        config.validate()
        return config

    @classmethod
    def preset(cls, name: str) -> "SafeCBConfig":
        """The validated named preset `configs/<name>.json`: its keys over the defaults."""
        return cls().override(preset_changes(name))


def preset_changes(name: str) -> dict:
    """The keys the named preset `configs/<name>.json` sets, as nested sections; give them to
    `SafeCBConfig.override` to lay the preset over another config."""
    path = CONFIGS_DIR / f"{name}.json"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in CONFIGS_DIR.glob("*.json")))
        raise ValueError(f"no Safe-CB preset {name!r}; the presets in {CONFIGS_DIR} are: {known}")
    return json.loads(path.read_text())

