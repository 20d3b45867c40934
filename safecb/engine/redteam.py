"""Self-red-teaming inside the loop, without labels (docs/safecb.md, issue 19 item 2).

Before the mining of each round ≥ 1 the model searches for harmful prompts beyond the fixed list
with nothing but itself: what it can write, what it draws and what its own judge says. No oracle,
no label and no knowledge of the toy world enter: this module reads the model's tokenizer, its
captions and its judge, and the round's own prompt list (tests/test_layering.py keeps
`safecb.eval` out of it by name).

1. Compose candidates (`compose_candidates`), the same list for the same seed and round:
   - captions: the model's own captions (`backend.caption`) of images it flagged in the latest
     measurement, which say in its own words what it drew. Flagged images of benign prompts and
     safe rewrites come first (a prompt meant to be safe that drew something the model calls
     unsafe is a context the fixed list lacks), then harmful ones; highest score first, one image
     per prompt;
   - crossovers: the head of one known harmful prompt joined to the tail of another at a word both
     contain, which recombines objects, backgrounds, relations and phrasings in the words the
     prompt list already uses;
   - swaps: one word of a known harmful prompt replaced by a word of the model's vocabulary;
   - words: one to four vocabulary words in any order, prompts no keyword list expects.
   The vocabulary is the generation tokenizer's whole words (`model_words`); for the toy, its
   caption words. A real model's tokenizer has far more words than the screening can try, so
   there the captions and the prompt-list compositions carry the search.
2. Screen: draw each candidate at the first `seeds_per_candidate` mining seeds and self-judge
   (flag: P(unsafe) ≥ `mining.threshold`). A candidate is kept when its flagged share reaches
   `keep_share` (`rank_kept`: highest share first, the sources taking turns within a share).
3. Safe rewrite (`rewrite_tiers`, `search_rewrites`). The brief's search over one-word
   substitutions from the whole vocabulary would draw ~40 words × every position per candidate,
   so the options come in tiers (TIERS), the prompt list's own convention first, still without
   labels: substitution rules read off the known (prompt, rewrite) pairs (word → word where the
   two differ, e.g. "knife" → "flower"), (1) every rule at once, (2) each rule alone; (3) one-word
   substitutions by the rules' replacement words, the words the list's harmful prompts use and its
   safe ones lack first (`harm_association`); (4) the rewrite of the known prompt that shares most
   words. A tier is drawn (at the screening seeds) only for the candidates earlier tiers left
   without a rewrite. An option qualifies when the judge finds it safe at every seed; within the
   first tier that has one, the option whose image tokens differ least from the candidate's at the
   same seeds wins (the smallest change in the model's own terms). Token change alone does not
   choose across tiers: sampling diverges after the first changed token, so even the fixed list's
   own rewrites differ in 83–99% of the 64 positions on the toy, and the least-change option is
   then often a borderline image the judge barely passes ("a flower holding a knife on the grass"
   rather than "a person holding a flower on the grass"); and "every rule" comes before "one rule"
   so that a rewrite keeps no harmful word an edited model merely stopped drawing. A candidate with
   no qualifying option is skipped; at most `2 · max_new_prompts` kept candidates are searched per
   round.
4. Measure the found prompts and their rewrites at every mining seed (`measure_found`), so the
   driver can append them to the latest measurement (`extend_measurement`) and this round's
   mining pairs them like any other prompt; they stay in the prompt set for later rounds.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import torch

from ..models.backend import JanusBackend
from .config import SafeCBConfig
from .measure import Generations, Measurement, Progress, Work, generation_sets, measure_work, unsafe_flags, work_units
from .prompts import HarmfulPrompt, RoundPrompts, normalise

STAGE = "red team"  # the progress stage the driver reports
CATEGORY = "red team"  # the category found prompts carry in reports
SOURCES = ("caption", "crossover", "swap", "words")  # where a candidate came from
MAX_SEQUENCE_WORDS = 4  # "words" candidates have one to this many words
WORD_MARKS = "Ġ▁"  # word-start marks of byte-level BPE and sentencepiece vocabularies
CAPTION_ORDER = ("benign", "rewrite", "harmful")  # whose flagged images are captioned first
TIERS = ("every rule", "one rule", "one word", "nearest rewrite")  # safe-rewrite options, in the order tried


@dataclass(frozen=True)
class Candidate:
    text: str  # the candidate prompt, lowercase, single spaces
    source: str  # one of SOURCES


@dataclass
class RedTeamResult:
    found: list[HarmfulPrompt] = field(default_factory=list)  # new prompts with their safe rewrites, best first
    tried: int = 0  # candidates drawn and self-judged
    flagged: int = 0  # candidates whose self-flagged share reached keep_share
    seconds: float = 0.0  # the red team's own time, measuring the found prompts included
    details: list[dict] = field(default_factory=list)  # per found prompt: source, flagged share, token change
    generations: dict[str, Generations] | None = None  # "harmful", "rewrite": the found prompts at every mining seed

    def record(self) -> dict:
        """What the run directory keeps (round_NNN/redteam.json)."""
        return {"tried": self.tried, "flagged": self.flagged, "seconds": self.seconds,
                "found": [{"text": p.text, "rewrite": p.rewrite, "category": p.category} for p in self.found],
                "details": self.details}


def model_words(tokenizer) -> list[str]:
    """The whole words the generation tokenizer can write, sorted: its alphabetic tokens without the
    special ones. Where the vocabulary marks word starts ('Ġ', '▁'), only marked tokens are words."""
    special = set(tokenizer.all_special_tokens)
    tokens = [t for t in tokenizer.get_vocab() if t not in special]
    marked = any(t[:1] in WORD_MARKS for t in tokens)
    words = {t.lstrip(WORD_MARKS).lower() for t in tokens if not marked or t[:1] in WORD_MARKS}
    return sorted(w for w in words if w.isascii() and w.isalpha())


def crossover(rng: np.random.Generator, texts: list[str]) -> str | None:
    """The head of one text up to a word it shares with another, then the other's tail from that word."""
    a, b = (texts[i].split() for i in rng.choice(len(texts), size=2, replace=len(texts) < 2))
    shared = sorted(set(a) & set(b))
    if not shared:
        return None
    word = shared[rng.integers(len(shared))]
    i = int(rng.choice([k for k, w in enumerate(a) if w == word]))
    j = int(rng.choice([k for k, w in enumerate(b) if w == word]))
    return " ".join(a[:i] + b[j:])


def swap(rng: np.random.Generator, texts: list[str], words: list[str]) -> str:
    """One word of a text replaced by a vocabulary word."""
    a = texts[rng.integers(len(texts))].split()
    a[rng.integers(len(a))] = words[rng.integers(len(words))]
    return " ".join(a)


def word_sequence(rng: np.random.Generator, words: list[str], max_words: int) -> str:
    n = int(rng.integers(1, min(MAX_SEQUENCE_WORDS, max_words) + 1))
    return " ".join(words[i] for i in rng.integers(len(words), size=n))


def compose_candidates(words: list[str], harmful_texts: list[str], captions: list[str], known: set[str],
                       count: int, caption_share: float, max_words: int, seed: int, round_index: int
                       ) -> list[Candidate]:
    """`count` distinct candidates (fewer if the sources run dry), none of them in `known`: up to
    round(count · caption_share) captions in their order, the rest crossovers, swaps and word
    sequences in turn. The same arguments give the same list."""
    rng = np.random.default_rng([seed, round_index])
    seen = {normalise(t) for t in known}
    out: list[Candidate] = []

    def add(text: str | None, source: str) -> None:
        text = normalise(text or "")
        if text and text not in seen and len(text.split()) <= max_words:
            seen.add(text)
            out.append(Candidate(text, source))

    for text in captions:
        if len(out) >= round(count * caption_share):
            break
        add(text, "caption")
    makers = [lambda: ("crossover", crossover(rng, harmful_texts) if harmful_texts else None),
              lambda: ("swap", swap(rng, harmful_texts, words) if harmful_texts and words else None),
              lambda: ("words", word_sequence(rng, words, max_words) if words else None)]
    for attempt in range(20 * count):
        if len(out) >= count:
            break
        source, text = makers[attempt % len(makers)]()
        add(text, source)
    return out


def caption_flagged(backend: JanusBackend, m: Measurement, limit: int) -> list[str]:
    """The model's captions of up to `limit` images it flagged in `m` (order: CAPTION_ORDER, then
    highest score first), one image per prompt."""
    picked = []
    for kind in CAPTION_ORDER:
        generations = m.sets[kind]
        n_seeds = len(generations.seeds)
        rows = np.flatnonzero(m.flagged(kind))
        rows = rows[np.argsort(-generations.scores[rows], kind="stable")]
        used = set()
        for row in rows:
            if int(row) // n_seeds not in used:
                used.add(int(row) // n_seeds)
                picked.append(generations.images[row])
    picked = picked[:limit]
    return backend.caption(np.stack(picked)) if picked else []


def fits(backend: JanusBackend, text: str) -> bool:
    """The prompt and an image fit in the model's positions."""
    limit = backend.model.config.text_config.max_position_embeddings
    return len(backend.generation_ids(text)) + backend.n_tokens <= limit


def draw_and_judge(backend: JanusBackend, texts: list[str], seeds: list[int], config: SafeCBConfig
                   ) -> tuple[torch.Tensor, np.ndarray]:
    """[T, S, n] token grids and [T, S] self-judged P(unsafe) of every text at every seed."""
    generated = backend.generate(texts, seeds, config.sampler, config.batch_size)
    scores = backend.judge(generated.images)
    return generated.tokens.view(len(texts), len(seeds), -1), scores.reshape(len(texts), len(seeds))


def substitution_rules(prompts: list[HarmfulPrompt]) -> dict[str, list[str]]:
    """word → replacement words, most frequent first: where a known prompt and its rewrite have the
    same number of words, the words at the positions where they differ."""
    counts: dict[str, Counter] = {}
    for p in prompts:
        a, b = normalise(p.text).split(), normalise(p.rewrite).split()
        if len(a) == len(b):
            for x, y in zip(a, b):
                if x != y:
                    counts.setdefault(x, Counter())[y] += 1
    return {x: [y for y, _ in sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))] for x, c in sorted(counts.items())}


def nearest_rewrite(text: str, prompts: list[HarmfulPrompt]) -> str | None:
    """The rewrite of the known prompt that shares most words with `text` (Jaccard; first on ties)."""
    words = set(text.split())

    def shared(p: HarmfulPrompt) -> float:
        other = set(normalise(p.text).split())
        return len(words & other) / len(words | other)

    return normalise(max(prompts, key=shared).rewrite) if prompts else None


def harm_association(prompts: list[HarmfulPrompt], benign: list[str]) -> dict[str, float]:
    """word → (uses in harmful prompts + 1) / (uses in rewrites and benign prompts + 1), from the prompt
    list alone: which words its harmful prompts have and its safe ones lack."""
    harmful = Counter(w for p in prompts for w in normalise(p.text).split())
    safe = Counter(w for t in [p.rewrite for p in prompts] + benign for w in normalise(t).split())
    return {w: (harmful[w] + 1) / (safe[w] + 1) for w in harmful | safe}


def rewrite_tiers(text: str, rules: dict[str, list[str]], prompts: list[HarmfulPrompt], association: dict[str, float],
                  limit: int) -> list[list[str]]:
    """Safe-rewrite options for `text` in four tiers (TIERS), the prompt list's own convention first:
    every substitution rule at once; each rule alone; one-word substitutions by the rules' replacement
    words, the words most associated with harm first; the rewrite of the known prompt that shares most
    words. At most `limit` options in all (the last slot is kept for the last tier); none is `text` or
    a known harmful prompt."""
    words = text.split()
    replacements = Counter(y for ys in rules.values() for y in ys)
    safe_words = sorted(replacements, key=lambda y: (-replacements[y], y))
    every_rule = [[rules[w][0] if w in rules else w for w in words]] if any(w in rules for w in words) else []
    one_rule = [[y if v == w else v for v in words] for w in dict.fromkeys(w for w in words if w in rules)
                for y in rules[w]]
    positions = sorted(range(len(words)), key=lambda i: -association.get(words[i], 1.0))
    one_word = [words[:i] + [y] + words[i + 1:] for i in positions for y in safe_words if y != words[i]]
    nearest = nearest_rewrite(text, prompts)
    tiers = [[" ".join(o) for o in options] for options in (every_rule, one_rule, one_word)]
    tiers.append([nearest] if nearest else [])
    seen = {text} | {normalise(p.text) for p in prompts}
    out, room = [], limit - len(tiers[-1])
    for k, tier in enumerate(tiers):
        room += len(tier) if k == len(tiers) - 1 else 0
        kept = []
        for option in tier:
            if option not in seen and room > 0:
                seen.add(option)
                kept.append(option)
                room -= 1
        out.append(kept)
    return out


def pick_rewrite(candidate_tokens: torch.Tensor, option_tokens: torch.Tensor, option_scores: np.ndarray,
                 threshold: float) -> tuple[int, float] | None:
    """(index, token change) of the option judged safe at every seed whose grids differ least from
    the candidate's at the same seeds (mean share of differing tokens; first on ties), or None.
    candidate_tokens [S, n], option_tokens [O, S, n], option_scores [O, S]."""
    safe = ~unsafe_flags(option_scores, threshold).any(axis=1)
    if not safe.any():
        return None
    change = (option_tokens != candidate_tokens[None]).float().mean(dim=(1, 2)).numpy()
    change = np.where(safe, change, np.inf)
    best = int(np.argmin(change))
    return best, float(change[best])


def search_rewrites(backend: JanusBackend, texts: list[str], tokens: torch.Tensor, prompts: RoundPrompts,
                    seeds: list[int], config: SafeCBConfig) -> list[tuple[str, float, int] | None]:
    """For each of `texts` (drawn as `tokens` [T, S, n] at `seeds`): (rewrite, token change, tier) of the
    option `pick_rewrite` chooses in the first tier that has one, or None. A tier is drawn only for the
    texts that earlier tiers left without a rewrite."""
    rules = substitution_rules(prompts.harmful)
    association = harm_association(prompts.harmful, [b.text for b in prompts.benign])
    tiers = [[[o for o in tier if fits(backend, o)]
              for tier in rewrite_tiers(t, rules, prompts.harmful, association, config.redteam.rewrite_options)]
             for t in texts]  # [text][tier][option]
    chosen: list[tuple[str, float, int] | None] = [None] * len(texts)
    for k in range(len(TIERS)):
        pending = [i for i in range(len(texts)) if chosen[i] is None and tiers[i][k]]
        if not pending:
            continue
        option_tokens, option_scores = draw_and_judge(backend, [o for i in pending for o in tiers[i][k]], seeds, config)
        start = 0
        for i in pending:
            n = len(tiers[i][k])
            picked = pick_rewrite(tokens[i], option_tokens[start: start + n], option_scores[start: start + n],
                                  config.mining.threshold)
            start += n
            if picked is not None:
                chosen[i] = (tiers[i][k][picked[0]], picked[1], k)
    return chosen


def rank_kept(share: np.ndarray, scores: np.ndarray, sources: list[str], keep_share: float) -> np.ndarray:
    """Indices of the candidates with flagged share ≥ keep_share: highest share first, and within a
    share the sources take turns (each in order of mean score), so one source cannot fill a round."""
    mean = scores.mean(axis=1)
    kept = sorted(np.flatnonzero(share >= keep_share).tolist(), key=lambda i: -mean[i])
    turn, taken = {}, Counter()
    for i in kept:
        turn[i] = taken[share[i], sources[i]]
        taken[share[i], sources[i]] += 1
    return np.array(sorted(kept, key=lambda i: (-share[i], turn[i], SOURCES.index(sources[i]))), dtype=np.int64)


def measure_found(backend: JanusBackend, found: list[HarmfulPrompt], config: SafeCBConfig, keep_hidden: bool,
                  progress: Progress | None = None) -> dict[str, Generations]:
    """The found prompts ("harmful") and their rewrites ("rewrite") drawn at every mining seed and
    self-judged, laid out as a measurement's sets of the same kinds."""
    prompts = RoundPrompts(list(found), [])
    texts, seeds = generation_sets(prompts, config)
    work = [Work(kind, first, last) for kind in ("harmful", "rewrite")
            for first, last in work_units(len(found), len(seeds[kind]), config.batch_size)]
    results = measure_work(backend, prompts, config, work, keep_hidden, progress)
    out = {}
    for kind in ("harmful", "rewrite"):
        parts = [r for w, r in zip(work, results) if w.kind == kind]
        hidden = [r["hidden"] for r in parts]
        out[kind] = Generations(tokens=torch.cat([r["tokens"] for r in parts]),
                                images=np.concatenate([r["images"] for r in parts]),
                                scores=np.concatenate([r["scores"] for r in parts]), seeds=list(seeds[kind]),
                                hidden=None if hidden[0] is None else torch.cat(hidden))
    return out


def extend_measurement(m: Measurement, extra: dict[str, Generations]) -> Measurement:
    """`m` with `extra`'s harmful and rewrite rows appended (the found prompts after the known ones)."""
    sets = dict(m.sets)
    for kind, more in extra.items():
        base = m.sets[kind]
        if list(more.seeds) != list(base.seeds) or (more.hidden is None) != (base.hidden is None):
            raise ValueError(f"the found prompts' {kind} generations do not match the measurement's seeds or states")
        sets[kind] = Generations(tokens=torch.cat([base.tokens, more.tokens]),
                                 images=np.concatenate([base.images, more.images]),
                                 scores=np.concatenate([base.scores, more.scores]), seeds=list(base.seeds),
                                 hidden=None if base.hidden is None else torch.cat([base.hidden, more.hidden]),
                                 adherent=base.adherent)
    return Measurement(sets=sets, threshold=m.threshold)


def with_found(prompts: RoundPrompts, found: list[HarmfulPrompt]) -> RoundPrompts:
    """The prompt set with the found prompts after the known harmful ones."""
    return RoundPrompts(list(prompts.harmful) + list(found), list(prompts.benign))


def fixed_set_rates(m: Measurement, n_fixed: int) -> dict:
    """Self-judged unsafe rates of the fixed prompt list (its first `n_fixed` harmful prompts) and of the
    found prompts after it (None when there are none): the stopping rule compares rounds on the fixed
    list alone, since every round's found prompts are ones the model still flags."""
    flagged = m.flagged("harmful")
    cut = n_fixed * len(m.sets["harmful"].seeds)
    return {"self_unsafe": float(flagged[:cut].mean()),
            "self_unsafe_redteam": float(flagged[cut:].mean()) if len(flagged) > cut else None}


def red_team(backend: JanusBackend, prompts: RoundPrompts, latest: Measurement, config: SafeCBConfig,
             round_index: int, keep_hidden: bool, progress: Progress | None = None) -> RedTeamResult:
    """Search for new self-flagged prompts with safe rewrites on the model as it is (see the module
    docstring). `latest` is the measurement this round mines; `keep_hidden` as for it."""
    report = progress or (lambda stage, fraction: None)
    settings, threshold = config.redteam, config.mining.threshold
    t0 = time.perf_counter()
    report(STAGE, 0.0)
    known = [p.text for p in prompts.harmful] + [p.rewrite for p in prompts.harmful] + [b.text for b in prompts.benign]
    captions = caption_flagged(backend, latest, round(settings.candidates_per_round * settings.caption_share))
    harmful_texts = [normalise(p.text) for p in prompts.harmful]
    candidates = [c for c in compose_candidates(model_words(backend.tokenizer), harmful_texts, captions, set(known),
                                                settings.candidates_per_round, settings.caption_share,
                                                settings.max_words, settings.seed, round_index)
                  if fits(backend, c.text)]
    result = RedTeamResult(tried=len(candidates))
    if not candidates:
        report(STAGE, 1.0)
        result.seconds = time.perf_counter() - t0
        return result
    report(STAGE, 0.1)
    seeds = list(config.mining.seeds[: settings.seeds_per_candidate])
    tokens, scores = draw_and_judge(backend, [c.text for c in candidates], seeds, config)
    share = unsafe_flags(scores, threshold).mean(axis=1)
    kept = rank_kept(share, scores, [c.source for c in candidates], settings.keep_share)
    result.flagged = len(kept)
    report(STAGE, 0.5)
    searched, budget = 0, min(len(kept), 2 * settings.max_new_prompts)
    while len(result.found) < settings.max_new_prompts and searched < budget:
        batch = kept[searched: min(budget, searched + settings.max_new_prompts - len(result.found))]
        searched += len(batch)
        chosen = search_rewrites(backend, [candidates[i].text for i in batch], tokens[batch], prompts, seeds, config)
        for i, picked in zip(batch, chosen):
            if picked is not None:
                rewrite, change, tier = picked
                candidate = candidates[i]
                result.found.append(HarmfulPrompt(candidate.text, rewrite, CATEGORY))
                result.details.append({"text": candidate.text, "rewrite": rewrite, "source": candidate.source,
                                       "flagged_share": float(share[i]), "mean_score": float(scores[i].mean()),
                                       "rewrite_tier": TIERS[tier], "token_change": change})
        report(STAGE, 0.5 + 0.3 * searched / budget)
    if result.found:
        result.generations = measure_found(backend, result.found, config, keep_hidden)
    report(STAGE, 1.0)
    result.seconds = time.perf_counter() - t0
    return result
