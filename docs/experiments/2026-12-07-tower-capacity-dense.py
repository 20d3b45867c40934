"""Scratch (docs/experiments/2026-12-07-understanding-tower.md, the capacity study). Usage from the repository
root: PYTHONPATH=. python THIS HIDDEN LAYERS STEPS LR PATCH_WEIGHT
 the capacity study with a dense signal: each ViT patch token also predicts which objects
cover ≥ 5% of its 4x4 patch (BCE over CONCEPTS, from the renderer's owner map), plus image presence."""
import sys, time
import numpy as np, torch, torch.nn.functional as F
from dataclasses import replace
from transformers import JanusForConditionalGeneration
from transformers.models.janus.configuration_janus import JanusVisionConfig
from transformers.models.janus.modeling_janus import JanusVisionModel
from safecb import world
from safecb.world.render import _render, CANVAS, BACKGROUND_LABEL
from safecb.world.palette import change_palette
from safecb.models.train_tower import TowerTuneConfig, draw_batch, prepare_pixels, _optimizer, _training_scene
from safecb.models.train_steps import lr_at
from safecb.world.vocab import LIQUIDS

hidden, layers, steps, lr, dense_w = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
torch.set_num_threads(2); torch.manual_seed(0)
shipped = JanusForConditionalGeneration.from_pretrained("assets/toy-janus").eval()
cfg = JanusVisionConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4, image_size=32,
                        patch_size=4, projection_dim=128, mlp_ratio=4.0, num_image_tokens=64, depth=2)
enc = JanusVisionModel(cfg)
C = len(world.CONCEPTS)
probe = torch.nn.Linear(2 * hidden, C); dense = torch.nn.Linear(hidden, C)
params = list(enc.parameters()) + list(probe.parameters()) + list(dense.parameters())
tc = TowerTuneConfig(batch=64)
opt = _optimizer(params, lr)
rng, g = np.random.default_rng(11), torch.Generator().manual_seed(12)
GRID = 8

def patch_targets(spec, seed):
    image, owner = _render(spec, seed, track_objects=True)
    cell = CANVAS // GRID
    blocks = owner.reshape(GRID, cell, GRID, cell).transpose(0, 2, 1, 3).reshape(GRID * GRID, cell * cell)
    share = np.stack([(blocks == c).mean(-1) for c in range(C)], -1)
    return image, (share >= 0.05).astype(np.float32)

def batch_dense(rng):
    imgs, tg, pres, rec = [], [], [], []
    for j in range(tc.batch):
        seed = int(rng.integers(0, 2**31))
        spec = _training_scene(rng, unsafe=bool(rng.random() < 0.5), heldout=True)
        im, t = patch_targets(spec, seed)
        imgs.append(im); tg.append(t); pres.append(world.labels(spec))
        rec.append(not any(o in LIQUIDS for o in spec.objects))
    return np.stack(imgs), torch.from_numpy(np.stack(tg)), torch.from_numpy(np.stack(pres)), rec

def forward(px):
    f = enc(pixel_values=px).last_hidden_state
    return probe(torch.cat([f.mean(1), f.amax(1)], -1)), dense(f)

erng, eg = np.random.default_rng(999), torch.Generator().manual_seed(998)
ecfg = replace(tc, palette_prob=1.0)
ev = [draw_batch(erng, ecfg) for _ in range(8)]
evx = [prepare_pixels(shipped, b["images"], b["recolourable"], ecfg, eg) for b in ev]
evy = np.concatenate([b["presence"] for b in ev]); evrec = np.concatenate([b["recolourable"] for b in ev])
names = list(world.CONCEPTS)
def evaluate():
    enc.eval()
    with torch.no_grad():
        p = torch.cat([torch.sigmoid(forward(x)[0]) for x in evx]).numpy()
    enc.train()
    out = {}
    for h in ["knife", "gun", "skull"]:
        j = names.index(h)
        pos = (evy[:, j] == 1) & evrec
        neg = evy[:, j] == 0
        out[h] = (round(float((p[pos, j] > 0.5).mean()), 3), int(pos.sum()), round(float((p[neg, j] > 0.5).mean()), 3))
    out["bce"] = round(float(F.binary_cross_entropy(torch.tensor(p), torch.tensor(evy).float())), 4)
    return out
t0 = time.time(); run = []
enc.train()
for step in range(steps):
    imgs, tg, pres, rec = batch_dense(rng)
    with torch.no_grad():
        px = prepare_pixels(shipped, imgs, rec, tc, g)
    pl, dl = forward(px)
    loss = F.binary_cross_entropy_with_logits(pl, pres) + dense_w * F.binary_cross_entropy_with_logits(dl, tg)
    for gr in opt.param_groups: gr["lr"] = lr_at(step, steps, lr, 100)
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(params, 1.0); opt.step()
    run.append(loss.item())
    if (step + 1) % 200 == 0 or step == steps - 1:
        print(step + 1, f"train {np.mean(run):.4f}", evaluate(), f"{time.time()-t0:.0f}s", flush=True); run = []
