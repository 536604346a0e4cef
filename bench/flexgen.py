"""FlexGen's T4 setting planned by Tierplan (issue 13, item 3): prints Tierplan's predicted generation
throughput beside FlexGen's README figures.

Setting (FlexGen README, Sheng et al. ICML 2023): one NVIDIA T4 (16 GB), 208 GB DDR, 1.5 TB SSD
(``presets/t4-flexgen.json``); prompt 512 tokens, 32 generated; fp16 weights and cache, no compression.
Effective batch sizes of FlexGen's runs (paper, Table 2): OPT-30B 144 (3 GPU batches of 48), OPT-175B 256
(8 GPU batches of 32). Both are micro-batched here the same way (``Workload(micro_batches=...)``).

Throughput, as FlexGen counts it: generated tokens / (prefill time + decode time)
= ``batch · 32 / (T_prefill + 32 · T_decode)``, with ``T_decode`` the planned step at the midpoint context
(512 + 16 tokens) and ``T_prefill`` the planned prefill of the 512-token prompts.

What differs from FlexGen (say so when quoting the numbers): Tierplan's planner runs every op on the GPU,
so attention reads the KV cache over PCIe; FlexGen runs decode attention on the CPU next to a CPU-resident
cache (the graph marks decode attention ``host_ok``; using it needs planner support). Tierplan's numbers
are a plan's step times on the preset's roofline, not a measurement.

    python bench/flexgen.py            # ~3 minutes on 2 cores (OPT-175B has ~4,600 ops per step)
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.planner import make_plan  # noqa: E402
from core.sources import Workload  # noqa: E402
from core.sources.hf_config import graph_from_hf_config  # noqa: E402
from core.sources.presets import load_preset  # noqa: E402

PROMPT, GENERATE = 512, 32
#: model -> (effective batch, GPU batches, FlexGen's README throughput in token/s)
RUNS = {"opt-30b": (144, 3, 7.32), "opt-175b": (256, 8, 0.69)}


def predict(model: str, batch: int, micro: int) -> dict[str, float]:
    hw = load_preset("t4-flexgen")
    cfg = json.loads((ROOT / "sample_models" / "configs" / f"{model}.json").read_text())
    out: dict[str, float] = {}
    for kind, seq in (("prefill", PROMPT), ("decode", PROMPT + GENERATE // 2)):
        t0 = time.time()
        graph = graph_from_hf_config(cfg, Workload(kind, batch, seq, micro_batches=micro))
        plan = make_plan(graph, hw)
        out[f"{kind}_s"] = float(plan.metrics["step_time_s"])
        out[f"{kind}_compute_s"] = float(plan.metrics["compute_only_time_s"])
        out[f"{kind}_plan_s"] = time.time() - t0
    out["tokens_per_s"] = batch * GENERATE / (out["prefill_s"] + GENERATE * out["decode_s"])
    return out


def main() -> int:
    print("| model | batch (GPU batches) | prefill (s) | decode step (s) | Tierplan tok/s | FlexGen tok/s | error |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for model, (batch, micro, flexgen) in RUNS.items():
        r = predict(model, batch, micro)
        err = (r["tokens_per_s"] - flexgen) / flexgen
        print(f"| {model} | {batch} ({micro} × {batch // micro}) | {r['prefill_s']:,.1f} | {r['decode_s']:,.2f} | "
              f"{r['tokens_per_s']:.2f} | {flexgen:.2f} | {err:+.0%} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
