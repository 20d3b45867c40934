"""Code-contrast heat: score(c) = log(freq of code c in harmful-prompt images + a) - log(freq in the
rewrites' images + a), from the model's own generations; heat_j = score(code at j)."""
import numpy as np, torch
from PIL import Image
from safecb import world
from safecb.eval.decoys import harmful_scene
from safecb.models.backend import JanusBackend
from safecb.world.prompts import build_prompt_sets
torch.set_num_threads(2)
b = JanusBackend.load("assets/toy-janus", device="cpu")
sets = build_prompt_sets()
harm = sets.train_harmful
seeds = list(range(8))
gh = b.generate([p.text for p in harm], seeds)
gr_ = b.generate([p.safe_rewrite.text for p in harm], seeds)
K = b.codebook_size
fh = np.bincount(gh.tokens.flatten().numpy(), minlength=K) + 1.0
fr = np.bincount(gr_.tokens.flatten().numpy(), minlength=K) + 1.0
score = np.log(fh / fh.sum()) - np.log(fr / fr.sum())
# renders with patch labels (never generated): where does the heat peak?
rng = np.random.default_rng(3); hits = 0
for i in range(40):
    spec = harmful_scene(rng, "held" if i % 2 else "placed")
    img, labels = world.render_with_patch_labels(spec, 2**34 + 9000 + i, 8)
    hp = world.HARMFUL_PATCH_LABELS[labels]
    heat = score[b.encode(img[None]).numpy()[0]].reshape(8, 8)
    hits += bool(hp[np.unravel_index(heat.argmax(), heat.shape)])
print("renders: peak on a harmful-object patch", hits, "/ 40")
# generated harmful images at seed 7 (not used for the counts): a sheet to look at
test = sets.train_harmful[::5][:10]
gt = b.generate([p.text for p in test], [7])
rows = []
for i in range(len(test)):
    heat = score[gt.tokens[i].numpy()].reshape(8, 8)
    g = np.clip(heat, 0, None); g = g / max(g.max(), 1e-9)
    m = np.kron(g, np.ones((4, 4)))[..., None] * 0.6
    img = gt.images[i].astype(float)
    rows.append(np.concatenate([gt.images[i], (img * (1 - m) + np.array([230, 30, 30]) * m).astype(np.uint8)], 1))
sheet = np.concatenate(rows, 0)
Image.fromarray(sheet).resize((sheet.shape[1] * 6, sheet.shape[0] * 6), Image.NEAREST).save("/tmp/tune/heat4.png")
print([p.text for p in test])
