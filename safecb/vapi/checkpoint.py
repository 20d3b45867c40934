"""A VAπ run directory on disk: trainable tensors, Adam moments and step counters, so a resumed run
continues exactly the schedule an uninterrupted one would have run."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..io import save_safetensors, write_json
from .config import CHECKPOINT_FORMAT


class VapiCheckpoint:
    """A VAπ run directory:

        state.json               step, config, model fingerprint, data fingerprint, Adam step counters, history
        generator.safetensors    the trainable tensors after `step` steps
        optimizer.safetensors    Adam's first and second moments, "exp_avg.<name>" / "exp_avg_sq.<name>"
        reference.safetensors    the starting trainable tensors (only when the KL term is on)
        model/                   the post-trained model in the Hugging Face layout (written by the CLI)
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def exists(self) -> bool:
        return (self.path / "state.json").exists()

    def read_state(self) -> dict:
        try:
            state = json.loads((self.path / "state.json").read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{self.path / 'state.json'} is not valid JSON: {exc}") from exc
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{self.path} is not a VAπ checkpoint directory (format {state.get('format')!r})")
        return state

    def save(self, state: dict, params: dict[str, torch.nn.Parameter], optimizer: torch.optim.Optimizer,
             reference: dict[str, torch.Tensor] | None) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        weights = {n: p.detach().cpu().contiguous() for n, p in params.items()}
        moments, counters = {}, {}
        for n, p in params.items():
            s = optimizer.state.get(p)
            if s:
                moments[f"exp_avg.{n}"] = s["exp_avg"].detach().cpu().contiguous()
                moments[f"exp_avg_sq.{n}"] = s["exp_avg_sq"].detach().cpu().contiguous()
                counters[n] = float(s["step"])
        save_safetensors(self.path / "generator.safetensors", weights)
        save_safetensors(self.path / "optimizer.safetensors", moments)
        if reference is not None and not (self.path / "reference.safetensors").exists():
            save_safetensors(self.path / "reference.safetensors", {n: t.contiguous() for n, t in reference.items()})
        write_json(self.path / "state.json", dict(state, format=CHECKPOINT_FORMAT, adam_steps=counters))

    def load_into(self, params: dict[str, torch.nn.Parameter], optimizer: torch.optim.Optimizer,
                  state: dict) -> dict[str, torch.Tensor] | None:
        """Put the saved tensors and Adam state in place (all checked before any is written);
        returns the reference tensors when saved."""
        from safetensors.torch import load_file

        weights = load_file(str(self.path / "generator.safetensors"))
        moments = load_file(str(self.path / "optimizer.safetensors"))
        if set(weights) != set(params):
            raise ValueError(f"{self.path} holds other trainable tensors than this config trains")
        for n, p in params.items():
            if weights[n].shape != p.shape or not torch.isfinite(weights[n]).all():
                raise ValueError(f"{self.path}: tensor {n} has the wrong shape or is not finite")
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(weights[n].to(p.device, p.dtype))
        counters = state.get("adam_steps", {})
        names = list(params)
        saved = optimizer.state_dict()
        saved["state"] = {
            i: {"step": torch.tensor(counters[n]), "exp_avg": moments[f"exp_avg.{n}"].to(params[n].device),
                "exp_avg_sq": moments[f"exp_avg_sq.{n}"].to(params[n].device)}
            for i, n in enumerate(names) if n in counters
        }
        optimizer.load_state_dict(saved)
        ref_file = self.path / "reference.safetensors"
        return load_file(str(ref_file)) if ref_file.exists() else None


