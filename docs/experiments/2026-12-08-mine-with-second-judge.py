"""Scratch: Safe-CB mining with the second toy judge in place of the model's own judge (hypothesis test only)."""
import sys
import numpy as np
from safecb.models import backend as B
from safecb.eval.judges import load_judge
_judge = load_judge(sys.argv.pop(1))
def judge(self, images, question=None, batch_size=128):
    return np.asarray(_judge.assess(np.asarray(images)).scores, float)
B.JanusBackend.judge = judge
from safecb.cli import main
sys.exit(main(sys.argv[1:]))
