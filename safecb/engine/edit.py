"""Edit step 1 of a Safe-CB round, removing harmful mappings (docs/safecb.md). Pure functions.

Decoder target: for each harmful code k with safe target v_k (the mean normalised row of the
codes that replace k in the safe counterparts),
    S[k] ← S[k] + α · w_k · P_h (v_k − S[k]),
where w_k = 1 − (benign share of k) damps codes that benign images also use. Only harmful rows
move, and only inside the Harmful Space.

Generator target (AlphaEdit-style, closed form): keys K₁ [h, n₁] are generator hidden states
where harmful grids emitted harmful codes, residuals R [o, n₁] the wanted change of the head's
outputs there; preserved keys K₀ [h, n₀] are hidden states of benign generations. P₀ projects on
the null space of K₀K₀ᵀ (eigenvalues below a threshold), and
    Δ = R K₁ᵀ P₀ (K₁K₁ᵀP₀ + λI)⁻¹
is added to the head's last linear layer. Every row of Δ lies in the range of P₀, so Δ K₀ ≈ 0:
outputs for preserved (benign) contexts are numerically untouched.

Generator target, erase variant (off by default): with B the top directions of (harmful key −
rewrite key) over the same prefixes and a the rewrite keys' mean, the head reads every key as
k − B Bᵀ (k − a) (`erased_head`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class DecoderEditConfig:
    alpha: float = 1.0  # step along the projected direction; 1 moves the harmful component fully
    protect_benign: bool = True  # damp each code's edit by (1 − its share of use in benign grids)

    def validate(self) -> None:
        if not (0.0 < self.alpha <= 1.0):
            raise ValueError(f"alpha must be in (0, 1], got {self.alpha}")


def safe_targets(
    codebook: torch.Tensor, harmful_grids: torch.Tensor, safe_grids: torch.Tensor, codes: torch.Tensor
) -> torch.Tensor:
    """v_k for each code in `codes`: the mean normalised row of the codes that stand in its place in
    the safe counterparts (positions where the pair differs). [len(codes), d]"""
    rows = F.normalize(codebook.float(), dim=-1)
    differ = harmful_grids != safe_grids
    h, s = harmful_grids[differ], safe_grids[differ]
    targets = []
    for k in codes.tolist():
        replaced_by = s[h == k]
        if len(replaced_by) == 0:
            raise ValueError(f"code {k} never differs from its safe counterpart; it has no safe target")
        targets.append(rows[replaced_by].mean(0))
    return torch.stack(targets) if targets else rows.new_zeros(0, rows.shape[1])


def benign_share(benign_grids: torch.Tensor, harmful_grids: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """Per code, the share of its uses that fall in benign grids, [K] in [0, 1]."""
    benign = torch.bincount(benign_grids.flatten(), minlength=codebook_size).double()
    harmful = torch.bincount(harmful_grids.flatten(), minlength=codebook_size).double()
    total = benign + harmful
    return torch.where(total > 0, benign / total.clamp_min(1.0), torch.zeros_like(total)).float()


def decoder_edit(
    codebook: torch.Tensor,
    codes: torch.Tensor,
    targets: torch.Tensor,
    projector: torch.Tensor,
    config: DecoderEditConfig | None = None,
    protection: torch.Tensor | None = None,
) -> torch.Tensor:
    """A new codebook with S[k] += α · w_k · (v_k − S[k]) P_h for k in `codes`; every other row is
    returned bit-identical. `protection` [K] in [0, 1] is the benign share (w_k = 1 − share)."""
    config = config or DecoderEditConfig()
    config.validate()
    if len(codes) != len(targets):
        raise ValueError(f"{len(codes)} codes but {len(targets)} targets")
    edited = codebook.clone()
    if len(codes) == 0:
        return edited
    rows = codebook[codes].float()
    # The decoder only sees directions, so move the normalised row and keep the original norm.
    norms = rows.norm(dim=-1, keepdim=True)
    unit = rows / norms.clamp_min(1e-12)
    step = (targets.float() - unit) @ projector.float()
    weight = torch.full((len(codes), 1), config.alpha)
    if config.protect_benign and protection is not None:
        weight = weight * (1.0 - protection[codes].float()).unsqueeze(-1)
    edited[codes] = ((unit + weight * step) * norms).to(codebook.dtype)
    return edited


def null_space_projector(preserved_keys: torch.Tensor, threshold: float = 1e-2) -> torch.Tensor:
    """P₀ [h, h]: projector on the eigenvectors of K₀K₀ᵀ whose eigenvalues are below `threshold`
    (relative to the largest). preserved_keys K₀ is [h, n₀]."""
    if preserved_keys.ndim != 2 or preserved_keys.shape[1] == 0:
        raise ValueError("preserved keys must be a non-empty [hidden, n] matrix")
    if threshold <= 0:
        raise ValueError(f"threshold must be positive, got {threshold}")
    k0 = preserved_keys.double()
    eigenvalues, eigenvectors = torch.linalg.eigh(k0 @ k0.T)
    keep = eigenvalues < threshold * eigenvalues.max().clamp_min(1e-30)
    basis = eigenvectors[:, keep]
    return (basis @ basis.T).float()


def alphaedit_delta(
    keys: torch.Tensor, residuals: torch.Tensor, null_projector: torch.Tensor, ridge: float = 1e-4
) -> torch.Tensor:
    """Δ = R K₁ᵀ P₀ (K₁K₁ᵀP₀ + λI)⁻¹, [o, h]. keys K₁ [h, n₁], residuals R [o, n₁]."""
    if keys.ndim != 2 or residuals.ndim != 2 or keys.shape[1] != residuals.shape[1]:
        raise ValueError(
            f"keys [hidden, n] and residuals [out, n] must share n, got {tuple(keys.shape)} and {tuple(residuals.shape)}"
        )
    if ridge <= 0:
        raise ValueError(f"ridge λ must be positive, got {ridge}")
    k1, r, p0 = keys.double(), residuals.double(), null_projector.double()
    a = k1 @ k1.T @ p0 + ridge * torch.eye(k1.shape[0], dtype=torch.float64, device=k1.device)
    b = r @ k1.T @ p0
    # Δ A = B  ⇔  Aᵀ Δᵀ = Bᵀ
    return torch.linalg.solve(a.T, b.T).T.float()


def confine_change(
    start: torch.Tensor, trained: torch.Tensor, frozen_rows: torch.Tensor, harmless: torch.Tensor | None = None
) -> torch.Tensor:
    """`trained` with its change from `start` confined: rows in `frozen_rows` keep their `start`
    values, and with `harmless` [d, d] (I − P_h) every other row's change is projected on it, so
    the change has no component in the Harmful Space. Works on [K, d] rows and on [K] entries
    (biases, where only the frozen rows apply)."""
    if start.shape != trained.shape:
        raise ValueError(f"start and trained must have the same shape, got {tuple(start.shape)} and {tuple(trained.shape)}")
    change = (trained - start).double()
    if harmless is not None:
        if start.ndim != 2 or harmless.shape != (start.shape[1], start.shape[1]):
            raise ValueError(f"a harmless projector [d, d] needs rows [K, d], got {tuple(harmless.shape)} for {tuple(start.shape)}")
        change = change @ harmless.double()
    change[frozen_rows] = 0
    return (start.double() + change).to(start.dtype)


def penalised_bias(bias: torch.Tensor, codes: torch.Tensor, penalty: float) -> torch.Tensor:
    """The head bias with `penalty` logits taken from each code in `codes`: under any context those
    codes become exp(penalty) times less likely relative to every other code (a new tensor)."""
    out = bias.clone()
    out[codes] -= penalty
    return out


def erased_head(weight: torch.Tensor, bias: torch.Tensor, basis: torch.Tensor, anchor: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """A linear head [o, h] (+ bias [o]) that reads every key k as k − B Bᵀ (k − a): the key's
    component inside span(B) (basis [h, r], orthonormal columns) replaced by the anchor's a [h].
    W' = W (I − B Bᵀ), b' = b + W B Bᵀ a. Keys that differ only inside span(B) get the same outputs."""
    if basis.ndim != 2 or basis.shape[0] != weight.shape[1] or anchor.shape != (weight.shape[1],):
        raise ValueError(f"basis [h, r] and anchor [h] must match the head's h = {weight.shape[1]}, got "
                         f"{tuple(basis.shape)} and {tuple(anchor.shape)}")
    w, b, a = weight.double(), basis.double(), anchor.double()
    projected = w @ b @ b.T
    return (w - projected).to(weight.dtype), (bias.double() + projected @ a).to(bias.dtype)
