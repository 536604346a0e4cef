"""Fidelity: Tierplan's memory and FLOP predictions against PyTorch measurements (issue 13).

``python bench/fidelity.py --measure`` (needs torch and transformers; ``make fidelity`` makes a venv with
them) measures on the CPU, with random weights and nothing downloaded:

* the small Llama train step (h 512, 4 layers, vocab 32k, b2 s512; bf16 weights and gradients, fp32 Adam
  master + m + v), its prefill (b2 s512) and one decode step (b2, 512 tokens of context);
* ResNet-18 and ResNet-50 training steps at batch 16 in fp32 with Adam (plain-torch models mirroring
  torchvision), also exported to ONNX in training mode (weights stripped, shapes kept) for the ONNX path;
* Llama-2-7B train b1 s4096 with FakeTensor (no memory is allocated), with and without activation
  checkpointing;
* parameter counts of the HF classes on the meta device for the bundled configs (OPT-30B, OPT-175B, …).

Peaks come from two independent counters: ``MemTracker`` (torch.distributed._tools.mem_tracker, tracking
every tensor's storage through a dispatch mode) and the profiler's allocator events (cumulative sum of
``[memory]`` events plus the bytes alive before the step). Saved-for-backward bytes come from
``saved_tensors_hooks`` (unique storages, parameters excluded), FLOPs from ``FlopCounterMode``.
The results go to ``tests/data/fidelity/pytorch_measured.json`` with the torch version.

Without ``--measure`` the script needs no torch: it reads that JSON and prints the issue's table with
today's Tierplan figures beside the measured ones.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT / "tests" / "data" / "fidelity"
MEASURED = DATA / "pytorch_measured.json"

#: The small Llama of issue 13 (HF LlamaConfig fields).
SMALL_LLAMA = {
    "model_type": "llama", "hidden_size": 512, "num_hidden_layers": 4, "num_attention_heads": 8,
    "num_key_value_heads": 8, "intermediate_size": 1376, "vocab_size": 32000, "tie_word_embeddings": False,
    "rms_norm_eps": 1e-6, "max_position_embeddings": 2048,
}
SMALL_BATCH, SMALL_SEQ = 2, 512
BIG_BATCH, BIG_SEQ = 1, 4096
RESNET_BATCH = 16


# ------------------------------------------------------------------------------------------ measuring


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        sys.exit("bench/fidelity.py --measure needs torch and transformers: run `make fidelity`")
    return torch


class _Adam:
    """Mixed-precision Adam as DeepSpeed/Megatron keep it: fp32 master copy, m and v per bf16 parameter
    (12 B/param), the bf16 parameter refreshed from the master after each update."""

    def __init__(self, params: list[Any], fp32_master: bool) -> None:
        torch = _torch()
        self.params = params
        self.master = [p.detach().float().clone() if fp32_master else None for p in params]
        self.m = [torch.zeros_like(p, dtype=torch.float32) for p in params]
        self.v = [torch.zeros_like(p, dtype=torch.float32) for p in params]
        self.t = 0

    def tensors(self) -> list[Any]:
        return [t for t in (*self.master, *self.m, *self.v) if t is not None]

    def step(self, lr: float = 1e-4, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> None:
        torch = _torch()
        self.t += 1
        with torch.no_grad():
            for p, master, m, v in zip(self.params, self.master, self.m, self.v):
                if p.grad is None:
                    continue
                g = p.grad.float() if p.grad.dtype != torch.float32 else p.grad
                m.mul_(b1).add_(g, alpha=1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                target = master if master is not None else p
                target.addcdiv_(m, v.sqrt().add_(eps), value=-lr)
                if master is not None:
                    p.copy_(master)
                p.grad = None


def _storage_key(t: Any) -> int:
    return int(t.untyped_storage()._cdata)


def _peak_memtracker(step: Any, externals: list[Any]) -> dict[str, int]:
    from torch.distributed._tools.mem_tracker import MemTracker

    mt = MemTracker()
    mt.track_external(*externals)
    externals.clear()  # the caller's list must not keep tensors alive that the step frees (old KV caches)
    with mt:
        step()
    snap = mt.get_tracker_snapshot("peak")
    dev = next(iter(snap))
    return {str(k): int(v) for k, v in snap[dev].items()}


def _peak_profiler(step: Any, baseline_bytes: int) -> int:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]")
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return baseline_bytes + peak


def _live_bytes(tensors: list[Any]) -> int:
    seen: dict[int, int] = {}
    for t in tensors:
        seen[_storage_key(t)] = t.untyped_storage().nbytes()
    return sum(seen.values())


def _saved_by_scope(model: Any, run: Any, scopes: dict[str, Any]) -> dict[str, int]:
    """Bytes of the unique non-parameter storages autograd saves during ``run()``, by the module scope that
    saved them (``scopes``: name → module; everything else under 'other')."""
    torch = _torch()
    params = {_storage_key(p) for p in model.parameters()} | {_storage_key(b) for b in model.buffers()}
    current = ["other"]
    seen: dict[int, tuple[str, int]] = {}
    handles = []
    for name, module in scopes.items():
        handles.append(module.register_forward_pre_hook(lambda _m, _a, n=name: current.append(n) and None))
        handles.append(module.register_forward_hook(lambda _m, _a, _o: current.pop() and None))

    def pack(t: Any) -> Any:
        key = _storage_key(t)
        if key not in params and key not in seen:
            seen[key] = (current[-1], t.untyped_storage().nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = run()
    for h in handles:
        h.remove()
    by: dict[str, int] = {}
    for scope, nbytes in seen.values():
        by[scope] = by.get(scope, 0) + nbytes
    del out
    return by


def _flops(run_fwd: Any, run_bwd: Any) -> dict[str, Any]:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fwd:
        out = run_fwd()
    with FlopCounterMode(display=False) as bwd:
        run_bwd(out)

    def by_op(counter: Any) -> dict[str, int]:
        return {str(k): int(v) for k, v in counter.get_flop_counts().get("Global", {}).items()}

    return {"forward": int(fwd.get_total_flops()), "backward": int(bwd.get_total_flops()),
            "forward_by_op": by_op(fwd), "backward_by_op": by_op(bwd)}


def _llama(config: dict[str, Any], dtype: Any) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    fields = {k: v for k, v in config.items() if k != "model_type"}
    cfg = LlamaConfig(**fields, attn_implementation="sdpa")
    torch = _torch()
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        model = LlamaForCausalLM(cfg)
    finally:
        torch.set_default_dtype(old)
    return model


def measure_llama_train(config: dict[str, Any], batch: int, seq: int, *, fake: bool = False,
                        checkpointing: bool = False) -> dict[str, Any]:
    torch = _torch()
    from torch._subclasses.fake_tensor import FakeTensorMode

    mode = FakeTensorMode() if fake else None
    if mode is not None:
        mode.__enter__()
    try:
        torch.manual_seed(0)
        model = _llama(config, torch.bfloat16)
        model.train()
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        params = list(model.parameters())
        adam = _Adam(params, fp32_master=True)
        ids = torch.randint(0, config["vocab_size"], (batch, seq))

        def step() -> None:
            loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            adam.step()

        step()  # warm up: Adam's t > 0, lazy buffers (rotary tables) built
        result: dict[str, Any] = {"params": sum(p.numel() for p in params)}
        result["model_state_bytes"] = _live_bytes([*params, *adam.tensors()])
        mt = _peak_memtracker(step, [model, *adam.tensors(), ids])
        result["peak_bytes_memtracker"] = mt["Total"]
        result["peak_breakdown_memtracker"] = mt
        if not fake:
            result["peak_bytes_profiler"] = _peak_profiler(step, _live_bytes([*params, *adam.tensors(), ids]))
        if not checkpointing:
            layers = {f"layers.{i}": layer for i, layer in enumerate(model.model.layers)}
            scopes = {"embed": model.model.embed_tokens, **layers}
            saved = _saved_by_scope(model, lambda: model(input_ids=ids, labels=ids).loss, scopes)
            result["saved_bytes_total"] = sum(saved.values())
            result["saved_bytes_per_layer"] = [saved.get(f"layers.{i}", 0) for i in range(len(layers))]
            result["saved_bytes_head_and_loss"] = saved.get("other", 0)
            if not fake:
                def fwd() -> Any:
                    return model(input_ids=ids, labels=ids).loss
                result["flops"] = _flops(fwd, lambda loss: loss.backward())
                for p in params:
                    p.grad = None
        return result
    finally:
        if mode is not None:
            mode.__exit__(None, None, None)


def _cache_tensors(cache: Any) -> list[Any]:
    out = []
    for layer in getattr(cache, "layers", []):
        for name in ("keys", "values"):
            t = getattr(layer, name, None)
            if t is not None:
                out.append(t)
    return out


def measure_llama_inference(config: dict[str, Any], batch: int, seq: int) -> dict[str, Any]:
    torch = _torch()
    torch.manual_seed(0)
    model = _llama(config, torch.bfloat16).eval()
    params = list(model.parameters())
    ids = torch.randint(0, config["vocab_size"], (batch, seq))
    result: dict[str, Any] = {"params": sum(p.numel() for p in params)}
    holder: dict[str, Any] = {}

    def prefill() -> None:
        with torch.no_grad():
            holder["out"] = model(input_ids=ids, use_cache=True, logits_to_keep=1)

    prefill()
    holder.clear()
    result["prefill_peak_bytes_memtracker"] = _peak_memtracker(prefill, [model, ids])["Total"]
    holder.clear()
    result["prefill_peak_bytes_profiler"] = _peak_profiler(prefill, _live_bytes([*params, ids]))
    cache = holder["out"].past_key_values
    cache_tensors = _cache_tensors(cache)
    result["kv_cache_bytes"] = _live_bytes(cache_tensors)
    nxt = torch.randint(0, config["vocab_size"], (batch, 1))
    base = [t.clone() for t in cache_tensors]

    def reset() -> None:
        for layer, k, v in zip(cache.layers, base[0::2], base[1::2]):
            layer.keys, layer.values = k.clone(), v.clone()

    def decode() -> None:
        with torch.no_grad():
            model(input_ids=nxt, past_key_values=cache, use_cache=True, logits_to_keep=1)

    reset()
    holder.clear()
    result["decode_peak_bytes_memtracker"] = _peak_memtracker(decode, [model, nxt, *_cache_tensors(cache)])["Total"]
    reset()
    result["decode_peak_bytes_profiler"] = _peak_profiler(decode, _live_bytes([*params, nxt, *_cache_tensors(cache)]))
    return result


def measure_resnet(depth: int, batch: int, onnx_path: Path) -> dict[str, Any]:
    torch = _torch()
    sys.path.insert(0, str(ROOT / "bench"))
    from torch_models import resnet

    torch.manual_seed(0)
    model = resnet(depth).train()
    params = list(model.parameters())
    opt = torch.optim.Adam(params, lr=1e-4)
    x = torch.randn(batch, 3, 224, 224)
    y = torch.randint(0, 1000, (batch,))

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()
    states = [s for st in opt.state.values() for s in st.values() if torch.is_tensor(s) and s.numel() > 1]
    result: dict[str, Any] = {"params": sum(p.numel() for p in params)}
    result["model_state_bytes"] = _live_bytes([*params, *states])
    mt = _peak_memtracker(step, [model, opt, x, y])
    result["peak_bytes_memtracker"] = mt["Total"]
    result["peak_breakdown_memtracker"] = mt
    result["peak_bytes_profiler"] = _peak_profiler(step, _live_bytes([*params, *model.buffers(), *states, x, y]))
    saved = _saved_by_scope(model, lambda: torch.nn.functional.cross_entropy(model(x), y), {})
    result["saved_bytes_total"] = sum(saved.values())
    result["flops"] = _flops(lambda: torch.nn.functional.cross_entropy(model(x), y), lambda loss: loss.backward())
    opt.zero_grad(set_to_none=True)
    _export_onnx(model, x, onnx_path)
    return result


def _export_onnx(model: Any, x: Any, path: Path) -> None:
    """Training-mode ONNX (BatchNorm kept), float weights stripped to shapes so the file stays small."""
    import warnings

    import onnx
    import torch

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = Path(tmp) / "model.onnx"
        torch.onnx.export(model, (x[:1],), str(full), dynamo=False, training=torch.onnx.TrainingMode.TRAINING,
                          do_constant_folding=False, input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
        proto = onnx.load(str(full))
    for init in proto.graph.initializer:
        if init.data_type in (1, 10, 11, 16):
            init.ClearField("raw_data")
            init.ClearField("float_data")
            init.data_location = onnx.TensorProto.EXTERNAL
            del init.external_data[:]
            entry = init.external_data.add()
            entry.key, entry.value = "location", "stripped-weights.bin"
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(path))


def measure_param_counts(configs: dict[str, Path]) -> dict[str, int]:
    """Parameters of the HF class built on the meta device (tied weights counted once)."""
    torch = _torch()
    import transformers

    out = {}
    for key, path in configs.items():
        raw = json.loads(path.read_text())
        cfg = transformers.AutoConfig.for_model(**raw)
        with torch.device("meta"):
            model = transformers.AutoModelForCausalLM.from_config(cfg)
        out[key] = sum(p.numel() for p in model.parameters())
    return out


GROUPS = ("small_llama", "llama2_7b", "resnet", "params")


def measure(out_path: Path, only: set[str] | None = None) -> dict[str, Any]:
    """Measure every group (or only ``only``, keeping the other groups of an existing JSON)."""
    torch = _torch()
    import transformers

    torch.set_num_threads(2)
    t0 = time.time()
    configs = ROOT / "sample_models" / "configs"
    previous = json.loads(out_path.read_text()) if only and out_path.exists() else {}
    result: dict[str, Any] = {**previous}
    result.update({
        "format": "tierplan-fidelity/1",
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "how": "bench/fidelity.py --measure (CPU, random weights)",
    })
    want = only or set(GROUPS)
    if "small_llama" in want:
        result["small_llama"] = {"config": SMALL_LLAMA, "batch": SMALL_BATCH, "seq": SMALL_SEQ}
        print("small Llama train …", file=sys.stderr)
        result["small_llama"]["train"] = measure_llama_train(SMALL_LLAMA, SMALL_BATCH, SMALL_SEQ)
        print("small Llama prefill / decode …", file=sys.stderr)
        result["small_llama"].update(measure_llama_inference(SMALL_LLAMA, SMALL_BATCH, SMALL_SEQ))
    if "llama2_7b" in want:
        result["llama2_7b"] = {"config": "sample_models/configs/llama-2-7b.json", "batch": BIG_BATCH, "seq": BIG_SEQ}
        cfg7 = json.loads((configs / "llama-2-7b.json").read_text())
        print("Llama-2-7B train (FakeTensor) …", file=sys.stderr)
        result["llama2_7b"]["train"] = measure_llama_train(cfg7, BIG_BATCH, BIG_SEQ, fake=True)
        print("Llama-2-7B train with checkpointing (FakeTensor) …", file=sys.stderr)
        result["llama2_7b"]["train_checkpointing"] = measure_llama_train(cfg7, BIG_BATCH, BIG_SEQ, fake=True,
                                                                         checkpointing=True)
    if "resnet" in want:
        for depth in (18, 50):
            print(f"ResNet-{depth} train …", file=sys.stderr)
            onnx_rel = f"tests/data/fidelity/resnet{depth}-train.onnx"
            result[f"resnet{depth}"] = {"batch": RESNET_BATCH, "onnx": onnx_rel,
                                        "train": measure_resnet(depth, RESNET_BATCH, ROOT / onnx_rel)}
    if "params" in want:
        wanted = {k: configs / f"{k}.json" for k in ("llama-2-7b", "llama-3-70b", "mixtral-8x7b", "opt-30b", "opt-175b")
                  if (configs / f"{k}.json").exists()}
        print("parameter counts on the meta device …", file=sys.stderr)
        result["hf_param_counts"] = measure_param_counts(wanted)
    result["measure_time_s"] = round(time.time() - t0, 1)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out_path}", file=sys.stderr)
    return result


# ------------------------------------------------------------------------------------------ comparing


def _fmt(nbytes: float) -> str:
    if nbytes >= 1e10:
        return f"{nbytes / 1e9:,.1f} GB"
    return f"{nbytes / 1e6:,.1f} MB"


def _err(pred: float, meas: float) -> str:
    return f"{(pred - meas) / meas * 100:+.1f} %"


def table(measured: dict[str, Any]) -> str:
    """The issue's table with today's Tierplan figures (the same figures tests/test_fidelity.py checks)."""
    from core.sources.fidelity import predictions

    pred = predictions(measured)
    rows = []
    for key, label, kind in pred.rows():
        m, p = pred.measured[key], pred.predicted[key]
        if kind == "bytes":
            rows.append(f"| {label} | {_fmt(m)} | {_fmt(p)} | {_err(p, m)} |")
        elif kind == "flops":
            rows.append(f"| {label} | {m / 1e9:,.2f} GFLOP | {p / 1e9:,.2f} GFLOP | {_err(p, m)} |")
        else:
            rows.append(f"| {label} | {m:,.0f} | {p:,.0f} | {_err(p, m)} |")
    head = (f"PyTorch {measured['torch_version']} (transformers {measured['transformers_version']}), "
            f"{measured['machine']}, measured by `{measured['how']}`\n\n"
            "| quantity | measured | Tierplan | error |\n|---|---:|---:|---:|")
    return head + "\n" + "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--measure", action="store_true", help="re-measure with PyTorch (needs torch)")
    parser.add_argument("--out", type=Path, default=MEASURED, help="where --measure writes the JSON")
    parser.add_argument("--only", action="append", choices=GROUPS,
                        help="with --measure: re-measure only this group (repeatable), keep the others")
    args = parser.parse_args(argv)
    measured = measure(args.out, set(args.only or ())) if args.measure else json.loads(MEASURED.read_text())
    print(table(measured))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
