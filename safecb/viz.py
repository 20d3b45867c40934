"""Figures for the studio: the codebook map (UMAP of codebook rows coloured by
their projection on the Harmful Space, with drift arrows between two rounds) and the per-round
metrics curves with their intervals (docs/studio.md). No gradio, no database.

    m = compute_codebook_map(rows_a, rows_b, basis, harmful)   # rows: prepare_rows(name, codebook)
    fig = codebook_map_figure(m, title="run 3 · original → round 2")
    fig = metrics_figure(store_rounds_metrics)

Drift is comparable because one UMAP is fitted on round A's rows together with round B's rows that
moved; rows that did not move sit at the same point in both rounds. UMAP's first call in a process
compiles numba kernels (about 10 s of CPU); `warm_up()` pays that ahead of time, e.g. in a
background thread at app start (`warm_up_in_background()`), after which a 512-code map takes ~1.5 s.
The figure functions are pure; the one state is a small module-level cache of UMAP embeddings
(the same rows and settings give the same map, so a hit is exact).
"""

from __future__ import annotations

import hashlib
import threading
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .metrics import rate

UMAP_EXACT_LIMIT = 4096  # umap-learn uses exact neighbours below this many rows, pynndescent (more JIT) above


@dataclass
class CodebookMapConfig:
    n_neighbors: int = 15  # UMAP neighbourhood size: larger keeps more global structure, smaller more local
    min_dist: float = 0.1  # UMAP: how tightly neighbouring rows may pack in the map
    seed: int = 0  # UMAP random_state: the same rows and seed give the same map
    n_epochs: int | None = None  # UMAP optimisation epochs; None: umap-learn's default (500 below 10k rows)
    drift_threshold: float = 1e-3  # a row moved when ‖row_B − row_A‖ / ‖row_A‖ exceeds this
    max_arrows: int = 30  # arrows only for this many largest movers, so the map stays readable
    # Larger codebooks are subsampled (harmful, moved, high-share codes first). 2000 keeps A plus moved B rows
    # under UMAP_EXACT_LIMIT, so a map of Janus-Pro's 16384 codes takes seconds, not minutes.
    max_codes: int = 2000
    unit_color_range: bool = False  # True: the colour scale spans [0, 1]; False: the shares' own range
    colorscale: str = "Viridis"  # plotly colour scale of the projection share (one round)
    color_by_change: bool = True  # two rounds: colour by the change in projection share (B − A), not B's share
    change_colorscale: str = "RdBu_r"  # diverging scale of that change: blue fell, white unchanged, red rose
    marker_size: int = 7  # marker size of ordinary codes; harmful codes are drawn larger

    def validate(self) -> None:
        if self.n_neighbors < 2:
            raise ValueError(f"n_neighbors must be at least 2, got {self.n_neighbors}")
        if not 0.0 <= self.min_dist <= 1.0:
            raise ValueError(f"min_dist must lie in [0, 1], got {self.min_dist}")
        if self.drift_threshold < 0 or self.max_arrows < 0:
            raise ValueError("drift_threshold and max_arrows must be ≥ 0")
        if self.max_codes < 4:
            raise ValueError(f"max_codes must be at least 4, got {self.max_codes}")


# ---------------------------------------------------------------- rows, shares, drift
def prepare_rows(codebook_name: str, rows) -> np.ndarray:
    """float32 [K, d] rows as the model uses them: the decoder L2-normalises its rows at decode,
    so only their direction is compared; other codebooks are used as they are."""
    x = np.asarray(rows.detach().cpu().float().numpy() if hasattr(rows, "detach") else rows, np.float32)
    if x.ndim != 2:
        raise ValueError(f"codebook rows must be [K, d], got shape {x.shape}")
    if codebook_name == "decoder":
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return np.ascontiguousarray(x)


def projection_share(rows: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """‖row P_h‖ / ‖row‖ per row, in [0, 1]: 1 inside the Harmful Space, 0 orthogonal to it.
    basis [d, r] has orthonormal columns (it is re-orthonormalised here to be safe); zero rows give 0."""
    rows = np.asarray(rows, np.float64)
    basis = np.asarray(basis, np.float64)
    if basis.ndim != 2 or basis.shape[0] != rows.shape[1]:
        raise ValueError(f"basis must be [{rows.shape[1]}, r] for rows of width {rows.shape[1]}, got {basis.shape}")
    q, _ = np.linalg.qr(basis)
    inside = np.linalg.norm(rows @ q, axis=1)
    norm = np.linalg.norm(rows, axis=1)
    return np.clip(np.divide(inside, norm, out=np.zeros_like(norm), where=norm > 0), 0.0, 1.0)


def drift(rows_a: np.ndarray, rows_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(‖row_B − row_A‖, the same relative to ‖row_A‖) per row."""
    if rows_a.shape != rows_b.shape:
        raise ValueError(f"the two rounds' rows differ in shape: {rows_a.shape} vs {rows_b.shape}")
    moved = np.linalg.norm(np.asarray(rows_b, np.float64) - rows_a, axis=1)
    base = np.linalg.norm(np.asarray(rows_a, np.float64), axis=1)
    return moved, np.divide(moved, base, out=np.where(moved > 0, np.inf, 0.0), where=base > 0)


# ---------------------------------------------------------------- UMAP with a small content cache
_CACHE: OrderedDict[str, np.ndarray] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 16  # embeddings kept; the same rows and settings give the same map, so a hit is exact


def _cache_key(rows: np.ndarray, *settings) -> str:
    h = hashlib.sha1(rows.tobytes())
    h.update(repr((rows.shape, settings)).encode())
    return h.hexdigest()


def umap_embedding(rows: np.ndarray, seed: int = 0, n_neighbors: int = 15, min_dist: float = 0.1,
                   n_epochs: int | None = None) -> np.ndarray:
    """[K, 2] UMAP of the rows (Euclidean), deterministic for a seed. Fewer than 4 rows get a plain
    layout on their first two principal axes (UMAP needs a few neighbours)."""
    x = np.ascontiguousarray(np.asarray(rows, np.float32))  # one dtype and layout: warm_up's kernels apply
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"rows must be a non-empty [K, d] array, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("rows contain NaN or infinite values")
    key = _cache_key(x, seed, n_neighbors, min_dist, n_epochs)
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key].copy()
    if len(x) < 4:
        centred = x - x.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        out = np.zeros((len(x), 2), np.float32)
        proj = centred @ vt[:2].T
        out[:, : proj.shape[1]] = proj
    else:
        import umap  # imported here: ~1.5 s, and only the map needs it

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # duplicate rows and tiny graphs warn; the map is still right
            reducer = umap.UMAP(n_neighbors=min(n_neighbors, len(x) - 1), min_dist=min_dist, n_components=2,
                                random_state=seed, n_jobs=1, n_epochs=n_epochs, init="spectral")
            out = reducer.fit_transform(x).astype(np.float32)
    with _CACHE_LOCK:
        _CACHE[key] = out
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return out.copy()


def warm_up(n_rows: int = 200, dim: int = 16) -> float:
    """Compile UMAP's numba kernels on random rows so the first real map is fast. Returns seconds
    (about 10 s of CPU the first time in a process, well under 1 s after). Same dtype and layout as
    `umap_embedding` uses, so the compiled kernels are the ones a real map needs."""
    start = time.perf_counter()
    rows = np.random.default_rng(12345).normal(size=(n_rows, dim)).astype(np.float32)
    umap_embedding(rows, seed=0)
    return time.perf_counter() - start


def warm_up_in_background() -> threading.Thread:
    """Start `warm_up()` in a daemon thread and return it (the app calls this once at start)."""
    thread = threading.Thread(target=warm_up, name="safecb-umap-warm-up", daemon=True)
    thread.start()
    return thread


# ---------------------------------------------------------------- the codebook map
@dataclass
class CodebookMap:
    codes: np.ndarray  # [n] code ids drawn (all K unless the codebook was subsampled)
    pos_a: np.ndarray  # [n, 2] map position of each code's row in round A
    pos_b: np.ndarray  # [n, 2] the same in round B (equal to pos_a for rows that did not move)
    share_a: np.ndarray | None  # [n] projection share of round A's rows on the Harmful Space; None: no space
    share_b: np.ndarray | None  # [n] the same for round B's rows (the colour)
    drift: np.ndarray  # [n] ‖row_B − row_A‖
    relative_drift: np.ndarray  # [n] drift / ‖row_A‖
    moved: np.ndarray  # [n] bool, relative drift above the threshold
    harmful: np.ndarray  # [n] bool, marked harmful by the caller
    codebook_size: int  # K before subsampling
    seconds: float  # time spent in UMAP (near 0 on a cache hit)


def select_codes(k: int, max_codes: int, priority: list[np.ndarray]) -> np.ndarray:
    """All of range(k) when k <= max_codes, else the codes of `priority` (index arrays, in order)
    first, then evenly spaced others, sorted."""
    if k <= max_codes:
        return np.arange(k)
    chosen: list[int] = []
    seen = np.zeros(k, bool)
    for group in priority:
        for c in np.asarray(group, int):
            if len(chosen) >= max_codes:
                break
            if not seen[c]:
                seen[c] = True
                chosen.append(int(c))
    rest = np.flatnonzero(~seen)
    room = max_codes - len(chosen)
    if room > 0 and len(rest):
        chosen.extend(rest[np.linspace(0, len(rest) - 1, room).round().astype(int)].tolist())
    return np.unique(np.asarray(chosen, int))


def compute_codebook_map(rows_a: np.ndarray, rows_b: np.ndarray, basis: np.ndarray | None = None,
                         harmful=(), config: CodebookMapConfig | None = None) -> CodebookMap:
    """Everything the map shows, for rows of two rounds ([K, d], from `prepare_rows`; pass the same
    array twice for one round). `basis` [d, r] spans the Harmful Space or is None; `harmful` lists code ids."""
    config = config or CodebookMapConfig()
    config.validate()
    rows_a = np.ascontiguousarray(np.asarray(rows_a, np.float32))
    rows_b = np.ascontiguousarray(np.asarray(rows_b, np.float32))
    k = len(rows_a)
    moved_by, relative = drift(rows_a, rows_b)
    harmful_mask = np.zeros(k, bool)
    harmful_ids = np.asarray([int(c) for c in harmful if 0 <= int(c) < k], int)
    harmful_mask[harmful_ids] = True
    share_a = share_b = None
    if basis is not None:
        basis = np.asarray(basis, np.float64)
        share_a, share_b = projection_share(rows_a, basis), projection_share(rows_b, basis)
    moved = relative > config.drift_threshold

    priority = [harmful_ids, np.argsort(-relative)[: int(moved.sum())]]
    if share_b is not None:
        priority.append(np.argsort(-share_b))
    codes = select_codes(k, config.max_codes, priority)
    a, b, moved = rows_a[codes], rows_b[codes], moved[codes]

    start = time.perf_counter()
    stacked = np.concatenate([a, b[moved]])
    emb = umap_embedding(stacked, config.seed, config.n_neighbors, config.min_dist, config.n_epochs)
    pos_a = emb[: len(codes)]
    pos_b = pos_a.copy()
    pos_b[moved] = emb[len(codes):]
    return CodebookMap(
        codes=codes, pos_a=pos_a, pos_b=pos_b,
        share_a=None if share_a is None else share_a[codes], share_b=None if share_b is None else share_b[codes],
        drift=moved_by[codes], relative_drift=relative[codes], moved=moved, harmful=harmful_mask[codes],
        codebook_size=k, seconds=time.perf_counter() - start,
    )


def _hover_lines(m: CodebookMap, labels: tuple[str, str], notes: dict[int, str] | None) -> list[str]:
    out = []
    for i, code in enumerate(m.codes):
        lines = [f"<b>code {code}</b>" + (" · harmful" if m.harmful[i] else "")]
        if m.share_b is not None:
            lines.append(f"projection share {m.share_b[i]:.3f} ({labels[0]}: {m.share_a[i]:.3f})")
        if m.moved[i]:
            lines.append(f"drift {m.drift[i]:.4f} ({100 * m.relative_drift[i]:.1f}% of the row)")
        else:
            lines.append("did not move")
        if notes and int(code) in notes:
            lines.append(notes[int(code)])
        out.append("<br>".join(lines))
    return out


def codebook_map_figure(m: CodebookMap, config: CodebookMapConfig | None = None, title: str = "",
                        labels: tuple[str, str] = ("A", "B"), notes: dict[int, str] | None = None,
                        meta: dict | None = None) -> go.Figure:
    """The map as a plotly figure: one point per code at its round-B position, coloured by projection
    share (one round) or by its change from round A to round B (two rounds, `color_by_change`), harmful codes as larger diamonds, arrows from round A to round B for the
    `max_arrows` largest movers. customdata[0] of every point is its code id; `meta` goes into
    layout.meta (the studio's hover inspector reads it to know which run and rounds are drawn)."""
    config = config or CodebookMapConfig()
    fig = go.Figure()
    hover = np.asarray(_hover_lines(m, labels, notes), dtype=object)
    has_share = m.share_b is not None
    by_change = has_share and config.color_by_change and labels[0] != labels[1]
    if by_change:  # what the edit changed: a code moved off the Harmful Space turns blue
        colour = m.share_b - m.share_a
        bound = max(float(np.abs(colour).max()), 1e-3)
        fig.update_layout(coloraxis={"colorscale": config.change_colorscale, "cmin": -bound, "cmax": bound,
                                     "colorbar": {"title": {"text": f"projection share,<br>{labels[1]} − {labels[0]}",
                                                            "side": "top"}}})
    elif has_share:
        colour = m.share_b
        lo, hi = (0.0, 1.0) if config.unit_color_range else (float(m.share_b.min()), float(m.share_b.max()))
        if hi - lo < 1e-6:
            lo, hi = max(0.0, lo - 0.005), min(1.0, hi + 0.005)
        fig.update_layout(coloraxis={"colorscale": config.colorscale, "cmin": lo, "cmax": hi,
                                     "colorbar": {"title": {"text": "projection<br>share", "side": "top"}}})

    def marker(mask, **extra):
        style = {"size": config.marker_size, "line": {"width": 0}}
        style.update(extra)
        if has_share:
            style.update(color=colour[mask], coloraxis="coloraxis")
        else:
            style.setdefault("color", "#7f8c9b")
        return style

    def ids(mask):  # plain lists: numpy arrays would travel as base64 typed arrays, which the studio's
        return [[int(c)] for c in m.codes[mask]]  # hover inspector cannot read from gd.data

    ordinary = ~m.harmful
    fig.add_trace(go.Scatter(
        x=m.pos_b[ordinary, 0], y=m.pos_b[ordinary, 1], mode="markers", name="codes",
        marker=marker(ordinary, opacity=0.85), customdata=ids(ordinary),
        hovertext=hover[ordinary].tolist(), hovertemplate="%{hovertext}<extra></extra>",
    ))
    if m.harmful.any():
        fig.add_trace(go.Scatter(
            x=m.pos_b[m.harmful, 0], y=m.pos_b[m.harmful, 1], mode="markers", name="harmful codes",
            marker=marker(m.harmful, size=config.marker_size + 6, symbol="diamond",
                          line={"width": 1.5, "color": "#c0392b"}),
            customdata=ids(m.harmful), hovertext=hover[m.harmful].tolist(),
            hovertemplate="%{hovertext}<extra></extra>",
        ))

    movers = np.flatnonzero(m.moved)
    movers = movers[np.argsort(-m.relative_drift[movers])][: config.max_arrows]
    if len(movers):
        fig.add_trace(go.Scatter(
            x=m.pos_a[movers, 0], y=m.pos_a[movers, 1], mode="markers", name=f"position in {labels[0]}",
            marker={"size": 5, "color": "rgba(0,0,0,0)", "line": {"width": 1, "color": "#555"}},
            customdata=ids(movers), hovertext=hover[movers].tolist(),
            hovertemplate=f"{labels[0]}: " + "%{hovertext}<extra></extra>",
        ))
        for i in movers:
            fig.add_annotation(x=float(m.pos_b[i, 0]), y=float(m.pos_b[i, 1]), ax=float(m.pos_a[i, 0]),
                               ay=float(m.pos_a[i, 1]), xref="x", yref="y", axref="x", ayref="y", text="",
                               showarrow=True, arrowhead=2, arrowsize=1, arrowwidth=1.2, arrowcolor="#444",
                               opacity=0.75)

    n_moved = int(m.moved.sum())
    subtitle = [f"{len(m.codes)} of {m.codebook_size} codes"]
    subtitle.append(f"{n_moved} moved from {labels[0]} to {labels[1]}" +
                    (f", arrows on the {len(movers)} largest" if n_moved > len(movers) else "")
                    if labels[0] != labels[1] else "one round")
    if not has_share:
        subtitle.append("no Harmful Space for this codebook: uniform colour")
    fig.update_layout(
        title={"text": f"{title}<br><sup>{' · '.join(subtitle)}</sup>" if title else " · ".join(subtitle)},
        xaxis={"showticklabels": False, "zeroline": False, "title": None},  # UMAP axes carry no units
        yaxis={"showticklabels": False, "zeroline": False, "title": None},
        legend={"orientation": "h", "yanchor": "top", "y": -0.02, "x": 0},
        hovermode="closest", template="plotly_white", height=620, margin={"l": 20, "r": 20, "t": 70, "b": 50},
        meta=meta or {},
    )
    return fig


# ---------------------------------------------------------------- decoded patches
def harmful_space_plane(harmful_rows: np.ndarray, safe_rows: np.ndarray, basis: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray, tuple[str, str]]:
    """Coordinates of the codes on both sides of the mined pairs in a plane that shows the
    Harmful Space: x along its top direction, oriented so harmful codes lie to the right on
    average; y along its second direction, or for a one-direction space the direction in which
    the codes spread most outside it. rows [n, d]; basis [d, r]. -> (harmful [n, 2], safe [m, 2], axis names)."""
    harmful_rows, safe_rows = np.asarray(harmful_rows, np.float64), np.asarray(safe_rows, np.float64)
    basis = np.asarray(basis, np.float64)
    if basis.ndim != 2 or basis.shape[0] != harmful_rows.shape[1] or safe_rows.shape[1] != harmful_rows.shape[1]:
        raise ValueError(f"rows [n, d] and a basis [d, r] must share d, got {harmful_rows.shape}, {safe_rows.shape} "
                         f"and {basis.shape}")
    q, _ = np.linalg.qr(basis)
    first = q[:, 0]
    if harmful_rows.size and safe_rows.size and (harmful_rows @ first).mean() < (safe_rows @ first).mean():
        first = -first
    if q.shape[1] >= 2:
        second, names = q[:, 1], ("Harmful Space, direction 1", "Harmful Space, direction 2")
    else:
        points = np.concatenate([harmful_rows, safe_rows])
        outside = points - np.outer(points @ q[:, 0], q[:, 0])
        outside = outside - outside.mean(axis=0)
        second = np.linalg.svd(outside, full_matrices=False)[2][0] if np.abs(outside).sum() > 0 else np.zeros_like(first)
        names = ("Harmful Space (its one direction)", "largest spread outside it")
    plane = np.stack([first, second], axis=1)
    return harmful_rows @ plane, safe_rows @ plane, names


def code_contrast(harmful_tokens: np.ndarray, rewrite_tokens: np.ndarray, codebook_size: int,
                  prior: float = 1.0) -> np.ndarray:
    """[K] per code: log of its share among the codes the model drew for harmful prompts minus log of
    its share among those it drew for their safe rewrites (each count plus `prior`). Codes the
    harmful prompts draw and the rewrites do not score high; background both draw scores about 0.
    A harmful image's codes, each replaced by its score, place the harm on the image's own grid,
    whatever the raster order it was drawn in."""
    harmful = np.bincount(np.asarray(harmful_tokens, np.int64).ravel(), minlength=codebook_size) + prior
    rewrite = np.bincount(np.asarray(rewrite_tokens, np.int64).ravel(), minlength=codebook_size) + prior
    if len(harmful) != codebook_size or len(rewrite) != codebook_size:
        raise ValueError(f"token ids must lie in [0, {codebook_size})")
    return np.log(harmful / harmful.sum()) - np.log(rewrite / rewrite.sum())


def paired_separation(harmful_xy: np.ndarray, safe_xy: np.ndarray) -> float:
    """Share of the paired positions (row i of each: one position of one pair) where the harmful
    side's code lies further along the Harmful Space's top direction (x) than its safe partner: 1
    when the direction separates every pair, about 0.5 when it tells them apart no better than chance."""
    harmful_xy, safe_xy = np.asarray(harmful_xy), np.asarray(safe_xy)
    if harmful_xy.shape != safe_xy.shape or harmful_xy.ndim != 2 or not len(harmful_xy):
        raise ValueError(f"paired coordinates [n, 2] of equal shape are needed, got {harmful_xy.shape} and "
                         f"{safe_xy.shape}")
    return float(np.mean(harmful_xy[:, 0] > safe_xy[:, 0]))


def harmful_space_figure(harmful_xy: np.ndarray, safe_xy: np.ndarray, names: tuple[str, str],
                         title: str = "") -> go.Figure:
    """The two clouds of `harmful_space_plane`: red harmful codes, blue safe codes."""
    fig = go.Figure()
    for xy, label, colour in ((safe_xy, "safe side of a pair", "#1f77b4"), (harmful_xy, "harmful side", "#d62728")):
        fig.add_trace(go.Scatter(x=xy[:, 0], y=xy[:, 1], mode="markers", name=f"{label} ({len(xy)})",
                                 marker={"color": colour, "size": 7, "opacity": 0.6}))
    fig.update_layout(title=title, xaxis_title=names[0] + " →", yaxis_title=names[1], height=440,
                      margin={"l": 50, "r": 20, "t": 80 if title else 40, "b": 50},
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "right", "x": 1.0})
    return fig


def patch_image(backend, codebooks: dict, code: int, max_tiles: int = 8) -> np.ndarray:
    """What one code looks like: a token grid filled with `code`, decoded through
    `codebooks["decoder"]`, as uint8 [H, W, 3] (the central max_tiles × max_tiles tiles of a larger
    grid). Only decoder rows have pixels; a generator code looks like its decoder row."""
    import torch

    code = int(code)
    if not 0 <= code < backend.codebook_size:
        raise ValueError(f"code must lie in [0, {backend.codebook_size}), got {code}")
    tokens = torch.full((1, backend.n_tokens), code, dtype=torch.long)
    with torch.no_grad():
        pixels = backend.decode_with(codebooks["decoder"], tokens).float()
    image = ((pixels.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)[0].permute(1, 2, 0).cpu().numpy()
    grid = backend.grid_size
    if grid > max_tiles:
        tile = image.shape[0] // grid
        lo = (grid - max_tiles) // 2 * tile
        image = image[lo : lo + max_tiles * tile, lo : lo + max_tiles * tile]
    return np.ascontiguousarray(image)


# ---------------------------------------------------------------- metrics per round
RATE_SERIES = (  # (key, label, source): "annotation" figures come from the oracle annotator
    ("self_unsafe", "self-judged unsafe (harmful prompts)", "self"),
    ("oracle_unsafe_train", "oracle unsafe (harmful prompts)", "annotation"),
    ("oracle_unsafe_rewrite", "oracle unsafe (safe rewrites)", "annotation"),
    ("benign_fidelity", "benign fidelity (oracle)", "annotation"),
    ("adherence", "own adherence (benign prompts)", "self"),
    ("judge_agreement", "self-judge agrees with oracle", "annotation"),
)
HIDDEN_AT_START = {"oracle_unsafe_rewrite", "judge_agreement"}  # in the legend, off until clicked
SELF_COUNTS = {"self_unsafe": "n_harmful", "adherence": "n_benign"}


def rate_from_share(value: float, n: int, n_boot: int = 500) -> dict:
    """{"value", "ci", "n"} for a share of n binary outcomes known only as value·n of them: the same
    bootstrap as safecb.metrics.rate on the reconstructed outcomes."""
    n = int(n)
    flags = np.zeros(n)
    flags[: int(round(float(value) * n))] = 1.0
    return rate(flags, n_boot=n_boot)


def round_figure(metrics: dict, key: str) -> dict | None:
    """One round's {"value", "ci", "n"} for a series key: the oracle annotation when the round has
    one, else (for the model's own figures) the value with a bootstrap interval from its count."""
    note = (metrics.get("annotations") or {}).get(key)
    if isinstance(note, dict) and note.get("value") is not None:
        return note
    if key in SELF_COUNTS and metrics.get(key) is not None and metrics.get(SELF_COUNTS[key]):
        return rate_from_share(metrics[key], metrics[SELF_COUNTS[key]])
    return None


def _round_index(metrics: dict, position: int) -> int:
    return int(metrics.get("round", position))


def metrics_figure(rounds: list[dict]) -> go.Figure:
    """Curves per round with 95% bootstrap error bars: rates on top (self-judged and oracle unsafe,
    benign fidelity, own adherence), FID-toy below when the run has it; rejected rounds shaded and
    labelled. Series sit slightly apart on x so their error bars do not hide each other."""
    xs = [_round_index(m, i) for i, m in enumerate(rounds)]
    fid = [(x, (m.get("annotations") or {}).get("fid_toy")) for x, m in zip(xs, rounds)]
    fid = [(x, f) for x, f in fid if isinstance(f, dict) and f.get("value") is not None]
    n_rows = 2 if fid else 1
    titles = ["rates per round (95% bootstrap intervals)"]
    if fid:
        titles.append("FID-toy (oracle features; lower is closer to rendered scenes)")
    fig = make_subplots(rows=n_rows, cols=1, shared_xaxes=True, vertical_spacing=0.1, subplot_titles=titles,
                        row_heights=[0.7, 0.3] if fid else None)
    offsets = np.linspace(-0.12, 0.12, len(RATE_SERIES))
    for (key, label, _), dx in zip(RATE_SERIES, offsets):
        points = [(x, round_figure(m, key)) for x, m in zip(xs, rounds)]
        points = [(x, f) for x, f in points if f is not None]
        if not points:
            continue
        v = [float(f["value"]) for _, f in points]
        ci = [f.get("ci") or [f["value"]] * 2 for _, f in points]
        fig.add_trace(go.Scatter(
            x=[x + dx for x, _ in points], y=v, mode="lines+markers", name=label,
            visible="legendonly" if key in HIDDEN_AT_START else True,
            error_y={"type": "data", "symmetric": False, "array": [c[1] - y for c, y in zip(ci, v)],
                     "arrayminus": [y - c[0] for c, y in zip(ci, v)]},
            customdata=[[x, c[0], c[1], f.get("n", "?")] for (x, f), c in zip(points, ci)],
            hovertemplate=f"{label}<br>round %{{customdata[0]}}: %{{y:.3f}} [%{{customdata[1]:.3f}}, "
                          "%{customdata[2]:.3f}] n=%{customdata[3]}<extra></extra>",
        ), row=1, col=1)
    if fid:
        fig.add_trace(go.Scatter(
            x=[p[0] for p in fid], y=[p[1]["value"] for p in fid], mode="lines+markers", name="FID-toy",
            line={"color": "#7f7f7f"}, customdata=[p[1].get("n", "?") for p in fid],
            hovertemplate="FID-toy<br>round %{x}: %{y:.2f} (n=%{customdata})<extra></extra>",
        ), row=2, col=1)
        fig.update_yaxes(title_text="FID-toy", row=2, col=1)

    for x, m in zip(xs, rounds):
        if not m.get("accepted", True):
            fig.add_vrect(x0=x - 0.4, x1=x + 0.4, fillcolor="#e74c3c", opacity=0.12, line_width=0,
                          annotation_text="rejected", annotation_position="top", row="all", col=1)
    fig.update_yaxes(range=[-0.03, 1.03], title_text="rate", row=1, col=1)
    ticks = {"tickmode": "array", "tickvals": xs, "ticktext": [f"{x} (unedited)" if x == 0 else str(x) for x in xs],
             "range": [min(xs) - 0.5, max(xs) + 0.5]}
    fig.update_xaxes(**ticks)
    fig.update_xaxes(title_text="round", showticklabels=True, row=n_rows, col=1)
    fig.update_layout(template="plotly_white", hovermode="closest", height=620 if fid else 460,
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.08, "x": 0},
                      margin={"l": 50, "r": 20, "t": 110, "b": 40})
    return fig


def format_figure(f: dict | None, digits: int = 2) -> str:
    """'0.67 [0.39, 0.95] n=9', or '—' when there is no figure."""
    if not f or f.get("value") is None:
        return "—"
    text = f"{float(f['value']):.{digits}f}"
    if f.get("ci"):
        text += f" [{float(f['ci'][0]):.{digits}f}, {float(f['ci'][1]):.{digits}f}]"
    if f.get("n") is not None:
        text += f" n={f['n']}"
    return text


def metrics_table(rounds: list[dict]):
    """A pandas DataFrame, one row per round: status, pairs, every rate with interval and n, FID-toy,
    same-seed benign change and time."""
    import pandas as pd

    rows = []
    for i, m in enumerate(rounds):
        index = _round_index(m, i)
        status = "unedited" if index == 0 else ("accepted" if m.get("accepted", True) else "rejected")
        if m.get("guard"):
            status += f": {m['guard']}"
        row = {"round": index, "status": status, "pairs": m.get("pairs", 0)}
        for key, label, _ in RATE_SERIES:
            row[label] = format_figure(round_figure(m, key))
        row["FID-toy"] = format_figure((m.get("annotations") or {}).get("fid_toy"), digits=1)
        change = m.get("benign_change")
        row["benign change (MSE)"] = "—" if change is None else f"{float(change):.4f}"
        row["seconds"] = "—" if m.get("seconds") is None else f"{float(m['seconds']):.1f}"
        rows.append(row)
    columns = ["round", "status", "pairs", *(label for _, label, _ in RATE_SERIES), "FID-toy",
               "benign change (MSE)", "seconds"]
    return pd.DataFrame(rows, columns=columns)
