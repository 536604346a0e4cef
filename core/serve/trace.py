"""Request traces for the serving simulation: Mooncake JSONL, Azure-style CSV and a seeded generator.

A :class:`Trace` is a set of requests in arrival order. Each request has an arrival time, a prompt length, a
generated length and the ids of its prompt's 512-token *prefix blocks*: equal ids mean the same KV cache
(the id encodes the whole prefix up to the end of the block, as vLLM's chained block hash does), so two
requests share the cache of their common leading ids. Block ids live in one flat ``int64`` array with
per-request offsets so the policies and the simulator walk numpy slices, not lists of lists.

Formats
-------
- Mooncake JSONL (FAST'25 release): ``{"timestamp": ms, "input_length": n, "output_length": m,
  "hash_ids": [...]}`` one per line, ``len(hash_ids) == ceil(input_length / 512)``.
- CSV with ``TIMESTAMP, ContextTokens, GeneratedTokens`` (Azure's public LLM inference traces). These carry
  **no reuse information**: every request gets blocks of its own, so the prefix hit rate is 0 by
  construction (the summary says so).
- :func:`synthetic_trace`: shared system prompts, multi-turn conversations that extend their own history
  (the next turn's prompt is the previous prompt + answer + a new message), Poisson or bursty arrivals,
  log-normal lengths. Generated blocks are named too, so the KV a turn generates can hit in the next turn.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np

from core.errors import InputError

__all__ = [
    "BLOCK_TOKENS",
    "Trace",
    "TraceSummary",
    "SyntheticSpec",
    "load_trace",
    "parse_mooncake",
    "parse_csv",
    "synthetic_trace",
    "trace_from_requests",
    "summarize",
    "sample_trace_path",
]

#: Tokens per prefix block in Mooncake's traces (and the unit of every block count here).
BLOCK_TOKENS = 512
MAX_REQUESTS = 2_000_000
MAX_TOKENS_PER_REQUEST = 2**24
TraceFormat = Literal["mooncake", "csv", "synthetic"]


@dataclass(frozen=True, eq=False)
class Trace:
    """Requests in arrival order (arrays, one entry per request; block ids flat with offsets).

    ``gen_ids``/``gen_offsets`` name the blocks a request's *generated* tokens complete (known only for
    synthetic traces; empty otherwise), so the timed simulator can cache them for the next turn.
    """

    name: str
    format: TraceFormat
    arrival_s: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    block_ids: np.ndarray
    block_offsets: np.ndarray
    has_reuse: bool = True
    gen_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    gen_offsets: np.ndarray | None = None
    block_tokens: int = BLOCK_TOKENS

    @property
    def n_requests(self) -> int:
        return int(self.arrival_s.shape[0])

    @property
    def n_blocks(self) -> int:
        return int(self.block_ids.shape[0])

    def blocks(self, i: int) -> np.ndarray:
        """Prompt block ids of request ``i``, leading block first."""
        return self.block_ids[self.block_offsets[i]:self.block_offsets[i + 1]]

    def generated_blocks(self, i: int) -> np.ndarray:
        if self.gen_offsets is None:
            return self.gen_ids[:0]
        return self.gen_ids[self.gen_offsets[i]:self.gen_offsets[i + 1]]

    def head(self, n: int) -> Trace:
        """The first ``n`` requests (teaching examples, quick previews)."""
        n = max(0, min(n, self.n_requests))
        end = int(self.block_offsets[n])
        gen_offsets = None if self.gen_offsets is None else self.gen_offsets[:n + 1].copy()
        gen_ids = self.gen_ids if self.gen_offsets is None else self.gen_ids[:int(self.gen_offsets[n])]
        return Trace(self.name, self.format, self.arrival_s[:n].copy(), self.input_tokens[:n].copy(),
                     self.output_tokens[:n].copy(), self.block_ids[:end].copy(), self.block_offsets[:n + 1].copy(),
                     self.has_reuse, gen_ids.copy(), gen_offsets, self.block_tokens)

    def digest(self) -> str:
        """A content hash (cache key for the dashboard)."""
        import hashlib

        h = hashlib.sha256()
        for arr in (self.arrival_s, self.input_tokens, self.output_tokens, self.block_ids, self.block_offsets,
                    self.gen_ids):
            h.update(np.ascontiguousarray(arr).tobytes())
        h.update(f"{self.format}|{self.block_tokens}|{self.has_reuse}".encode())
        return h.hexdigest()[:20]


def _blocks_needed(tokens: int, block_tokens: int = BLOCK_TOKENS) -> int:
    return -(-tokens // block_tokens)


def trace_from_requests(name: str, fmt: TraceFormat, arrival_s: list[float], input_tokens: list[int],
                        output_tokens: list[int], blocks: list[list[int]], *, has_reuse: bool = True,
                        generated: list[list[int]] | None = None) -> Trace:
    """Build a :class:`Trace` from per-request lists (already checked)."""
    offsets = np.zeros(len(blocks) + 1, np.int64)
    np.cumsum([len(b) for b in blocks], out=offsets[1:])
    flat = np.fromiter((x for b in blocks for x in b), np.int64, count=int(offsets[-1]))
    gen_ids = np.zeros(0, np.int64)
    gen_offsets = None
    if generated is not None:
        gen_offsets = np.zeros(len(generated) + 1, np.int64)
        np.cumsum([len(b) for b in generated], out=gen_offsets[1:])
        gen_ids = np.fromiter((x for b in generated for x in b), np.int64, count=int(gen_offsets[-1]))
    return Trace(name, fmt, np.asarray(arrival_s, np.float64), np.asarray(input_tokens, np.int64),
                 np.asarray(output_tokens, np.int64), flat, offsets, has_reuse, gen_ids, gen_offsets)


# ---------------------------------------------------------------------------------------------- parsing


def _whole(value: Any, source: str, line: int, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            isinstance(value, float) and not value.is_integer()):
        raise InputError(f"expected a whole number, got {value!r}", source=source, field=f"line {line}: {key}")
    if value < 0:
        raise InputError(f"must be >= 0, got {value!r}", source=source, field=f"line {line}: {key}")
    number = int(value)
    if number > MAX_TOKENS_PER_REQUEST and key != "timestamp":
        raise InputError(f"{number} is implausibly large (limit {MAX_TOKENS_PER_REQUEST})", source=source,
                         field=f"line {line}: {key}")
    return number


def parse_mooncake(text: str, *, source: str = "trace.jsonl") -> Trace:
    """Parse Mooncake's JSONL; every problem names the file, the line and the field."""
    arrival: list[float] = []
    ins: list[int] = []
    outs: list[int] = []
    blocks: list[list[int]] = []
    last_ms = -1.0
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"not valid JSON ({exc.msg} at column {exc.colno})", source=source,
                             field=f"line {line_no}") from None
        if not isinstance(row, dict):
            raise InputError(f"expected a JSON object, got {type(row).__name__}", source=source, field=f"line {line_no}")
        for key in ("timestamp", "input_length", "output_length", "hash_ids"):
            if key not in row:
                raise InputError(f"missing required field '{key}'", source=source, field=f"line {line_no}")
        ts = row["timestamp"]
        if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not math.isfinite(ts) or ts < 0:
            raise InputError(f"expected a time in ms >= 0, got {ts!r}", source=source, field=f"line {line_no}: timestamp")
        if ts < last_ms:
            raise InputError(f"not sorted by time: {ts} ms comes after {last_ms:g} ms", source=source,
                             field=f"line {line_no}: timestamp")
        last_ms = float(ts)
        n_in = _whole(row["input_length"], source, line_no, "input_length")
        n_out = _whole(row["output_length"], source, line_no, "output_length")
        ids = row["hash_ids"]
        if not isinstance(ids, list) or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in ids):
            raise InputError("expected a list of whole numbers >= 0", source=source, field=f"line {line_no}: hash_ids")
        need = _blocks_needed(n_in)
        if len(ids) != need:
            raise InputError(f"has {len(ids)} block ids but input_length {n_in} needs ceil({n_in}/{BLOCK_TOKENS}) = "
                             f"{need}", source=source, field=f"line {line_no}: hash_ids")
        arrival.append(last_ms / 1000.0)
        ins.append(n_in)
        outs.append(n_out)
        blocks.append(ids)
        if len(arrival) > MAX_REQUESTS:
            raise InputError(f"more than {MAX_REQUESTS:,} requests", source=source)
    if not arrival:
        raise InputError("no requests in the trace", source=source)
    return trace_from_requests(Path(source).name, "mooncake", arrival, ins, outs, blocks)


_CSV_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")


def _csv_time_s(value: str, source: str, line: int) -> float:
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        # Azure: "2023-11-16 18:15:46.6805900" (7 fractional digits; datetime takes at most 6)
        head, _, frac = text.partition(".")
        stamp = datetime.fromisoformat(head)
        return stamp.timestamp() + (float("0." + frac) if frac else 0.0)
    except ValueError:
        raise InputError(f"expected seconds or a date-time, got {value!r}", source=source,
                         field=f"line {line}: TIMESTAMP") from None


def parse_csv(text: str, *, source: str = "trace.csv") -> Trace:
    """Parse an Azure-style CSV. No prefix information exists in such traces: each request's blocks are its
    own, so the reuse ceiling is 0 (``has_reuse=False``)."""
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise InputError("empty file", source=source) from None
    col = {}
    for name in _CSV_COLUMNS:
        if name not in header:
            raise InputError(f"missing column '{name}' (expected {', '.join(_CSV_COLUMNS)})", source=source,
                             field="line 1")
        col[name] = header.index(name)
    arrival: list[float] = []
    ins: list[int] = []
    outs: list[int] = []
    blocks: list[list[int]] = []
    next_id = 0
    last = -math.inf
    for line_no, row in enumerate(reader, start=2):
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) < len(header):
            raise InputError(f"has {len(row)} columns, the header has {len(header)}", source=source, field=f"line {line_no}")
        t = _csv_time_s(row[col["TIMESTAMP"]], source, line_no)
        if t < last:
            raise InputError("not sorted by time", source=source, field=f"line {line_no}: TIMESTAMP")
        last = t
        values = []
        for name in ("ContextTokens", "GeneratedTokens"):
            cell = row[col[name]].strip()
            try:
                number = float(cell)
            except ValueError:
                raise InputError(f"expected a whole number, got {cell!r}", source=source,
                                 field=f"line {line_no}: {name}") from None
            values.append(_whole(number, source, line_no, name))
        n = _blocks_needed(values[0])
        arrival.append(t)
        ins.append(values[0])
        outs.append(values[1])
        blocks.append(list(range(next_id, next_id + n)))
        next_id += n
        if len(arrival) > MAX_REQUESTS:
            raise InputError(f"more than {MAX_REQUESTS:,} requests", source=source)
    if not arrival:
        raise InputError("no requests in the trace", source=source)
    start = arrival[0]
    return trace_from_requests(Path(source).name, "csv", [a - start for a in arrival], ins, outs, blocks,
                               has_reuse=False)


def load_trace(path_or_bytes: str | Path | bytes, *, source: str | None = None) -> Trace:
    """A trace from a file path or uploaded bytes; CSV when the first line has the Azure header, else JSONL."""
    if isinstance(path_or_bytes, bytes):
        data, name = path_or_bytes, source or "<upload>"
    else:
        name = source or str(path_or_bytes)
        try:
            data = Path(path_or_bytes).read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read file: {exc.strerror or exc}", source=name) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError("not a UTF-8 text file (expected Mooncake JSONL or CSV)", source=name) from None
    first = text.lstrip()[:200].splitlines()[0] if text.strip() else ""
    if name.lower().endswith(".csv") or (not first.startswith("{") and "TIMESTAMP" in first):
        return parse_csv(text, source=name)
    return parse_mooncake(text, source=name)


def sample_trace_path() -> Path:
    """The shipped Mooncake synthetic trace (Apache-2.0, licence alongside)."""
    return Path(__file__).resolve().parents[2] / "sample_models" / "traces" / "mooncake-synthetic.jsonl"


# ---------------------------------------------------------------------------------------------- generator


@dataclass(frozen=True)
class SyntheticSpec:
    """Knobs of the synthetic generator (lengths in tokens, times in seconds)."""

    requests: int = 1000
    seed: int = 0
    system_prompts: int = 4
    system_prompt_tokens: int = 3000
    shared_fraction: float = 0.8
    turns_mean: float = 3.0
    user_tokens_mean: float = 800.0
    output_tokens_mean: float = 250.0
    length_sigma: float = 0.8
    rate_per_s: float = 2.0
    arrivals: Literal["poisson", "bursty"] = "poisson"
    burst_factor: float = 8.0
    think_time_s: float = 20.0

    def checked(self) -> SyntheticSpec:
        checks = [
            ("requests", 1 <= self.requests <= MAX_REQUESTS),
            ("system_prompts", self.system_prompts >= 0),
            ("system_prompt_tokens", self.system_prompt_tokens >= 0),
            ("shared_fraction", 0 <= self.shared_fraction <= 1),
            ("turns_mean", self.turns_mean >= 1),
            ("user_tokens_mean", self.user_tokens_mean >= 1),
            ("output_tokens_mean", self.output_tokens_mean >= 1),
            ("length_sigma", 0 <= self.length_sigma <= 3),
            ("rate_per_s", self.rate_per_s > 0),
            ("burst_factor", self.burst_factor >= 1),
            ("think_time_s", self.think_time_s >= 0),
        ]
        for name, ok in checks:
            if not ok:
                raise InputError(f"out of range: {getattr(self, name)!r}", source="synthetic trace", field=name)
        if self.arrivals not in ("poisson", "bursty"):
            raise InputError(f"expected 'poisson' or 'bursty', got {self.arrivals!r}", source="synthetic trace",
                             field="arrivals")
        return self


def _lognormal(rng: np.random.Generator, mean: float, sigma: float, size: int) -> np.ndarray:
    mu = math.log(mean) - sigma * sigma / 2
    return np.maximum(1, np.rint(rng.lognormal(mu, sigma, size))).astype(np.int64)


def synthetic_trace(spec: SyntheticSpec = SyntheticSpec()) -> Trace:
    """A seeded trace with shared system prompts and multi-turn conversations.

    Conversations start as a Poisson process (``bursty``: the rate alternates between ``burst_factor``× and
    a low rate, same mean); turn ``j+1`` arrives ``think_time_s`` (exponential) after turn ``j`` and its
    prompt is the whole history plus a new message, so its leading blocks are the previous turn's prompt
    and answer. A block fully inside a shared system prompt has that prompt's id; every other full block
    belongs to its conversation; a prompt's last partial block is its own.
    """
    spec = spec.checked()
    rng = np.random.default_rng(spec.seed)
    bt = BLOCK_TOKENS
    conversations = max(1, math.ceil(1.2 * spec.requests / spec.turns_mean) + 8)
    turns = rng.geometric(1.0 / spec.turns_mean, conversations)
    while int(turns.sum()) < spec.requests:  # rare: the draw fell short; add conversations
        turns = np.concatenate([turns, rng.geometric(1.0 / spec.turns_mean, conversations)])
    conversations = int(turns.shape[0])
    gaps = rng.exponential(1.0 / spec.rate_per_s, conversations)
    if spec.arrivals == "bursty":
        # on/off: a burst phase at burst_factor×rate, a quiet phase slow enough to keep the mean rate
        phase = (np.arange(conversations) // 50) % 2 == 0
        slow = spec.burst_factor / (2 * spec.burst_factor - 1)
        gaps = np.where(phase, gaps / spec.burst_factor, gaps / slow)
    starts = np.cumsum(gaps) - gaps[0]
    sys_choice = rng.integers(0, max(1, spec.system_prompts), conversations)
    shared = rng.random(conversations) < spec.shared_fraction
    if spec.system_prompts == 0 or spec.system_prompt_tokens == 0:
        shared[:] = False
    total_turns = int(turns.sum())
    user_len = _lognormal(rng, spec.user_tokens_mean, spec.length_sigma, total_turns)
    out_len = _lognormal(rng, spec.output_tokens_mean, spec.length_sigma, total_turns)
    think = rng.exponential(max(spec.think_time_s, 1e-9), total_turns) if spec.think_time_s > 0 else np.zeros(total_turns)

    ids: dict[tuple[int, int, int], int] = {}

    def block_id(kind: int, owner: int, index: int) -> int:
        key = (kind, owner, index)
        got = ids.get(key)
        if got is None:
            got = ids[key] = len(ids)
        return got

    rows: list[tuple[float, int, int, int, list[int], list[int]]] = []  # time, conv, in, out, blocks, generated
    k = 0
    for c in range(conversations):
        sys_tokens = spec.system_prompt_tokens if shared[c] else 0
        sys_full = sys_tokens // bt
        history = sys_tokens if shared[c] else 0
        t = float(starts[c])
        for _ in range(int(turns[c])):
            n_in = history + int(user_len[k])
            n_out = int(out_len[k])
            full = n_in // bt

            def conv_block(j: int, c: int = c, sys_full: int = sys_full) -> int:
                return block_id(0, int(sys_choice[c]), j) if j < sys_full else block_id(1, c, j)

            blocks = [conv_block(j) for j in range(full)]
            if n_in % bt:
                blocks.append(block_id(2, len(rows), 0))
            gen = [conv_block(j) for j in range(full, (n_in + n_out) // bt)]
            rows.append((t, c, n_in, n_out, blocks, gen))
            history = n_in + n_out
            t += float(think[k])
            k += 1
    rows.sort(key=lambda r: (r[0], r[1]))
    rows = rows[:spec.requests]
    if min(len(rows), spec.requests) < spec.requests:  # pragma: no cover - the +1 conversation guarantees it
        raise InputError("generator produced too few requests", source="synthetic trace")
    name = f"synthetic-{spec.arrivals}-seed{spec.seed}"
    return trace_from_requests(name, "synthetic", [r[0] for r in rows], [r[2] for r in rows], [r[3] for r in rows],
                               [r[4] for r in rows], generated=[r[5] for r in rows])


# ---------------------------------------------------------------------------------------------- summary


@dataclass(frozen=True)
class TraceSummary:
    """What a trace offers a prefix cache, before any policy: the reuse ceiling is the hit rate of an
    unlimited cache (a block hits when every block before it in the prompt was seen earlier)."""

    requests: int
    blocks_total: int
    blocks_distinct: int
    duration_s: float
    input_tokens_mean: float
    output_tokens_mean: float
    reuse_ceiling: float
    has_reuse: bool
    format: str
    note: str

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def summarize(trace: Trace) -> TraceSummary:
    """Counts and the reuse ceiling (computed with an unlimited cache)."""
    from core.serve.capacity import run_capacity

    unlimited = run_capacity(trace, "lru", None)
    note = ("CSV traces carry no prefix information: every request's blocks are its own, so no prefix can hit."
            if not trace.has_reuse else "")
    return TraceSummary(
        requests=trace.n_requests,
        blocks_total=trace.n_blocks,
        blocks_distinct=int(np.unique(trace.block_ids).shape[0]),
        duration_s=float(trace.arrival_s[-1] - trace.arrival_s[0]) if trace.n_requests else 0.0,
        input_tokens_mean=float(trace.input_tokens.mean()) if trace.n_requests else 0.0,
        output_tokens_mean=float(trace.output_tokens.mean()) if trace.n_requests else 0.0,
        reuse_ceiling=unlimited.prefix_hit_rate,
        has_reuse=trace.has_reuse,
        format=trace.format,
        note=note,
    )
