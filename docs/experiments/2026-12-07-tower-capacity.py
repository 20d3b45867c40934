"""Scratch (docs/experiments/2026-12-07-understanding-tower.md, the capacity study). Usage from the repository
root: PYTHONPATH=. python THIS HIDDEN LAYERS STEPS LR [shipped]
 can a larger SigLIP-style encoder learn which objects a 32px scene holds, whatever their colour?
Trains a JanusVisionModel + linear presence probe on fresh renders (the tower stage's batches), reports
recall of knife/gun/skull on palette-changed renders and false positives on weapon-left-out scenes."""
import sys, time, json
import numpy as np, torch, torch.nn.functional as F
from dataclasses import replace
from transformers import JanusForConditionalGeneration
from transformers.models.janus.configuration_janus import JanusVisionConfig
from transformers.models.janus.modeling_janus import JanusVisionModel
from safecb import world
from safecb.models.train_tower import TowerTuneConfig, draw_batch, prepare_pixels, _optimizer
from safecb.models.train_steps import lr_at

hidden, layers, steps, lr = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
init = sys.argv[5] if len(sys.argv) > 5 else "scratch"
torch.set_num_threads(2); torch.manual_seed(0)
shipped = JanusForConditionalGeneration.from_pretrained("assets/toy-janus").eval()
if init == "shipped":
    enc = shipped.model.vision_model
else:
    cfg = JanusVisionConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4, image_size=32,
                            patch_size=4, projection_dim=128, mlp_ratio=4.0, num_image_tokens=64, depth=2)
    enc = JanusVisionModel(cfg)
H = enc.config.hidden_size
probe = torch.nn.Linear(2 * H, len(world.CONCEPTS))
params = list(enc.parameters()) + list(probe.parameters())
print("encoder params", sum(p.numel() for p in enc.parameters()))
tc = TowerTuneConfig(batch=64)
opt = _optimizer(params, lr)
rng, g = np.random.default_rng(11), torch.Generator().manual_seed(12)
def logits(px):
    f = enc(pixel_values=px).last_hidden_state
    return probe(torch.cat([f.mean(1), f.amax(1)], -1))
# eval set: palette always changed where allowed, half through the tokenizer
erng, eg = np.random.default_rng(999), torch.Generator().manual_seed(998)
ecfg = replace(tc, palette_prob=1.0)
ev = [draw_batch(erng, ecfg) for _ in range(8)]
evx = [prepare_pixels(shipped, b["images"], b["recolourable"], ecfg, eg) for b in ev]
evy = np.concatenate([b["presence"] for b in ev]); evrec = np.concatenate([b["recolourable"] for b in ev])
names = list(world.CONCEPTS)
def evaluate():
    enc.eval()
    with torch.no_grad():
        p = torch.cat([torch.sigmoid(logits(x)) for x in evx]).numpy()
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
    b = draw_batch(rng, tc)
    with torch.no_grad():
        px = prepare_pixels(shipped, b["images"], b["recolourable"], tc, g)
    loss = F.binary_cross_entropy_with_logits(logits(px), torch.from_numpy(b["presence"]))
    for gr in opt.param_groups: gr["lr"] = lr_at(step, steps, lr, 100)
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(params, 1.0); opt.step()
    run.append(loss.item())
    if (step + 1) % 200 == 0 or step == steps - 1:
        print(step + 1, f"train {np.mean(run):.4f}", evaluate(), f"{time.time()-t0:.0f}s", flush=True); run = []
