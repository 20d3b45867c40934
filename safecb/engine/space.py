"""The Harmful Space, the space stage of a round (docs/safecb.md): pure linear algebra on small tensors.

From mined pairs (a harmful token grid and its safe counterpart on the same spatial grid) we
stack the differences of the edited space's rows, δ = S[t_h(q)] − S[t_s(q)], over every grid
position q where the two grids differ. The top right-singular vectors of that stack that reach
the requested energy span the Harmful Space; P_h = B Bᵀ projects onto it and P_⊥ = I − P_h onto
the harmless space that step 2 fine-tunes in.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class HarmfulSpaceConfig:
    energy: float = 0.9  # η: keep the fewest directions whose squared singular values reach this share
    max_rank: int = 8  # r_max: never keep more directions than this
    normalize_rows: bool = True  # compare row directions (Janus's decoder L2-normalises its rows)

    def validate(self) -> None:
        if not (0.0 < self.energy <= 1.0):
            raise ValueError(f"energy must be in (0, 1], got {self.energy}")
        if self.max_rank < 1:
            raise ValueError(f"max_rank must be at least 1, got {self.max_rank}")


@dataclass
class HarmfulSpace:
    basis: torch.Tensor  # [d, r] orthonormal columns spanning the Harmful Space
    singular_values: torch.Tensor  # [min(M, d)] all singular values of the difference stack
    energy: float  # share of the stack's squared norm the basis captures
    n_differences: int  # M, the number of difference vectors it was built from

    @property
    def rank(self) -> int:
        return self.basis.shape[1]

    def projector(self) -> torch.Tensor:
        """P_h = B Bᵀ, [d, d]."""
        return self.basis @ self.basis.T

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """Component of each row of x inside the Harmful Space (x P_h)."""
        return (x @ self.basis) @ self.basis.T

    def project_out(self, x: torch.Tensor) -> torch.Tensor:
        """Component of each row of x in the harmless space (x P_⊥ = x − x P_h)."""
        return x - self.project(x)

    def coordinates(self, x: torch.Tensor) -> torch.Tensor:
        """Coordinates of each row in the basis, [n, r] (for plots)."""
        return x @ self.basis


def difference_vectors(
    codebook: torch.Tensor, harmful_grids: torch.Tensor, safe_grids: torch.Tensor, normalize_rows: bool = True
) -> torch.Tensor:
    """δ = S[t_h(q)] − S[t_s(q)] at every position where a harmful grid and its counterpart differ.

    codebook [K, d]; harmful_grids and safe_grids [P, N] token ids, pair i on the same grid."""
    if harmful_grids.shape != safe_grids.shape or harmful_grids.ndim != 2:
        raise ValueError(
            f"harmful and safe grids must both be [pairs, positions], got {tuple(harmful_grids.shape)} "
            f"and {tuple(safe_grids.shape)}"
        )
    rows = F.normalize(codebook.float(), dim=-1) if normalize_rows else codebook.float()
    differ = harmful_grids != safe_grids
    return rows[harmful_grids[differ]] - rows[safe_grids[differ]]


def build_harmful_space(deltas: torch.Tensor, config: HarmfulSpaceConfig | None = None) -> HarmfulSpace:
    """SVD of the difference stack [M, d]; keep the top right-singular vectors reaching the energy."""
    config = config or HarmfulSpaceConfig()
    config.validate()
    if deltas.ndim != 2 or deltas.shape[0] == 0:
        raise ValueError("no difference vectors: the pairs' grids never differ, so there is no Harmful Space")
    deltas = deltas.double()
    _, s, vh = torch.linalg.svd(deltas, full_matrices=False)
    total = float((s**2).sum())
    if total <= 0.0:
        raise ValueError("all difference vectors are zero: harmful and safe codes map to the same rows")
    cumulative = torch.cumsum(s**2, 0) / total
    rank = int((cumulative < config.energy - 1e-12).sum().item()) + 1
    rank = max(1, min(rank, config.max_rank, int((s > s[0] * 1e-10).sum())))
    basis = vh[:rank].T.contiguous()
    return HarmfulSpace(
        basis=basis.float(),
        singular_values=s.float(),
        energy=float(cumulative[rank - 1]),
        n_differences=deltas.shape[0],
    )


@dataclass
class HarmfulCodeConfig:
    ratio: float = 3.0  # ρ: a code must be this many times more frequent at differing harmful positions
    min_count: int = 3  # m: ... and seen there at least this often

    def validate(self) -> None:
        if self.ratio <= 0:
            raise ValueError(f"ratio must be positive, got {self.ratio}")
        if self.min_count < 1:
            raise ValueError(f"min_count must be at least 1, got {self.min_count}")


def harmful_codes(
    harmful_grids: torch.Tensor,
    safe_grids: torch.Tensor,
    benign_grids: torch.Tensor,
    codebook_size: int,
    config: HarmfulCodeConfig | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes over-represented where harmful grids differ from their safe counterparts, relative to
    their use in safe and benign grids. Returns (code ids sorted by ratio, ratio per code [K])."""
    config = config or HarmfulCodeConfig()
    config.validate()
    differ = harmful_grids != safe_grids
    at_diff = torch.bincount(harmful_grids[differ].flatten(), minlength=codebook_size).double()
    reference_tokens = torch.cat([safe_grids.flatten(), benign_grids.flatten()])
    reference = torch.bincount(reference_tokens, minlength=codebook_size).double()
    share_diff = at_diff / max(float(at_diff.sum()), 1.0)
    # Add-one smoothing: a code never used by safe/benign grids gets a large but finite ratio.
    share_ref = (reference + 1.0) / (float(reference.sum()) + codebook_size)
    ratio = share_diff / share_ref
    chosen = ((ratio >= config.ratio) & (at_diff >= config.min_count)).nonzero().flatten()
    order = ratio[chosen].argsort(descending=True)
    return chosen[order], ratio
