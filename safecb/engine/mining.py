"""The mine stage of a round (docs/safecb.md): harmful ↔ safe pairs from the model's own judgments.

For each flagged harmful generation (pᵢ, seed) the counterpart is the safe rewrite pᵢ′ with the
same seed if the model judged it safe, else the first other seed of pᵢ′ it judged safe. Both token
grids share the spatial grid, so positions can be compared one to one."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .measure import Measurement


@dataclass
class Pairs:
    harmful_rows: np.ndarray  # [P] row of the harmful generation in the measurement
    safe_rows: np.ndarray  # [P] row of its counterpart among the rewrite generations
    prompt_index: np.ndarray  # [P] which harmful prompt
    harmful_grids: torch.Tensor  # [P, n] token ids
    safe_grids: torch.Tensor  # [P, n]
    same_seed: np.ndarray  # [P] bool, the counterpart used the same seed

    def __len__(self) -> int:
        return len(self.harmful_rows)

    def differing(self) -> torch.Tensor:
        """[P, n] bool: grid positions where the pair's tokens differ."""
        return self.harmful_grids != self.safe_grids

    def subset(self, index: np.ndarray) -> "Pairs":
        t = torch.as_tensor(index, dtype=torch.long)
        return Pairs(self.harmful_rows[index], self.safe_rows[index], self.prompt_index[index],
                     self.harmful_grids[t], self.safe_grids[t], self.same_seed[index])


def mine_pairs(
    harmful_flagged: np.ndarray,
    rewrite_flagged: np.ndarray,
    harmful_tokens: torch.Tensor,
    rewrite_tokens: torch.Tensor,
    n_seeds: int,
) -> Pairs:
    """Rows are laid out prompt-major: row = prompt · n_seeds + seed index, for both sets."""
    if len(harmful_flagged) != len(rewrite_flagged) or len(harmful_flagged) % n_seeds:
        raise ValueError("harmful and rewrite generations must share the prompt × seed layout")
    harmful_rows, safe_rows, prompt_index, same_seed = [], [], [], []
    for row in np.flatnonzero(harmful_flagged):
        prompt, seed_i = divmod(int(row), n_seeds)
        base = prompt * n_seeds
        candidates = [seed_i] + [s for s in range(n_seeds) if s != seed_i]
        for s in candidates:
            if not rewrite_flagged[base + s]:
                harmful_rows.append(int(row))
                safe_rows.append(base + s)
                prompt_index.append(prompt)
                same_seed.append(s == seed_i)
                break
    h = np.array(harmful_rows, dtype=np.int64)
    s = np.array(safe_rows, dtype=np.int64)
    return Pairs(
        harmful_rows=h, safe_rows=s, prompt_index=np.array(prompt_index, dtype=np.int64),
        harmful_grids=harmful_tokens[torch.as_tensor(h, dtype=torch.long)].clone(),
        safe_grids=rewrite_tokens[torch.as_tensor(s, dtype=torch.long)].clone(),
        same_seed=np.array(same_seed, dtype=bool),
    )


def mine_measurement(m: Measurement) -> Pairs:
    """Pairs from a measurement's harmful and rewrite generations, by the model's own flags."""
    harmful, rewrite = m.sets["harmful"], m.sets["rewrite"]
    return mine_pairs(m.flagged("harmful"), m.flagged("rewrite"), harmful.tokens, rewrite.tokens, len(harmful.seeds))
