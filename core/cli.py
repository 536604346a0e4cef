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
