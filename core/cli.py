"""``python -m core …``: the parser and the exit codes; the subcommands live in :mod:`core.commands`.

Each subcommand is one ``register_*`` function that adds its parser and sets ``run``; add a command by
appending its register function to :data:`COMMANDS`. Exit codes: 0 ok, 2 bad input (one line on stderr
naming file, field and problem; never a traceback), 3 infeasible (with the reason), 4 internal error (the
planner's own replay rejected the plan it built: a bug to report; no plan file is written).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from core.commands import COMMANDS as _BUILTIN
from core.commands import (
    EXIT_BUG,
    EXIT_INFEASIBLE,
    EXIT_INPUT,
    EXIT_OK,
    load_graph_arg,
    load_hardware_arg,
    read_input,
    whole_number,
    write_output,
)
from core.errors import InfeasibleError, InputError, PlanBugError

# the helpers are re-exported: subcommands added to this module use them
__all__ = ["COMMANDS", "EXIT_OK", "EXIT_INPUT", "EXIT_INFEASIBLE", "EXIT_BUG", "build_parser", "main",
           "read_input", "write_output", "load_graph_arg", "load_hardware_arg"]

EPILOG = ("exit codes: 0 ok, 2 bad input, 3 infeasible, 4 internal error (the planner's replay rejected its own "
          "plan; nothing is written)")


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (exit 2) instead of usage + message."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_INPUT, f"{self.prog}: error: {message} (see --help)\n")


def register_serve(sub: Any) -> None:
    """``serve``: prefix KV cache across requests (see :mod:`core.serve.command`)."""
    from core.serve.command import register

    register(sub)


#: Register functions, one per subcommand; append a command's register function here.
COMMANDS: list[Callable[[Any], None]] = [*_BUILTIN, register_serve]


# ------------------------------------------------------------------------------------- fuzz (issue #9)


def register_fuzz(sub: Any) -> None:
    """``fuzz``: random cases, every policy, the validator on every plan (see core/fuzz.py)."""
    p = sub.add_parser("fuzz", help="plan random graphs with every policy and validate every plan",
                       description="Plan random graphs and hierarchies with every policy, replay each plan with "
                       "the validator, print the seed of every failure and write its files to --out. Exit 1 on "
                       "any invalid plan or crash.")
    p.add_argument("--seconds", type=float, default=60.0, help="how long to run (default 60)")
    p.add_argument("--seed", type=int, default=0, help="seed of the case seeds (default 0)")
    p.add_argument("--policy", action="append", metavar="P", help="a policy to run (repeatable; default: all)")
    p.add_argument("--max-cases", type=whole_number(1), default=None, help="stop after this many cases")
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


COMMANDS.append(register_fuzz)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m core", description="Tierplan: plan tensor placement across memory tiers.",
                     epilog=EPILOG)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    for register in COMMANDS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; errors a user can cause become one line on stderr and exit code 2 (or 3); a plan
    the planner's own replay rejects is exit code 4."""
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
    except PlanBugError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BUG
    except BrokenPipeError:
        return EXIT_OK
