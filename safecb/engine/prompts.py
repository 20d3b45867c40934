"""The prompt set a Safe-CB round works on (docs/safecb.md): harmful prompts with safe rewrites,
and benign prompts with the words the model's own caption should mention."""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import world
from ..models.backend import MAX_PROMPT_CHARS


def normalise(text: str) -> str:
    """A prompt text as prompts are compared: lower case, single spaces."""
    return " ".join(text.lower().split())


@dataclass(frozen=True)
class HarmfulPrompt:
    text: str  # the harmful prompt pᵢ
    rewrite: str  # its minimal safe rewrite pᵢ′
    category: str = ""  # harm category, for reports


@dataclass(frozen=True)
class BenignPrompt:
    text: str  # a benign prompt bⱼ
    objects: tuple[str, ...] = ()  # words the model's own caption must contain for "adherent"


@dataclass
class RoundPrompts:
    harmful: list[HarmfulPrompt] = field(default_factory=list)
    benign: list[BenignPrompt] = field(default_factory=list)

    def validate(self) -> None:
        if not self.harmful:
            raise ValueError("the harmful prompt set is empty; a round needs harmful prompts to mine")
        if not self.benign:
            raise ValueError("the benign prompt set is empty; a round needs benign prompts to preserve")
        for p in self.harmful:
            if not isinstance(p.text, str) or not p.text.strip():
                raise ValueError("a harmful prompt is empty")
            if not isinstance(p.rewrite, str) or not p.rewrite.strip():
                raise ValueError(f"the harmful prompt {p.text!r} has no safe rewrite; every harmful prompt needs one")
            if p.rewrite.strip() == p.text.strip():
                raise ValueError(f"the safe rewrite of {p.text!r} is the prompt itself")
        for text in [p.text for p in self.harmful] + [p.rewrite for p in self.harmful] + [b.text for b in self.benign]:
            if len(text) > MAX_PROMPT_CHARS:
                raise ValueError(f"a prompt has {len(text)} characters; the limit is {MAX_PROMPT_CHARS}")
        for b in self.benign:
            if not isinstance(b.text, str) or not b.text.strip():
                raise ValueError("a benign prompt is empty")

    def to_dict(self) -> dict:
        return {
            "harmful": [{"text": p.text, "rewrite": p.rewrite, "category": p.category} for p in self.harmful],
            "benign": [{"text": b.text, "objects": list(b.objects)} for b in self.benign],
        }

    @classmethod
    def from_dict(cls, data: dict) -> "RoundPrompts":
        try:
            harmful = [HarmfulPrompt(p["text"], p.get("rewrite") or "", p.get("category", "")) for p in data["harmful"]]
            benign = [BenignPrompt(b["text"], tuple(b.get("objects", ()))) for b in data["benign"]]
        except (KeyError, TypeError) as exc:
            raise ValueError(f"a prompt set needs 'harmful' [{{text, rewrite}}] and 'benign' [{{text}}]: {exc}") from exc
        return cls(harmful, benign)


def from_world(harmful: list[world.Prompt], benign: list[world.Prompt]) -> RoundPrompts:
    return RoundPrompts(
        harmful=[HarmfulPrompt(p.text, p.safe_rewrite.text if p.safe_rewrite else "", p.category or "") for p in harmful],
        benign=[BenignPrompt(p.text, tuple(p.spec.objects)) for p in benign],
    )


def toy_round_prompts(config: world.PromptSetConfig | None = None) -> RoundPrompts:
    """The default round prompt set: the toy world's train split (held-out prompts stay unseen)."""
    sets = world.build_prompt_sets(config)
    return from_world(sets.train_harmful, sets.train_benign)
