"""Scratch wrapper (docs/experiments/2026-12-07-generator-frontier.md): `bench safety` with a round prompt set of
N benign prompts, the grid leaving their texts out. Usage: PYTHONPATH=. python THIS N bench safety ..."""
import os, sys
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import safecb.bench.safety as bs
from safecb.engine import toy_round_prompts
from safecb.world.prompts import PromptSetConfig
n = int(sys.argv[1])
bs.toy_round_prompts = lambda: toy_round_prompts(PromptSetConfig(n_train_benign=n))
import safecb.eval.broad as broad
broad.toy_round_prompts = bs.toy_round_prompts  # the grid leaves out every text the loop sees
from safecb.cli import main
raise SystemExit(main(sys.argv[2:]))
