"""`heaptrail report` without argparse, and with its engine started first.

argparse (with gettext, locale and the parser's construction: ~5 ms of CPU)
and the report's modules take about as long as the engine on a small trace,
and nothing they do changes what the engine is asked. So a command line
plain enough to be sure of (exact option names, no bundled short options,
the inputs in one run) is read here, the engine started on it, and the
report run with what argparse would have made of it (tests/cli compares the
two). Anything else (help, errors, unusual spellings) goes to argparse as
before, with no engine started early.

The launcher calls start_now() before importing the rest of heaptrail, so
this module imports only spawn and the built-in posix module (os and
`from __future__` would cost the engine's start about 1 ms; annotations
are strings).
"""

import posix

TYPE_CHECKING = False  # typing costs start-up and annotations are never evaluated
if TYPE_CHECKING:
    from typing import Mapping, Optional, Sequence

from . import spawn

FORMATS = ("auto", "host", "valground", "board-text", "mtrace", "board")  # htr-engine --format
REPORT_FORMATS = ("text", "json", "junit", "sarif")
COLORS = ("auto", "always", "never")

# report's options (report_cmd.register): attribute, and "value", "append"
# (repeatable) or "flag".
OPTIONS = {
    "--input-format": ("input_format", "value"),
    "--format": ("format", "value"),
    "-o": ("output", "value"),
    "--output": ("output", "value"),
    "-q": ("quiet", "flag"),
    "--quiet": ("quiet", "flag"),
    "--fail-on": ("fail_on", "value"),
    "--suppressions": ("suppressions", "append"),
    "--no-default-suppressions": ("no_default_suppressions", "flag"),
    "--baseline": ("baseline", "value"),
    "--write-baseline": ("write_baseline", "value"),
    "--color": ("color", "value"),
    "--sysroot": ("sysroot", "value"),
    "--debug-dir": ("debug_dir", "append"),
    "--elf": ("elf", "value"),
    "--no-symbols": ("no_symbols", "flag"),
}
CHOICES = {"input_format": FORMATS, "format": REPORT_FORMATS, "color": COLORS}


class Args:
    """The argparse.Namespace of `heaptrail report`, as parse() reads it."""

    def __init__(self, values: "dict[str, object]") -> None:
        self.__dict__.update(values)


def parse(args: "Sequence[str]") -> "Optional[Args]":
    """What argparse makes of `heaptrail report ARGS`, but for fail_on (None
    when not given: complete() fills in the default) and func; None when ARGS
    hold anything this reading is not sure of."""
    inputs: "list[str]" = []
    values: "dict[str, object]" = {
        "command": "report", "inputs": inputs, "input_format": "auto", "format": "text", "output": None,
        "quiet": False, "fail_on": None, "suppressions": [], "no_default_suppressions": False, "baseline": None,
        "write_baseline": None, "color": "auto", "sysroot": "", "debug_dir": [], "elf": None, "no_symbols": False,
    }
    after_inputs = False  # argparse takes the inputs as one run
    i = 0
    while i < len(args):
        word = args[i]
        i += 1
        if word == "--":
            if inputs or i == len(args):
                return None
            inputs.extend(args[i:])
            break
        if not word.startswith("-") or word == "-":
            if after_inputs:
                return None
            inputs.append(word)
            continue
        after_inputs = bool(inputs)
        name, eq, value = word.partition("=")
        option = OPTIONS.get(name)
        if option is None or eq and (option[1] == "flag" or not name.startswith("--")):
            return None  # help, an abbreviation, bundled or attached short options
        dest, kind = option
        if kind == "flag":
            values[dest] = True
            continue
        if not eq:
            # A value that looks like an option is argparse's call.
            if i == len(args) or args[i].startswith("-") and args[i] != "-":
                return None
            value = args[i]
            i += 1
        if dest in CHOICES and value not in CHOICES[dest]:
            return None
        if kind == "append":
            values[dest].append(value)  # type: ignore[attr-defined]
        else:
            values[dest] = value
    if not inputs:
        return None
    return Args(values)


def _is_file(path: str) -> bool:
    """os.path.isfile, without os."""
    try:
        return posix.stat(path).st_mode & 0o170000 == 0o100000
    except (OSError, ValueError):
        return False


def start(args: Args, engine_path: str, env: "Optional[Mapping[str, str]]" = None) -> None:
    """Starts the engine for parse()'s args when its inputs are readable
    files; run_engine's own checks name a bad input, so those are left to
    it, with no engine started. env: the engine's environment (None: the
    one the process started with; os.environ once os may have changed it)."""
    if not engine_path or not _is_file(engine_path):
        return
    inputs: "list[str]" = args.inputs  # type: ignore[attr-defined]
    for path in inputs:
        if not _is_file(path) or not posix.access(path, posix.R_OK):
            return
    spawn.start_early(engine_path, inputs, args.input_format,  # type: ignore[attr-defined]
                      posix.environ if env is None else env)  # type: ignore[arg-type]


def start_now(argv: "Sequence[str]", engine_path: str) -> None:
    """The launcher's first step for `heaptrail report ARGV`: the engine
    started when ARGV is plain (parse), before the rest of heaptrail is
    imported. cli.main reads ARGV again and keeps this engine. An engine
    that the `heaptrail` command started for the same line is kept too."""
    spawn.adopt_early()
    args = parse(argv)
    if args is not None:
        start(args, engine_path)


def complete(args: Args) -> Args:
    """parse()'s args as argparse would give them to report_cmd.run."""
    from . import report_cmd

    if args.fail_on is None:  # type: ignore[attr-defined]
        args.fail_on = report_cmd.DEFAULT_FAIL_ON_TEXT  # type: ignore[attr-defined]
    args.func = report_cmd.run  # type: ignore[attr-defined]
    return args
