"""`heaptrail report` starts its engine before the parser exists.

The parser (argparse) and the report's modules take about as long to import
as the engine takes on a small trace, and nothing they do changes what the
engine is asked: the inputs and --input-format. So the command line is read
here first, in a form simple enough to be sure of (exact option names, no
bundled short options), and the engine started; on a two-core machine the
imports then cost no time. argparse still reads the command line as it
always did, and run_engine uses the early engine only when it was given
exactly the command that argparse's reading asks for; any other engine is
killed unread.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing costs start-up and annotations are never evaluated
if TYPE_CHECKING:
    from typing import Optional, Sequence

from . import engine

# report's options (report_cmd.register) by how many words they take;
# tests/cli checks the two against each other.
VALUED = frozenset(("--input-format", "--format", "-o", "--output", "--fail-on", "--suppressions", "--baseline",
                    "--write-baseline", "--color", "--sysroot", "--debug-dir", "--elf"))
FLAGS = frozenset(("-q", "--quiet", "--no-default-suppressions", "--no-symbols"))


def guess(args: Sequence[str]) -> Optional[tuple[list[str], str]]:
    """(inputs, input format) of `heaptrail report ARGS`, or None when ARGS
    hold anything this reading is not sure of (it then leaves the command
    line to argparse alone)."""
    inputs: list[str] = []
    fmt = "auto"
    i = 0
    while i < len(args):
        word = args[i]
        i += 1
        if word == "--":
            inputs.extend(args[i:])
            break
        if not word.startswith("-") or word == "-":
            inputs.append(word)
            continue
        name, eq, value = word.partition("=")
        if name in FLAGS and not eq:
            continue
        if name not in VALUED or name == "-o" and eq:
            return None  # help, an abbreviation, bundled flags: argparse knows
        if not eq:
            if i >= len(args):
                return None
            value = args[i]
            i += 1
        if name == "--input-format":
            fmt = value
    if not inputs or fmt not in engine.FORMATS:
        return None
    for path in inputs:
        # run_engine's own checks name a bad input; leave those to it.
        if not os.path.isfile(path) or not os.access(path, os.R_OK):
            return None
    return inputs, fmt


def start(args: Sequence[str], engine_path: str) -> None:
    """Starts the engine for `heaptrail report ARGS` if ARGS are clear."""
    if not engine_path or not os.path.exists(engine_path):
        return
    found = guess(args)
    if found is not None:
        engine.start_early(engine_path, found[0], found[1])
