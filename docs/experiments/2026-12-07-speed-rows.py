"""Write results/speed_gpu/ and results/speed_cpu/ from the recorded outputs of the speed runs.

The GPU runs (one NVIDIA H200) and the CPU runs (2 cores) were measured before `bench speed` wrote
result rows; their per-call times survive only as printed output: docs/bench_speed_gpu.md (GPU) and
the per-call table of docs/results.md as first recorded (CPU, copied below). This script copies
those numbers, call by call, into the evidence format so `python -m safecb report` computes the
ratios from them; meta.json says where each came from. Later runs write their rows directly:
`python -m safecb bench speed ... --results results/speed_gpu` (`.ci/gpu-figures` does).

Run: `.venv/bin/python docs/experiments/2026-12-07-speed-rows.py`"""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from safecb.evidence import RESULTS_DIR, write_evidence  # noqa: E402

GPU_RECORD = ROOT / "docs" / "bench_speed_gpu.md"
GPU_ENV = {"python": None, "versions": {"torch": "2.11.0+cu130", "transformers": "5.23.0"},
           "machine": {"cuda": "NVIDIA H200", "cpu_count": 16}, "commit": None}
CPU_ENV = {"python": None, "versions": {"torch": "2.13.0 (CPU build)", "transformers": "5.23.0"},
           "machine": {"cuda": None, "cpu_count": 2}, "commit": None}

# docs/results.md's CPU table as recorded: (batch, run) -> (ours' 4 calls, transformers' 4 calls),
# each in the order the sampler was called (A B B A, 2 blocks: calls 1-2 block 0, 3-4 block 1)
CPU_CALLS = {
    (1, 1): ([10.4, 13.1, 11.9, 10.9], [12.6, 11.7, 11.8, 11.7]),
    (1, 2): ([3.93, 3.75, 3.82, 3.83], [3.97, 3.90, 3.84, 4.00]),
    (8, 1): ([18.1, 15.3, 15.4, 14.5], [17.8, 15.8, 15.5, 14.8]),
    (8, 2): ([10.54, 10.79, 11.07, 11.59], [10.96, 11.13, 11.46, 11.63]),
    (32, 1): ([37.0, 38.7, 38.1, 37.9], [36.9, 36.6, 40.2, 38.0]),
    (32, 2): ([24.19, 23.37, 23.37, 22.53], [23.98, 23.93, 24.61, 24.12]),
}


def gpu_calls() -> list[dict]:
    """Runs 1 and 3 printed every call ("batch 1 ours: 1.20 s"); run 2 printed a table with each
    sampler's mean and range over its two calls, which are therefore the range's ends."""
    text = GPU_RECORD.read_text()
    sections = re.split(r"^## (\d)\. ", text, flags=re.M)
    runs = {int(sections[i]): sections[i + 1] for i in range(1, len(sections), 2)}
    rows = []
    for run, mode in ((1, "graphs"), (3, "graphs")):
        order = {}
        for batch, sampler, seconds in re.findall(r"batch\s+(\d+)\s+(ours|hf): ([\d.]+) s", runs[run]):
            batch = int(batch)
            k = order.setdefault(batch, 0)
            order[batch] += 1
            rows.append({"run": run, "mode": mode, "batch": batch, "block": k // 4, "order": k,
                         "sampler": "ours" if sampler == "ours" else "transformers", "seconds": float(seconds)})
    for batch, sampler, mean, low, high in re.findall(
            r"^\| (\d+) \| (ours|transformers) \| ([\d.]+) \(([\d.]+)-([\d.]+)\)", runs[2], flags=re.M):
        for k, seconds in enumerate((float(low), float(high))):
            rows.append({"run": 2, "mode": "compiled", "batch": int(batch), "block": 0, "order": None,
                         "sampler": sampler, "seconds": seconds})
    return rows


def gpu_printed() -> list[dict]:
    """Run 2's printed per-sampler figures the calls alone do not give: prefill, roofline share,
    per-call peak memory."""
    text = GPU_RECORD.read_text().split("## 2. ")[1].split("## 3. ")[0]
    rows = []
    for line in re.findall(r"^\| \d+ \| (?:ours|transformers) \|.*$", text, flags=re.M):
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows.append({"run": 2, "batch": int(cells[0]), "sampler": cells[1], "prefill_s": float(cells[3]),
                     "roofline_share": float(cells[8].rstrip("%")) / 100, "peak_mib": float(cells[9])})
    bandwidth = float(re.search(r"copy bandwidth measured here \((\d+) GB/s\)", text)[1])
    weights = re.search(r"weights (\d+) MiB; our sampler keeps (\d+) MiB", text)
    return rows, [{"run": 2, "copy_bandwidth_gbs": bandwidth, "weights_mib": float(weights[1]),
                   "sampler_extra_mib": float(weights[2])}]


def cpu_calls() -> list[dict]:
    rows = []
    for (batch, run), (ours, hf) in CPU_CALLS.items():
        for sampler, calls in (("ours", ours), ("transformers", hf)):
            for k, seconds in enumerate(calls):
                rows.append({"run": run, "batch": batch, "block": k // 2, "call": k, "sampler": sampler,
                             "seconds": seconds})
    return rows


def main() -> None:
    printed, machine = gpu_printed()
    write_evidence(
        RESULTS_DIR / "speed_gpu", bench="speed", config={"device": "cuda", "dtype": "bfloat16", "cfg_weight": 5.0,
                                                          "tokens": 576, "shape": "Janus-Pro-1B, random weights",
                                                          "seed": 0},
        command="python -m safecb bench speed --device cuda --batches 1,8,32 --repeats 2 (run 1); "
                "--batches 1,8 --compile --no-round (run 2); --batches 1 (run 3)",
        tables={"calls": gpu_calls(), "printed": printed, "machine": machine},
        extra={**GPU_ENV, "transcribed_from": "docs/bench_speed_gpu.md (the runs' printed output)",
               "transcribed_by": "docs/experiments/2026-12-07-speed-rows.py"})
    write_evidence(
        RESULTS_DIR / "speed_cpu", bench="speed", config={"device": "cpu", "dtype": "float32", "cfg_weight": 5.0,
                                                          "tokens": 16, "repeats": 2, "shape": "Janus-Pro-1B, random weights",
                                                          "seed": 0},
        command="python -m safecb bench speed --device cpu --tokens 16 --repeats 2 (run 2 with --no-round)",
        tables={"calls": cpu_calls()},
        extra={**CPU_ENV, "transcribed_from": "the per-call table of docs/results.md as first recorded",
               "transcribed_by": "docs/experiments/2026-12-07-speed-rows.py"})


if __name__ == "__main__":
    main()
