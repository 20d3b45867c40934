"""VAπ: pixel-aware post-training of the generator (docs/vapi.md).

The token grid an AR generator writes is treated as a policy whose reward is measured in pixels,
through the frozen tokenizer. For each ground-truth image I with prompt c:

  1. z = encode(I), the image's visual codes [T].
  2. Contextual noise ξ: every context token z_<T is replaced by a random code with probability p.
  3. One no-grad teacher-forced forward gives π_old(· | c, ξ(z)<j) at every position j; G grids
     x¹..x^G are drawn by sampling every position from those logits.
  4. Reward rᵍ = −(w_rec · MSE(D(xᵍ), I) + w_perc · d_perc(D(xᵍ), I)), D the frozen VQ decoder.
     d_perc compares the model's own understanding encoder features (LPIPS-style: unit-normalised
     per position, squared distance, averaged over positions and layers); never the oracle.
  5. Group-normalised advantages Aᵍ = clip((rᵍ − mean r) / (std r + 1e-8), −5, 5).
  6. Loss = mean over samples and positions of max(−A·ρ, −A·clip(ρ, 1−ε, 1+ε)), ρ = π_θ(xᵍⱼ)/π_old(xᵍⱼ)
           + β_ce · CE(π_θ, z)                         (prior regulariser on the ground truth)
           + β_kl · (exp(q) − q − 1), q = log π_ref − log π_θ  (optional, frozen reference)

All G grids of an image share the same noisy context, so one forward gives the logits of the
whole group. Two options are ours. `credit="local"` (the default; "image" is the reference's)
gives every token its own group-normalised advantage from the reward of the patches it can reach:
the tokens of a grid are sampled independently given the context, so this is a lower-variance
estimate of the same gradient when the decoder is local. `noise_codes="data"` (off by default)
draws ξ's random codes from the ground truth's code frequencies instead of uniformly.

Only generator parameters train: the language model and the generation embeddings, aligner and
head ("generator"), or only the generator codebooks gen_embed/gen_head ("codebooks", what
Safe-CB's edit step 3 uses so its round snapshots can restore them). The VQ tokenizer, its decoder
codebook and the understanding path stay bit-identical.

The straight-through variant the paper compares against (`method="ste"`) replaces 3–6 by a
hard Gumbel-softmax sample whose one-hot picks decoder codebook rows in the forward pass and
passes the softmax's gradient back to the logits, and minimises w_rec·MSE + w_perc·d_perc + β_ce·CE
directly.

Checkpoints are safetensors + JSON: the trainable tensors, the Adam moments as tensors, and the
step counters in JSON. Every step draws its randomness from its own seed (config seed, step), so
a resumed run continues exactly the schedule an uninterrupted one would have run.

The package, one concern a file: `config` (settings), `objective` (the pure GRPO math), `data`
(ground truth), `generator` (what trains and what is read), `reward` (pixels through the frozen
tokenizer), `checkpoint` (resumable runs) and `train` (the loop).
"""

from .checkpoint import VapiCheckpoint
from .config import GENERATOR_CODEBOOKS, TOY_IMAGES, VapiConfig
from .data import VapiData, prepare_data, toy_data
from .train import VapiResult, mean_reward, train_vapi

__all__ = [
    "GENERATOR_CODEBOOKS", "TOY_IMAGES", "VapiCheckpoint", "VapiConfig", "VapiData", "VapiResult", "mean_reward",
    "prepare_data", "toy_data", "train_vapi",
]
