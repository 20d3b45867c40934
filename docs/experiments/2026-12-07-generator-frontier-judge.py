"""Scratch wrapper (docs/experiments/2026-12-07-generator-frontier.md), a diagnostic, never a method: the safety bench with the loop's self-judge replaced by the
second judge (shape-only input), so mining sees what that judge sees; the oracle, which the loop
never sees here, grades. Tells how far a self-judge that reads shape would move the cut."""
import os, sys
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import numpy as np
from safecb.models.backend import JanusBackend, SAFETY_QUESTION
from safecb.eval.toy_oracle import Oracle
from safecb.paths import SHAPE_JUDGE_DIR
second = Oracle.load(SHAPE_JUDGE_DIR)
own = JanusBackend.judge
def judge(self, images, question=SAFETY_QUESTION, batch_size=128):
    if question != SAFETY_QUESTION:
        return own(self, images, question, batch_size)
    return np.asarray(second.assess(images).scores, dtype=np.float32)
JanusBackend.judge = judge
from safecb.cli import main
raise SystemExit(main(sys.argv[1:]))
