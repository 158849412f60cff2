"""`heaptrail diff OLD NEW`: leak and peak regressions between two runs.

OLD and NEW are inputs (traces, logs) or JSON reports from
`heaptrail report --format json`. A regression is a leak key that is new or
leaks more bytes, or a peak that grew past --peak-tolerance percent. Exit
status 1 on a regression, 0 otherwise, 2 on unreadable input."""

from __future__ import annotations

import argparse
import json
from typing import Any

from . import suppress
from .errors import InputError
from .report_cmd import add_symbol_options, analyse, emit


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "diff",
        help="compare two runs: new or grown leaks, peak growth",
        description="Compare two runs (traces, logs or JSON reports). Exit status 1 on a regression.",
    )
    parser.add_argument("old", metavar="OLD")
    parser.add_argument("new", metavar="NEW")
    parser.add_argument("--peak-tolerance", type=float, default=0.0, metavar="PERCENT",
                        help="peak growth allowed before it counts as a regression (default 0)")
    parser.add_argument("--suppressions", action="append", default=[], metavar="FILE",
                        help="leak:PATTERN / site:FILE:LINE rules for inputs analysed here; repeatable")
    parser.add_argument("--no-default-suppressions", action="store_true",
                        help="also count the C library's own buffers kept until exit")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument("-o", "--output", metavar="FILE")
    add_symbol_options(parser)
    parser.set_defaults(func=run)


def _load(path: str, args: argparse.Namespace, paths: Any) -> dict[str, Any]:
    """A JSON report as is, or any input analysed now."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(64)
    except OSError as error:
        raise InputError(f"{path}: {error.strerror}") from None
    if head.lstrip().startswith(b"{"):
        try:
            with open(path, encoding="utf-8") as handle:
                doc: dict[str, Any] = json.load(handle)
        except ValueError as error:
            raise InputError(f"{path}: not a heaptrail JSON report ({error})") from None
        if "summary" not in doc or "leaks" not in doc:
            raise InputError(f"{path}: not a heaptrail JSON report (no summary/leaks)")
        return doc
    report = analyse(args, paths, [path], "auto")
    rules = [] if args.no_default_suppressions else suppress.default_rules()
    for rule_file in args.suppressions:
        rules.extend(suppress.load(rule_file))
    if rules:
        suppress.apply(report, rules)
    return report.to_json()


def _leak_table(doc: dict[str, Any]) -> dict[str, dict[str, int]]:
    table: dict[str, dict[str, int]] = {}
    for leak in doc.get("leaks", []):
        if leak.get("suppressed"):
            continue
        key = leak.get("key") or leak.get("site") or "(no stack)"
        entry = table.setdefault(key, {"bytes": 0, "blocks": 0})
        entry["bytes"] += int(leak["bytes"])
        entry["blocks"] += int(leak["blocks"])
    return table


def compare(old: dict[str, Any], new: dict[str, Any], peak_tolerance: float) -> dict[str, Any]:
    o, n = _leak_table(old), _leak_table(new)
    new_leaks = [{"key": k, **v} for k, v in sorted(n.items()) if k not in o]
    grown = [
        {"key": k, "old_bytes": o[k]["bytes"], "bytes": v["bytes"], "old_blocks": o[k]["blocks"], "blocks": v["blocks"]}
        for k, v in sorted(n.items())
        if k in o and v["bytes"] > o[k]["bytes"]
    ]
    fixed = [{"key": k, **v} for k, v in sorted(o.items()) if k not in n]
    old_peak = int(old["summary"].get("peak_bytes", 0))
    new_peak = int(new["summary"].get("peak_bytes", 0))
    limit = old_peak * (1.0 + peak_tolerance / 100.0)
    peak_regressed = new_peak > limit
    errors_regressed = int(new["summary"].get("free_errors", 0)) > int(old["summary"].get("free_errors", 0))
    return {
        "new_leaks": new_leaks,
        "grown_leaks": grown,
        "fixed_leaks": fixed,
        "peak": {"old": old_peak, "new": new_peak, "regressed": peak_regressed},
        "free_errors": {
            "old": int(old["summary"].get("free_errors", 0)),
            "new": int(new["summary"].get("free_errors", 0)),
            "regressed": errors_regressed,
        },
        "regression": bool(new_leaks or grown or peak_regressed or errors_regressed),
    }


def render_text(d: dict[str, Any]) -> str:
    lines = []
    for item in d["new_leaks"]:
        lines.append(f"NEW LEAK: {item['bytes']} bytes in {item['blocks']} blocks at {item['key']}")
    for item in d["grown_leaks"]:
        lines.append(f"GROWN LEAK: {item['old_bytes']} -> {item['bytes']} bytes at {item['key']}")
    for item in d["fixed_leaks"]:
        lines.append(f"fixed: {item['bytes']} bytes at {item['key']}")
    p = d["peak"]
    change = f"{(p['new'] - p['old']) * 100.0 / p['old']:+.1f}%" if p["old"] else "n/a"
    lines.append(f"{'PEAK GREW' if p['regressed'] else 'peak'}: {p['old']} -> {p['new']} bytes ({change})")
    fe = d["free_errors"]
    lines.append(f"{'MORE FREE ERRORS' if fe['regressed'] else 'free errors'}: {fe['old']} -> {fe['new']}")
    lines.append("RESULT: REGRESSION" if d["regression"] else "RESULT: OK")
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace, paths: Any) -> int:
    old = _load(args.old, args, paths)
    new = _load(args.new, args, paths)
    d = compare(old, new, args.peak_tolerance)
    text = json.dumps(d, indent=2) + "\n" if args.format == "json" else render_text(d)
    emit(text, args.output)
    return 1 if d["regression"] else 0
