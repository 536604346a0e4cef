"""``python -m core …``: generate graphs from HF configs, import ONNX, summarise graphs.

Each subcommand is one ``register_*`` function that adds its parser and sets ``run``; add a command by
appending its register function to :data:`COMMANDS`. Exit codes: 0 ok, 2 bad input (one line on stderr
naming file, field and problem; never a traceback), 3 infeasible.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from core.errors import InfeasibleError, InputError
from core.graph import Graph, graph_to_dict

__all__ = ["COMMANDS", "build_parser", "main", "read_input", "write_output", "load_graph_arg"]

EXIT_OK, EXIT_INPUT, EXIT_INFEASIBLE = 0, 2, 3


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (exit 2) instead of usage + message."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_INPUT, f"{self.prog}: error: {message} (see --help)\n")


# ---------------------------------------------------------------------------------------------- helpers


def read_input(path: str) -> bytes:
    """The bytes of ``path`` (``-`` for stdin), or InputError naming the file."""
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except IsADirectoryError:
        raise InputError("is a directory, not a file", source=path) from None
    except OSError as exc:
        raise InputError(f"cannot read file: {exc.strerror or exc}", source=path) from None


def write_output(path: str, text: str) -> None:
    """Write ``text`` to ``path`` (``-`` for stdout), or InputError naming the file."""
    if path == "-":
        sys.stdout.write(text)
        return
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot write file: {exc.strerror or exc}", source=path) from None


def _graph_json(graph: Graph) -> str:
    return json.dumps(graph_to_dict(graph), separators=(",", ":")) + "\n"


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _add_workload_args(p: argparse.ArgumentParser, *, required: bool) -> None:
    p.add_argument("--workload", choices=("train", "prefill", "decode"), required=required, default=None if required else "train",
                   help="training step, inference prefill, or one decode step")
    p.add_argument("--batch", type=_positive, default=None, help="sequences per step (default 1; ONNX: the model's)")
    p.add_argument("--seq", type=_positive, default=2048, help="tokens per sequence; for decode the context length")
    p.add_argument("--checkpointing", action="store_true", help="training: recompute each layer in the backward")


def load_graph_arg(path: str, args: argparse.Namespace | None = None) -> Graph:
    """A graph from a file of any supported format, or the key of a bundled sample.

    HF configs use ``--workload/--batch/--seq/--checkpointing`` when ``args`` has them; ONNX uses
    ``--batch`` and ``--train``.
    """
    from core.sources import Workload, load_model_bytes

    if not Path(path).exists() and path != "-":
        from core.sources.samples import list_samples, load_sample

        if path in {s.key for s in list_samples()}:
            return load_sample(path)
    data = read_input(path)
    workload = None
    if args is not None and getattr(args, "workload", None):
        workload = Workload(args.workload, args.batch or 1, args.seq, bool(getattr(args, "checkpointing", False)))
    batch = getattr(args, "batch", None) if args is not None else None
    return load_model_bytes(data, path, workload=workload, onnx_batch=batch,
                            onnx_train=bool(getattr(args, "train", False)))


# ---------------------------------------------------------------------------------------------- commands


def register_generate(sub: Any) -> None:
    p = sub.add_parser("generate", help="graph of a Hugging Face config.json for a workload",
                       description="Build the graph of one train / prefill / decode step from an HF config.json.")
    p.add_argument("--hf-config", required=True, metavar="CONFIG.json", help="the model's config.json")
    _add_workload_args(p, required=True)
    p.add_argument("--name", help="graph name (default from the config)")
    p.add_argument("-o", "--output", required=True, metavar="GRAPH.json", help="where to write the graph ('-' = stdout)")
    p.set_defaults(run=run_generate)


def run_generate(args: argparse.Namespace) -> int:
    from core.graph import parse_json
    from core.sources import Workload
    from core.sources.hf_config import graph_from_hf_config

    raw = parse_json(read_input(args.hf_config), args.hf_config)
    workload = Workload(args.workload, args.batch or 1, args.seq, args.checkpointing)
    graph = graph_from_hf_config(raw, workload, name=args.name, source=args.hf_config)
    write_output(args.output, _graph_json(graph))
    if args.output != "-":
        _report(graph, args.output)
    return EXIT_OK


def register_import_onnx(sub: Any) -> None:
    p = sub.add_parser("import-onnx", help="graph of an ONNX model",
                       description="Import an ONNX model (weights need not be present); optionally as a training step.")
    p.add_argument("model", metavar="MODEL.onnx")
    p.add_argument("--batch", type=_positive, default=None, help="override the batch size")
    p.add_argument("--train", action="store_true", help="add a loss, the backward pass and an Adam update")
    p.add_argument("-o", "--output", required=True, metavar="GRAPH.json", help="where to write the graph ('-' = stdout)")
    p.set_defaults(run=run_import_onnx)


def run_import_onnx(args: argparse.Namespace) -> int:
    from core.sources.onnx_import import import_onnx

    graph = import_onnx(read_input(args.model), batch=args.batch, train=args.train, source=args.model)
    write_output(args.output, _graph_json(graph))
    if args.output != "-":
        _report(graph, args.output)
        for warning in graph.meta.get("warnings", []):
            print(f"warning: {warning}", file=sys.stderr)
    return EXIT_OK


def register_info(sub: Any) -> None:
    p = sub.add_parser("info", help="parameters, bytes by kind, op count and no-offload peak of a graph",
                       description="Summarise a graph file (native, ONNX or HF config) or a bundled sample key.")
    p.add_argument("graph", metavar="GRAPH", help="a graph / ONNX / config.json file, or a sample key such as 'tiny'")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    _add_workload_args(p, required=False)
    p.add_argument("--train", action="store_true", help="ONNX input: summarise the training step")
    p.set_defaults(run=run_info)


def run_info(args: argparse.Namespace) -> int:
    from core.info import format_summary, graph_summary

    summary = graph_summary(load_graph_arg(args.graph, args))
    if args.json:
        print(json.dumps(summary.to_dict(), indent=1))
    else:
        print(format_summary(summary))
    return EXIT_OK


def _report(graph: Graph, path: str) -> None:
    from core.units import format_bytes

    total = sum(t.bytes for t in graph.tensors)
    print(f"wrote {path}: {len(graph.ops)} ops, {len(graph.tensors)} tensors, {format_bytes(total)}", file=sys.stderr)


#: Register functions, one per subcommand; the integrator appends plan / validate / trace / sweep here.
def register_fuzz(sub: Any) -> None:
    """``fuzz``: random cases, every policy, the validator on every plan (see core/fuzz.py)."""
    p = sub.add_parser("fuzz", help="plan random graphs with every policy and validate every plan",
                       description="Plan random graphs and hierarchies with every policy, replay each plan with "
                       "the validator, print the seed of every failure and write its files to --out. Exit 1 on "
                       "any invalid plan or crash.")
    p.add_argument("--seconds", type=float, default=60.0, help="how long to run (default 60)")
    p.add_argument("--seed", type=int, default=0, help="seed of the case seeds (default 0)")
    p.add_argument("--policy", action="append", metavar="P", help="a policy to run (repeatable; default: all)")
    p.add_argument("--max-cases", type=_positive, default=None, help="stop after this many cases")
    p.add_argument("--out", required=True, metavar="DIR", help="where failing graphs, hardware and plans go")
    p.set_defaults(run=run_fuzz_command)


def run_fuzz_command(args: argparse.Namespace) -> int:
    from core.fuzz import all_policies, format_summary, run_fuzz

    known = all_policies()
    for policy in args.policy or []:
        if policy not in known:
            raise InputError(f"unknown policy '{policy}' (known: {', '.join(known)})", field="--policy")
    summary = run_fuzz(seconds=args.seconds, seed=args.seed, out=args.out, policies=args.policy,
                       max_cases=args.max_cases, log=sys.stdout)
    print(format_summary(summary))
    return EXIT_OK if summary.ok else 1


COMMANDS: list[Callable[[Any], None]] = [register_generate, register_import_onnx, register_info, register_fuzz]


def _planning_commands() -> list[Callable[[Any], None]]:
    from core.commands import register_plan, register_sweep, register_trace, register_validate

    return [register_plan, register_validate, register_trace, register_sweep]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m core", description="Tierplan: plan tensor placement across memory tiers.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    for register in COMMANDS + _planning_commands():
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; errors a user can cause become one line on stderr and exit code 2 (or 3)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except InputError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_INPUT
    except InfeasibleError as exc:
        print(f"infeasible: {exc}", file=sys.stderr)
        return EXIT_INFEASIBLE
    except BrokenPipeError:
        return EXIT_OK
