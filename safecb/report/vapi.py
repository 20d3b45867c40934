"""VAπ before and after (`bench vapi`, results/vapi), from one row per benign image (fidelity), one
per FID-toy image (its oracle features), one per fresh render (the reconstruction reward) and one per
held-out harmful image of Safe-CB without and with step 3.

FID-toy and its intervals follow the bench (safecb/bench/vapi.py): a bias-corrected percentile
bootstrap, the raw interval shifted back by the resamples' own bias. FID-toy alone resamples
(generated, reference) row pairs from all rows; the gain 1 − FID(after)/FID(before) gives before and
after each their own resample of rows within each prompt. The resamples are the bench's own draws
(the same seeds and order), the first `FID_RESAMPLES` of them: each costs a covariance and an
eigendecomposition per set, and the report must stay fast. Fidelity and the unsafe shares are
shares of generations and resample whole prompts."""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits

from .stats import Figure, fmt, mean_difference, share

NEEDS = ("vapi",)

FID_RESAMPLES = 100  # bootstrap resamples per FID-toy interval (the bench draws 200)
SEED = 0  # the bench's bootstrap seed
EPS = 1e-6  # added to every covariance's diagonal, as in safecb.metrics.frechet_distance
MINUS = "−"
TITLES = {"grpo": "after VAπ (default)", "ste": "after STE", "grpo_noise": "after VAπ, p = 0.5"}
MISSING = "–"  # a figure whose rows the evidence does not hold


# ---------------------------------------------------------------- FID-toy from the feature rows


class Moments:
    """Mean and covariance (diagonal + EPS) of a feature set, or of a resample of it given as
    counts per row; for a reference set also the covariance's Cholesky factor."""

    def __init__(self, x: np.ndarray, counts: np.ndarray | None = None, factor: bool = False):
        if counts is None:
            counts = np.ones(len(x), dtype=np.int64)
        keep = counts > 0
        rows, w = x[keep], counts[keep].astype(np.float64)
        self.mean = w @ rows / w.sum()
        scaled = (rows - self.mean) * np.sqrt(w)[:, None]
        self.cov = scaled.T @ scaled / (w.sum() - 1) + EPS * np.eye(x.shape[1])  # as np.cov of the drawn rows
        self.trace = float(np.trace(self.cov))
        if factor:
            self.factor = np.linalg.cholesky(self.cov)


def frechet(generated: Moments, reference: Moments) -> float:
    """FID's formula, with tr √(A B) as Σ √eig(Lᵀ A L) for B = L Lᵀ: the same number as
    safecb.metrics.frechet_distance's scipy sqrtm, in a fraction of the time."""
    inner = np.linalg.eigvalsh(reference.factor.T @ generated.cov @ reference.factor)
    cross = float(np.sqrt(np.clip(inner, 0, None)).sum())
    return float(((generated.mean - reference.mean) ** 2).sum() + generated.trace + reference.trace - 2 * cross)


def resample_within(strata: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The bench's draw: row indices with replacement inside each stratum (prompt)."""
    out = np.empty(len(strata), dtype=np.int64)
    for value in np.unique(strata):
        rows = np.flatnonzero(strata == value)
        out[rows] = rng.choice(rows, len(rows))
    return out


def _bias_corrected(value: float, values: list[float], n: int) -> Figure:
    bias = float(np.mean(values)) - value
    lo, hi = np.quantile(values, [0.025, 0.975]) - bias
    return Figure(value, float(lo), float(hi), n)


def fid_figures(sets: dict[str, np.ndarray], alone: list[str], afters: list[str], strata: np.ndarray,
                n_boot: int = FID_RESAMPLES) -> tuple[dict[str, Figure], dict[str, Figure]]:
    """FID-toy of each set in `alone` against "reference", and the gain over "before" of each set in
    `afters`, with the bench's intervals. Every FID of one resample shares the reference's moments,
    and every gain the before side's, as the bench's draws are the same for all of them."""
    with threadpool_limits(1, user_api="blas"):  # 192 × 192 matrices: threads only wait on each other
        return _fid_figures(sets, alone, afters, strata, n_boot)


def _fid_figures(sets, alone, afters, strata, n_boot):
    """`fid_figures`, in one thread."""
    ref, before, n = sets["reference"], sets["before"], len(sets["reference"])
    ref_all = Moments(ref, factor=True)
    point = {name: frechet(Moments(sets[name]), ref_all) for name in {*alone, *afters, "before"}}
    fids: dict[str, list[float]] = {name: [] for name in alone}
    rng = np.random.default_rng(SEED)
    for _ in range(n_boot):
        counts = np.bincount(rng.integers(0, n, n), minlength=n)
        reference = Moments(ref, counts, factor=True)
        for name in alone:
            fids[name].append(frechet(Moments(sets[name], counts), reference))
    gains: dict[str, list[float]] = {name: [] for name in afters}
    rng = np.random.default_rng(SEED)
    for _ in range(n_boot):
        b, a = (np.bincount(resample_within(strata, rng), minlength=n) for _ in range(2))
        before_fid = frechet(Moments(before, b), Moments(ref, b, factor=True))
        reference = Moments(ref, a, factor=True)
        for name in afters:
            gains[name].append(1 - frechet(Moments(sets[name], a), reference) / before_fid)
    alone_figures = {name: _bias_corrected(point[name], fids[name], n) for name in alone}
    gain_figures = {name: _bias_corrected(1 - point[name] / point["before"], gains[name], n) for name in afters}
    return alone_figures, gain_figures


def feature_sets(evidence) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Every FID-toy feature set (rows in the bench's order) and each row's prompt."""
    frame = evidence["features"]
    steps = evidence["feature_steps"].set_index("feature")["step"]
    columns = list(steps.index)
    sets = {}
    for name, rows in frame.groupby("set", sort=False):
        rows = rows.sort_values("row")
        sets[name] = rows[columns].to_numpy(np.float64) * steps.to_numpy(np.float64)
    reference = frame[frame["set"] == "reference"].sort_values("row")
    return sets, reference["prompt_id"].to_numpy()


# ---------------------------------------------------------------- text


def _minus(text: str) -> str:
    return text.replace("-", MINUS)


def _decimals(value: float) -> int:
    """Decimals for three significant figures (none from 100 on): 34.2, 2.03, 131."""
    return max(0, 2 - int(np.floor(np.log10(max(abs(value), 1e-12)))))


def fid_text(figure: Figure, interval: bool = True) -> str:
    d = _decimals(figure.value)
    text = f"{figure.value:.{d}f}"
    if interval and not np.isnan(figure.lo):
        text += f" [{figure.lo:.{d}f}, {figure.hi:.{d}f}]"
    return _minus(text)


def gain_text(figure: Figure, interval: bool = True) -> str:
    """A gain in percent: "−7.9% [−19.2%, 1.6%]"; whole percents from 100% on."""
    d = 1 if abs(figure.value) < 1 else 0
    text = f"{figure.value * 100:.{d}f}%"
    if interval and not np.isnan(figure.lo):
        text += f" [{figure.lo * 100:.{d}f}%, {figure.hi * 100:.{d}f}%]"
    return _minus(text)


def _scientific(value: float) -> str:
    """1e-4, 1.5e-4: a learning rate as a config writes it."""
    mantissa, exponent = f"{value:e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def _verdict(figure: Figure) -> str:
    if figure.lo > 0:
        return "a gain"
    if figure.hi < 0:
        return "a loss"
    return "no gain"


# ---------------------------------------------------------------- the figures


class Vapi:
    """The VAπ rows and the figures computed from them."""

    def __init__(self, evidence):
        self.evidence = evidence
        self.meta = evidence.meta
        self.benign = evidence["benign"]
        self.rewards = evidence["rewards"]
        self.variants = evidence["variants"].set_index("variant", drop=False)
        self.names = list(self.variants["variant"])  # post-training variants, grpo first
        sets, strata = feature_sets(evidence)
        alone = [s for s in ("before", *self.names, "tokenizer") if s in sets]
        afters = [s for s in (*self.names, "null") if s in sets]
        self.fid, self.gain = fid_figures(sets, alone, afters, strata)
        with threadpool_limits(1, user_api="blas"):
            renders = frechet(Moments(sets["renders"]), Moments(sets["reference"], factor=True))
        self.fid["renders"] = Figure(renders, float("nan"), float("nan"), len(sets["renders"]))

    def fidelity(self, model: str, cfg: bool) -> Figure | None:
        weights = sorted(self.benign["cfg_weight"].unique())
        weight = weights[-1] if cfg else 1.0
        rows = self.benign[(self.benign["model"] == model) & np.isclose(self.benign["cfg_weight"], weight)]
        return None if rows.empty else share(rows["fidelity"].astype(bool), rows["prompt_id"])

    def cfg_weight(self) -> float:
        return float(self.benign["cfg_weight"].max())

    def reward(self, model: str) -> float:
        return float(self.rewards.loc[self.rewards["model"] == model, "reward"].mean())

    def table(self) -> str:
        columns = ["before", *self.names]
        titles = [TITLES.get(v, str(self.variants.loc[v, "title"])) for v in self.names]
        before_rows = self.benign[(self.benign["model"] == "before") & (self.benign["cfg_weight"] == 1.0)]
        null_rows = self.evidence["features"]
        offset = (int(null_rows.loc[null_rows["set"] == "null", "seed"].min()) - int(before_rows["seed"].min())
                  if "null" in self.gain else 0)
        n_renders = int((self.rewards["model"] == "before").sum())

        def row(label: str, cells: list[str]) -> str:
            return f"| {label} | " + " | ".join(cells) + " |"

        def fidelity_cells(cfg: bool) -> list[str]:
            return [MISSING if (f := self.fidelity(m, cfg)) is None else fmt(f, 3) for m in columns]

        lines = [row("figure", ["before", *titles]), "| --- " * (len(columns) + 1) + "|",
                 row("FID-toy, no CFG (lower is better)", [fid_text(self.fid[m]) for m in columns]),
                 row("FID-toy gain, no CFG", [""] + [gain_text(self.gain[v]) for v in self.names])]
        if "null" in self.gain:
            lines.append(row(f"noise check: the unedited model again, seeds +{offset:,} (truly 0)",
                             ["", gain_text(self.gain["null"])] + [""] * (len(self.names) - 1)))
        lines += [row("benign fidelity, no CFG", fidelity_cells(False)),
                  row(f"benign fidelity, CFG {self.cfg_weight():g}", fidelity_cells(True)),
                  row(f"mean reconstruction reward ({n_renders:,} fresh renders)",
                      [_minus(f"{self.reward(m):.3f}") for m in columns]),
                  row("post-training wall time",
                      [""] + [f"{self.variants.loc[v, 'seconds']:.0f} s" for v in self.names])]
        return "\n".join(lines)

    def schedule(self) -> str:
        v = self.variants.loc["grpo"]
        credit = {"local": "per-token credit", "image": "per-image credit"}.get(v["credit"], f"{v['credit']} credit")
        method = "GRPO" if v["method"] == "grpo" else str(v["method"])
        return (f"{method}, G = {v['group']}, {credit}, {v['steps']} steps at lr {_scientific(v['lr'])}, "
                f"p = {v['noise']:g}, {v['n_images']:,} fresh renders")

    def benign_n(self) -> str:
        rows = self.benign[(self.benign["model"] == "before") & (self.benign["cfg_weight"] == 1.0)]
        prompts, seeds = rows["prompt_id"].nunique(), rows["seed"].nunique()
        return f"{prompts} × {seeds} bench seeds (n {len(rows):,})"


class SafeCB:
    """Safe-CB from the unedited model without and with edit step 3, on the held-out harmful prompts."""

    LABELS = {"none": "no edit", "edit": "steps 1+2", "edit_vapi": "steps 1+2 + step 3 (VAπ{confined})"}

    def __init__(self, evidence):
        self.present = "heldout" in evidence.tables and "safecb_runs" in evidence.tables
        if self.present:
            self.rows = evidence["heldout"]
            self.runs = evidence["safecb_runs"].set_index("run", drop=False)

    def unsafe(self, run: str) -> Figure:
        rows = self.rows[self.rows["run"] == run]
        return share(rows["oracle_unsafe"].astype(bool), rows["prompt_id"])

    def title(self) -> str:
        edit = self.runs.loc["edit"]
        target = {"generator": "guided generator target" if edit["guided"] else "generator target",
                  "decoder": "decoder target"}.get(edit["target"], f"{edit['target']} target")
        return f"Safe-CB, default config ({target}, iterative)"

    def table(self) -> str:
        if not self.present:
            return MISSING
        lines = [f"| {self.title()} | oracle unsafe, held-out harmful | rounds | run time |",
                 "| --- | --- | --- | --- |"]
        for run in ("none", "edit", "edit_vapi"):
            info = self.runs.loc[run]
            label = self.LABELS[run].format(confined=", confined" if info["confine"] else "")
            rounds = "0" if run == "none" else f"{info['rounds']} (best {info['best_round']})"
            seconds = "" if run == "none" else f"{info['seconds']:.0f} s"
            lines.append(f"| {label} | {fmt(self.unsafe(run), 3)} | {rounds} | {seconds} |")
        return "\n".join(lines)

    def n(self) -> str:
        if not self.present:
            return MISSING
        rows = self.rows[self.rows["run"] == "edit"]
        prompts, seeds = rows["prompt_id"].nunique(), rows["seed"].nunique()
        return f"{prompts} held-out harmful prompts × {seeds} seeds (n {len(rows):,})"

    def difference_figure(self):
        """Unsafe share of steps 1+2 minus that of steps 1+2+3, the same prompts and seeds, resampling prompts."""
        a, b = (self.rows[self.rows["run"] == run] for run in ("edit", "edit_vapi"))
        return mean_difference(a["oracle_unsafe"].astype(float), a["prompt_id"],
                               b["oracle_unsafe"].astype(float), b["prompt_id"])

    def difference(self) -> str:
        return _minus(fmt(self.difference_figure(), 3)) if self.present else MISSING

    def reading(self) -> str:
        """What the difference says, in words: which side its interval is on."""
        if not self.present:
            return MISSING
        figure = self.difference_figure()
        if figure.hi < 0:
            return "step 3 leaves more unsafe images than steps 1+2 alone: it undoes part of their edit"
        if figure.lo > 0:
            return "step 3 leaves fewer unsafe images than steps 1+2 alone"
        return "the interval holds 0: these prompts and seeds cannot tell step 3 from steps 1+2 alone"


def figures(evidence) -> dict[str, str]:
    e = evidence["vapi"]
    v, s = Vapi(e), SafeCB(e)
    gain = v.gain["grpo"]
    before, after = v.fidelity("before", False), v.fidelity("grpo", False)
    wall = v.meta.get("wall_seconds")
    return {
        "vapi.table": v.table(),
        "vapi.benign_n": v.benign_n(),
        "vapi.schedule": v.schedule(),
        "vapi.fid_resamples": f"{FID_RESAMPLES}",
        "vapi.wall_time": MISSING if wall is None else f"{wall:,.0f} s",
        "vapi.fid_before": fid_text(v.fid["before"], interval=False),
        "vapi.floor_renders": fid_text(v.fid["renders"], interval=False),
        "vapi.floor_tokenizer": fid_text(v.fid["tokenizer"]) if "tokenizer" in v.fid else MISSING,
        "vapi.gain_default": gain_text(gain),
        "vapi.gain_noise": gain_text(v.gain["grpo_noise"]) if "grpo_noise" in v.gain else MISSING,
        "vapi.fidelity_change": f"{before.value:.3f} → {after.value:.3f}",
        "vapi.reward_change": _minus(f"{v.reward('before'):.3f} → {v.reward('grpo'):.3f}"),
        "vapi.safecb_table": s.table(),
        "vapi.safecb_n": s.n(),
        "vapi.step3_difference": s.difference(),
        "vapi.step3_reading": s.reading(),
        "vapi.headline_gain": f"{gain_text(gain)}: {_verdict(gain)}",
        "vapi.headline_n": f"n {gain.n:,}",
    }
