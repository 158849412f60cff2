"""Baselines of accepted leaks, keyed by call site or function chain (never
by address, which changes from run to run). A leak in the baseline does
not fail the run unless it grew past the bytes recorded for it."""

from __future__ import annotations

import json

TYPE_CHECKING = False  # typing costs start-up and annotations are never evaluated
if TYPE_CHECKING:
    from typing import Any

from .errors import InputError
from .model import Report

VERSION = 1


def write(report: Report, path: str) -> None:
    entries: dict[str, dict[str, int]] = {}
    for leak in report.leaks:
        if leak.suppressed:
            continue
        e = entries.setdefault(leak.key(), {"bytes": 0, "blocks": 0})
        e["bytes"] += leak.bytes
        e["blocks"] += leak.blocks
    doc = {"heaptrail_baseline": VERSION, "leaks": [{"key": k, **v} for k, v in sorted(entries.items())]}
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(doc, handle, indent=2)
        handle.write("\n")


def load(path: str) -> dict[str, dict[str, int]]:
    try:
        with open(path, encoding="utf-8") as handle:
            doc: Any = json.load(handle)
    except ValueError as error:
        raise InputError(f"{path}: not a heaptrail baseline ({error})") from None
    if not isinstance(doc, dict) or doc.get("heaptrail_baseline") != VERSION or not isinstance(doc.get("leaks"), list):
        raise InputError(f"{path}: not a heaptrail baseline (version {VERSION})")
    out: dict[str, dict[str, int]] = {}
    for item in doc["leaks"]:
        try:
            out[str(item["key"])] = {"bytes": int(item["bytes"]), "blocks": int(item["blocks"])}
        except (KeyError, TypeError, ValueError):
            raise InputError(f"{path}: malformed baseline entry {item!r}") from None
    return out


def apply(report: Report, accepted: dict[str, dict[str, int]]) -> None:
    totals: dict[str, int] = {}
    for leak in report.leaks:
        totals[leak.key()] = totals.get(leak.key(), 0) + leak.bytes
    for leak in report.leaks:
        base = accepted.get(leak.key())
        leak.baselined = base is not None and totals[leak.key()] <= base["bytes"]
    for seg in report.segments:
        for leak in seg.leaks:
            base = accepted.get(leak.key())
            leak.baselined = base is not None and totals.get(leak.key(), 0) <= base["bytes"]
    report.summary["baselined_leaks"] = sum(1 for leak in report.leaks if leak.baselined)
