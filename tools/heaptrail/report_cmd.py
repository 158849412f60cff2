"""`heaptrail report`: analyse traces and logs, print findings, gate CI.

Exit status: 0 clean, 1 findings of a --fail-on kind, 2 bad usage or
unreadable input."""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing costs start-up and annotations are never evaluated
if TYPE_CHECKING:
    import argparse
    from typing import Any, Optional

from . import suppress
from .engine import run_engine
from .errors import UsageError
from .model import DEFAULT_FAIL_ON, KINDS, Report, build_report, parse_fail_on
from .report_early import COLORS, FORMATS, REPORT_FORMATS
from .symbols import Symbolizer

# The baseline and the renderers are imported where used: each run needs
# one renderer, and start-up is part of every CI step's cost. argparse too:
# a plain command line is read by report_early.

DEFAULT_FAIL_ON_TEXT = ",".join(DEFAULT_FAIL_ON)


def add_symbol_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("symbols")
    group.add_argument("--sysroot", default="", help="prefix for module paths (trace made on another machine)")
    group.add_argument("--debug-dir", action="append", default=[], metavar="DIR",
                       help="where separate debug info lives (DIR/.build-id/xx/rest.debug); repeatable")
    group.add_argument("--elf", metavar="FW.elf", help="firmware ELF for board logs (and mtrace callers)")
    group.add_argument("--no-symbols", action="store_true", help="do not run addr2line")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "report",
        help="analyse traces or logs and report leaks, free errors and peak",
        description="Analyse host traces, board logs, valground ==MP logs or glibc mtrace logs. "
        "Exit status: 0 clean, 1 findings (see --fail-on), 2 bad usage or unreadable input. "
        "An input with no heap events is reported on stderr; --fail-on empty makes it fail the run.",
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="trace files (a parent and its children together) or logs")
    parser.add_argument("--input-format", default="auto", choices=FORMATS,
                        help="input format (default: detected from the content)")
    parser.add_argument("--format", default="text", choices=REPORT_FORMATS,
                        help="report format (default: text)")
    parser.add_argument("-o", "--output", metavar="FILE", help="write the report to FILE")
    parser.add_argument("-q", "--quiet", action="store_true", help="text: errors and summary only")
    parser.add_argument("--fail-on", default=DEFAULT_FAIL_ON_TEXT, metavar="KIND[,KIND]",
                        help=f"kinds that make the exit status 1: {', '.join(KINDS)}, all or none "
                        f"(default: {','.join(DEFAULT_FAIL_ON)})")
    parser.add_argument("--suppressions", action="append", default=[], metavar="FILE",
                        help="leak:PATTERN / site:FILE:LINE rules; repeatable")
    parser.add_argument("--no-default-suppressions", action="store_true",
                        help="also report the C library's own buffers kept until exit (stdio)")
    parser.add_argument("--baseline", metavar="FILE", help="accepted leaks: only new or grown ones fail")
    parser.add_argument("--write-baseline", metavar="FILE", help="write the current leaks as a baseline")
    parser.add_argument("--color", choices=COLORS, default="auto")
    add_symbol_options(parser)
    parser.set_defaults(func=run)


def make_symbolizer(args: argparse.Namespace) -> Symbolizer:
    if args.elf and not os.path.isfile(args.elf):
        raise UsageError(f"--elf {args.elf}: no such file")
    return Symbolizer(sysroot=args.sysroot, debug_dirs=args.debug_dir, elf=args.elf, enabled=not args.no_symbols)


def analyse(args: argparse.Namespace, paths: Any, inputs: list[str], fmt: str) -> Report:
    data = run_engine(paths.engine, inputs, fmt)
    return build_report(data, make_symbolizer(args))


def want_colour(choice: str, stream: Any, to_file: bool) -> bool:
    if choice == "never" or to_file:
        return False
    if choice == "always":
        return True
    if os.environ.get("NO_COLOR"):
        return False
    return bool(getattr(stream, "isatty", lambda: False)())


def emit(text: str, output: Optional[str]) -> None:
    if output:
        with open(output, "w", encoding="utf-8") as handle:
            handle.write(text)
    elif sys.stdout is None:  # started with descriptor 1 closed
        raise UsageError("standard output is closed: give -o FILE")
    else:
        sys.stdout.write(text)
        sys.stdout.flush()


def run(args: argparse.Namespace, paths: Any) -> int:
    fail_on = parse_fail_on(args.fail_on)
    rules = [] if args.no_default_suppressions else suppress.default_rules()
    for path in args.suppressions:
        rules.extend(suppress.load(path))
    accepted = None
    if args.baseline or args.write_baseline:
        from . import baseline
        accepted = baseline.load(args.baseline) if args.baseline else None
    # The renderer is imported before the engine is waited for, which
    # may already be running (report_early): its import then costs nothing.
    if args.format in ("json", "junit", "sarif"):
        from . import render_ci

        render = {"json": render_ci.render_json, "junit": render_ci.render_junit,
                  "sarif": render_ci.render_sarif}[args.format]
    else:
        from .render_text import render as render_text

        colour = args.color == "always" or (
            args.color == "auto" and want_colour("auto", sys.stdout, bool(args.output))
        )

        def render(report: Report) -> str:
            return render_text(report, quiet=args.quiet, colour=colour)

    report = analyse(args, paths, args.inputs, args.input_format)
    report.fail_on = fail_on
    if rules:
        suppress.apply(report, rules)
    if args.write_baseline:
        baseline.write(report, args.write_baseline)
    if accepted is not None:
        baseline.apply(report, accepted)
    text = render(report)
    emit(text, args.output)
    warn_empty(report)
    return 1 if report.failed() else 0


def warn_empty(report: Report) -> None:
    """An input with no heap events passes every other gate: say so on
    stderr whatever the format, so a broken capture does not go unseen in a
    green CI log. --fail-on empty makes it fail the run."""
    gate = "empty" in report.fail_on
    for path in report.empty_inputs:
        what = "error" if gate else "warning"
        then = "the run fails (--fail-on empty)" if gate else "add --fail-on empty to fail the run on this"
        print(f"heaptrail report: {what}: {path}: no heap events: nothing was checked; {then}", file=sys.stderr)
