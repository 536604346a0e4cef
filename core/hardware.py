"""The memory hierarchy: tiers with capacities, directed links with bandwidth and latency, and compute.

Every figure may carry a ``source`` (where the number was published), kept through load and save so a
preset file documents itself. Op time comes from a roofline on the compute that runs it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from core.errors import InputError
from core.graph import Op, load_json
from core.units import parse_bandwidth, parse_bytes, parse_flops, parse_time

__all__ = [
    "HARDWARE_FORMAT",
    "Compute",
    "Tier",
    "Link",
    "Hardware",
    "load_hardware",
    "hardware_from_dict",
    "hardware_to_dict",
    "save_hardware",
    "apply_setting",
    "op_time_s",
    "roofline_s",
    "speed_ratio",
    "with_capacity",
]

HARDWARE_FORMAT = "tierplan-hardware/1"
MAX_CAPACITY_BYTES = 2**60


@dataclass(frozen=True)
class Compute:
    """A roofline: ``time = max(flops / (peak·efficiency), bytes / (memory_bw·memory_efficiency))``."""

    peak_flops: float
    efficiency: float = 0.6
    memory_bandwidth_Bps: float = 0.0
    memory_efficiency: float = 0.8
    source: str = ""


@dataclass(frozen=True)
class Tier:
    """A memory level. ``compute`` is set when the tier has processors of its own (host CPUs)."""

    name: str
    capacity_bytes: int
    compute: Compute | None = None
    source: str = ""


@dataclass(frozen=True)
class Link:
    """One direction of a connection: a stream of its own, so copies on it never overlap."""

    src: str
    dst: str
    bandwidth_Bps: float
    latency_s: float = 0.0
    source: str = ""

    @property
    def name(self) -> str:
        return f"{self.src}->{self.dst}"

    def transfer_time_s(self, nbytes: int) -> float:
        return self.latency_s + nbytes / self.bandwidth_Bps


@dataclass(frozen=True)
class Hardware:
    """Tiers, links and the compute that runs ops; ``compute_tier`` is where op inputs must be."""

    name: str
    compute: Compute
    tiers: tuple[Tier, ...]
    links: tuple[Link, ...]
    compute_tier: str
    description: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @cached_property
    def tier_by_name(self) -> dict[str, Tier]:
        return {t.name: t for t in self.tiers}

    @cached_property
    def link_by_pair(self) -> dict[tuple[str, str], Link]:
        return {(link.src, link.dst): link for link in self.links}

    def capacity(self, tier: str) -> int:
        return self.tier_by_name[tier].capacity_bytes

    @cached_property
    def _routes(self) -> dict[tuple[str, str], tuple[Link, ...]]:
        """Fastest path for a large copy between every pair: max bottleneck bandwidth, then fewest hops."""
        routes: dict[tuple[str, str], tuple[Link, ...]] = {}
        for src in self.tier_by_name:
            best: dict[str, tuple[float, int, tuple[Link, ...]]] = {src: (float("inf"), 0, ())}
            queue = deque([src])
            while queue:
                here = queue.popleft()
                bw, hops, path = best[here]
                for link in self.links:
                    if link.src != here:
                        continue
                    cand = (min(bw, link.bandwidth_Bps), hops + 1, (*path, link))
                    old = best.get(link.dst)
                    if old is None or (cand[0], -cand[1]) > (old[0], -old[1]):
                        best[link.dst] = cand
                        queue.append(link.dst)
            for dst, (_, _, path) in best.items():
                if dst != src:
                    routes[(src, dst)] = path
        return routes

    def route(self, src: str, dst: str) -> tuple[Link, ...]:
        """Links a copy from ``src`` to ``dst`` takes (SSD -> DDR -> HBM when there is no direct link)."""
        try:
            return self._routes[(src, dst)]
        except KeyError:
            raise InputError(f"no path of links from tier '{src}' to tier '{dst}'", field="links") from None

    def has_route(self, src: str, dst: str) -> bool:
        return (src, dst) in self._routes

    def route_time_s(self, src: str, dst: str, nbytes: int) -> float:
        """Time of a store-and-forward copy along the route (hops one after the other)."""
        return sum(link.transfer_time_s(nbytes) for link in self.route(src, dst))

    @cached_property
    def offload_tiers(self) -> tuple[str, ...]:
        """Tiers other than the compute tier, fastest route first (the natural spill order)."""
        others = [t.name for t in self.tiers if t.name != self.compute_tier]
        return tuple(sorted(others, key=lambda n: self.route_time_s(n, self.compute_tier, 2**30)))


# ---------------------------------------------------------------------------------------------- loading


def _number(raw: Mapping[str, Any], key: str, where: str, parser: Any, *, default: Any = None) -> float:
    if key not in raw:
        if default is None:
            raise InputError(f"missing required field '{key}'", field=where)
        return float(default)
    value = raw[key]
    try:
        return float(parser(value))
    except (ValueError, TypeError) as exc:
        raise InputError(str(exc), field=f"{where}.{key}") from None


def _fraction(raw: Mapping[str, Any], key: str, where: str, default: float) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise InputError(f"must be a number in (0, 1], got {value!r}", field=f"{where}.{key}")
    return float(value)


def _compute_from_dict(raw: Any, where: str) -> Compute:
    if not isinstance(raw, dict):
        raise InputError("expected an object", field=where)
    peak = _number(raw, "peak_flops", where, parse_flops)
    if peak <= 0:
        raise InputError("must be > 0", field=f"{where}.peak_flops")
    return Compute(
        peak_flops=peak,
        efficiency=_fraction(raw, "efficiency", where, 0.6),
        memory_bandwidth_Bps=_number(raw, "memory_bandwidth_Bps", where, parse_bandwidth, default=0),
        memory_efficiency=_fraction(raw, "memory_efficiency", where, 0.8),
        source=str(raw.get("source", "")),
    )


def hardware_from_dict(raw: Any, *, source: str | None = None) -> Hardware:
    """Build and validate :class:`Hardware`; every tier must be reachable from and to the compute tier."""
    try:
        hw = _hardware_from_dict(raw)
    except InputError as exc:
        raise (exc.with_source(source) if source else exc) from None
    return hw


def _hardware_from_dict(raw: Any) -> Hardware:
    if not isinstance(raw, dict):
        raise InputError(f"expected a JSON object at the top level, got {type(raw).__name__}")
    if raw.get("format") != HARDWARE_FORMAT:
        raise InputError(f"expected format '{HARDWARE_FORMAT}', got {raw.get('format')!r}", field="format")
    name = raw.get("name", "hardware")
    if not isinstance(name, str):
        raise InputError("expected a string", field="name")
    compute = _compute_from_dict(raw.get("compute"), "compute")
    tiers_raw = raw.get("tiers")
    if not isinstance(tiers_raw, list) or not tiers_raw:
        raise InputError("expected a non-empty list of tiers", field="tiers")
    tiers: list[Tier] = []
    for k, t in enumerate(tiers_raw):
        where = f"tiers[{k}]"
        if not isinstance(t, dict):
            raise InputError("expected an object", field=where)
        tname = t.get("name")
        if not isinstance(tname, str) or not tname:
            raise InputError("expected a non-empty string", field=f"{where}.name")
        if any(other.name == tname for other in tiers):
            raise InputError(f"duplicate tier name '{tname}'", field=f"{where}.name")
        cap = int(_number(t, "capacity_bytes", where, parse_bytes))
        if cap > MAX_CAPACITY_BYTES:
            raise InputError(f"capacity {cap:.3g} bytes is implausible; check the units", field=f"{where}.capacity_bytes")
        tcompute = _compute_from_dict(t["compute"], f"{where}.compute") if t.get("compute") else None
        tiers.append(Tier(tname, cap, tcompute, str(t.get("source", ""))))
    names = {t.name for t in tiers}
    compute_tier = raw.get("compute_tier", tiers[0].name)
    if not isinstance(compute_tier, str) or compute_tier not in names:
        raise InputError(f"compute tier {compute_tier!r} is not one of the tiers ({', '.join(sorted(names))})", field="compute_tier")
    links_raw = raw.get("links", [])
    if not isinstance(links_raw, list):
        raise InputError("expected a list", field="links")
    links: list[Link] = []
    for k, link in enumerate(links_raw):
        where = f"links[{k}]"
        if not isinstance(link, dict):
            raise InputError("expected an object", field=where)
        src, dst = link.get("src"), link.get("dst")
        for key, value in (("src", src), ("dst", dst)):
            if not isinstance(value, str) or value not in names:
                raise InputError(f"unknown tier {value!r}", field=f"{where}.{key}")
        where = f"links[{k}] ({src}->{dst})"  # name the link, not only its position
        if src == dst:
            raise InputError("a link must join two different tiers", field=where)
        if any((other.src, other.dst) == (src, dst) for other in links):
            raise InputError(f"duplicate link {src}->{dst}", field=where)
        bw = _number(link, "bandwidth_Bps", where, parse_bandwidth)
        if bw <= 0:
            raise InputError("must be > 0", field=f"{where}.bandwidth_Bps")
        lat = _number(link, "latency_s", where, parse_time, default=0)
        links.append(Link(str(src), str(dst), bw, lat, str(link.get("source", ""))))
    hw = Hardware(
        name=name,
        compute=compute,
        tiers=tuple(tiers),
        links=tuple(links),
        compute_tier=compute_tier,
        description=str(raw.get("description", "")),
        meta=raw.get("meta", {}) if isinstance(raw.get("meta", {}), dict) else {},
    )
    for k, tier in enumerate(tiers):
        if tier.name == compute_tier:
            continue
        if not hw.has_route(tier.name, compute_tier):
            raise InputError(f"tier '{tier.name}' has no path of links to the compute tier '{compute_tier}'", field=f"tiers[{k}]")
        if not hw.has_route(compute_tier, tier.name):
            raise InputError(f"tier '{tier.name}' has no path of links from the compute tier '{compute_tier}'", field=f"tiers[{k}]")
    return hw


def load_hardware(path_or_bytes: str | Path | bytes, *, source: str | None = None) -> Hardware:
    """Load a ``tierplan-hardware/1`` JSON file (a path, or raw bytes from an upload)."""
    raw, source = load_json(path_or_bytes, source)
    return hardware_from_dict(raw, source=source)


def _compute_to_dict(c: Compute) -> dict[str, Any]:
    out: dict[str, Any] = {
        "peak_flops": c.peak_flops,
        "efficiency": c.efficiency,
        "memory_bandwidth_Bps": c.memory_bandwidth_Bps,
        "memory_efficiency": c.memory_efficiency,
    }
    if c.source:
        out["source"] = c.source
    return out


def hardware_to_dict(hw: Hardware) -> dict[str, Any]:
    """The native JSON form (base units), sources kept."""
    tiers = []
    for t in hw.tiers:
        item: dict[str, Any] = {"name": t.name, "capacity_bytes": t.capacity_bytes}
        if t.compute:
            item["compute"] = _compute_to_dict(t.compute)
        if t.source:
            item["source"] = t.source
        tiers.append(item)
    links = []
    for link in hw.links:
        item = {"src": link.src, "dst": link.dst, "bandwidth_Bps": link.bandwidth_Bps, "latency_s": link.latency_s}
        if link.source:
            item["source"] = link.source
        links.append(item)
    out: dict[str, Any] = {"format": HARDWARE_FORMAT, "name": hw.name}
    if hw.description:
        out["description"] = hw.description
    out.update({"compute": _compute_to_dict(hw.compute), "compute_tier": hw.compute_tier, "tiers": tiers, "links": links})
    if hw.meta:
        out["meta"] = dict(hw.meta)
    return out


def save_hardware(hw: Hardware, path: str | Path) -> None:
    import json

    Path(path).write_text(json.dumps(hardware_to_dict(hw), indent=2) + "\n", encoding="utf-8")


def apply_setting(hw: Hardware, key: str, value: str | float) -> Hardware:
    """One ``--set`` override: ``HBM.capacity=24GiB``, ``HBM->DDR.bandwidth=32GB/s``,
    ``DDR->HBM.latency=5us``, ``compute.peak_flops=300TFLOPS``, ``compute.efficiency=0.5``.

    Goes through the same validation as a file, so a bad override gets the same clear message.
    """
    raw = hardware_to_dict(hw)
    target, _, attr = key.rpartition(".")
    aliases = {"capacity": "capacity_bytes", "bandwidth": "bandwidth_Bps", "latency": "latency_s"}
    attr = aliases.get(attr, attr)
    if target == "compute":
        raw["compute"][attr] = value
    elif "->" in target:
        src, _, dst = target.partition("->")
        matches = [link for link in raw["links"] if (link["src"], link["dst"]) == (src, dst)]
        if not matches:
            raise InputError(f"no link {target} in hardware '{hw.name}'", field=key)
        matches[0][attr] = value
    else:
        matches = [tier for tier in raw["tiers"] if tier["name"] == target]
        if not matches:
            raise InputError(f"no tier '{target}' in hardware '{hw.name}'", field=key)
        matches[0][attr] = value
    return hardware_from_dict(raw, source="--set")


def roofline_s(op: Op, compute: Compute) -> float:
    """The roofline time of ``op``'s ``flops`` and ``bytes_accessed`` on ``compute`` (ignores ``time_s``)."""
    t_flops = op.flops / (compute.peak_flops * compute.efficiency)
    if compute.memory_bandwidth_Bps > 0:
        t_mem = op.bytes_accessed / (compute.memory_bandwidth_Bps * compute.memory_efficiency)
    else:
        t_mem = 0.0
    return max(t_flops, t_mem)


def speed_ratio(device: Compute, other: Compute) -> float:
    """How many times slower ``other`` is than ``device`` for work of unknown mix: the larger of the
    effective-flops ratio and (when both give a memory bandwidth) the effective-bandwidth ratio."""
    ratio = (device.peak_flops * device.efficiency) / (other.peak_flops * other.efficiency)
    if device.memory_bandwidth_Bps > 0 and other.memory_bandwidth_Bps > 0:
        ratio = max(ratio, (device.memory_bandwidth_Bps * device.memory_efficiency)
                    / (other.memory_bandwidth_Bps * other.memory_efficiency))
    return ratio


def op_time_s(op: Op, compute: Compute, device: Compute | None = None) -> float:
    """Modelled duration of ``op`` on ``compute``.

    Without ``time_s`` it is the roofline on ``compute``. A fixed ``time_s`` is the op's time on the
    device (``device``, the hardware's main compute; ``None`` = ``compute`` is the device). On another
    compute (host CPUs) it is ``time_s ×`` :func:`speed_ratio` ``(device, compute)``: the larger of the
    effective-flops and effective-bandwidth ratios (docs/formats.md, "Op time on a compute"). That is never
    less than the ratio of the op's own rooflines, so the host is never modelled faster than it can be.
    """
    if op.time_s is None:
        return roofline_s(op, compute)
    if device is None or device == compute:
        return op.time_s
    return op.time_s * speed_ratio(device, compute)


def with_capacity(hw: Hardware, tier: str, capacity_bytes: int) -> Hardware:
    """A copy of ``hw`` with one tier resized (used by sweeps and sliders)."""
    return replace(hw, tiers=tuple(replace(t, capacity_bytes=capacity_bytes) if t.name == tier else t for t in hw.tiers))
