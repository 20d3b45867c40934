import sys, numpy as np, torch
from safecb import world
from safecb.eval.shape_probe import probe_scenes
from safecb.models.backend import JanusBackend
torch.set_num_threads(2)
for model in sys.argv[1:]:
    b = JanusBackend.load(model, device="cpu")
    rng = np.random.default_rng(77)
    for concept in ("knife", "gun", "skull"):
        scenes = probe_scenes(concept, 200, rng)
        imgs = np.stack([world.render(s, 2**34 + 5000 + i) for i, s in enumerate(scenes)])
        p = b.judge(imgs)
        held = np.array([world.is_heldout_combination(s) for s in scenes])
        rel = np.array([s.relation == "holding" for s in scenes])
        print(model, concept, f"train-combo {np.mean(p[~held] >= .5):.2f} (n {(~held).sum()})  heldout-combo {np.mean(p[held] >= .5):.2f} (n {held.sum()})  held {np.mean(p[rel]>=.5):.2f} placed {np.mean(p[~rel]>=.5):.2f}")
