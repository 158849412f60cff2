"""Machine formats: JSON (ours), JUnit XML and SARIF 2.1.0 for CI systems."""

from __future__ import annotations

# Not json: it imports re (jsonread says what that costs); dumps_indented
# uses _json's string encoder, and json only for what it leaves to json.
import _json

TYPE_CHECKING = False  # typing costs start-up and annotations are never evaluated
if TYPE_CHECKING:
    from typing import Any, Optional, Sequence

from . import __version__
from .model import FreeError, Leak, Report
from .symbols import Frame

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
RULES = {
    "leak": "Memory allocated here was never freed.",
    "double-free": "A block was freed twice.",
    "invalid-free": "free() of a pointer no allocator returned.",
    "mismatch": "A block was freed through the wrong family (new/delete/free).",
    "lost-data": "Events were lost; results may be incomplete.",
    "empty": "An input holds no heap events: nothing was checked (a broken capture?).",
}


class _Unusual(Exception):
    """A value dumps_indented leaves to json.dumps."""


_INFINITY = float("inf")


def _float_text(value: float) -> str:
    # json.encoder's floatstr with allow_nan (the default)
    if value != value:
        return "NaN"
    if value == _INFINITY:
        return "Infinity"
    if value == -_INFINITY:
        return "-Infinity"
    return float.__repr__(value)


def dumps_indented(doc: Any) -> str:
    """json.dumps(doc, indent=2), byte for byte, in 60% of the time: with an
    indent, json.dumps takes its pure-Python generator path, 1.5 ms of the
    ~4 ms a report spends after the engine on workload (d) (3000 values),
    here 0.9 ms: no generators, strings inline. Plain dicts (of str keys),
    lists, tuples, str, int, float, bool and None are written here; a
    document holding anything else goes to json.dumps whole."""
    encode = _json.encode_basestring_ascii  # json.encoder's, as json.dumps uses it (ensure_ascii)
    parts: list[str] = []
    add = parts.append

    def scalar(value: Any, kind: type, newline: str) -> None:
        """A value that is not a str (the common case, written inline)."""
        if value is None:
            add("null")
        elif value is True:
            add("true")
        elif value is False:
            add("false")
        elif kind is int:
            add(int.__repr__(value))
        elif kind is dict:
            write_dict(value, newline)
        elif kind is list or kind is tuple:
            write_list(value, newline)
        elif kind is float:
            add(_float_text(value))
        else:
            raise _Unusual

    def write_dict(value: dict[Any, Any], newline: str) -> None:
        """newline: a line break and the dict's own indent."""
        if not value:
            add("{}")
            return
        inner = newline + "  "
        separator = "{" + inner
        for key, item in value.items():
            if type(key) is not str:
                raise _Unusual  # json.dumps turns int, float, bool and None keys to strings
            add(separator)
            add(encode(key))
            add(": ")
            separator = "," + inner
            kind = type(item)
            if kind is str:
                add(encode(item))
            else:
                scalar(item, kind, inner)
        add(newline + "}")

    def write_list(value: list[Any] | tuple[Any, ...], newline: str) -> None:
        if not value:
            add("[]")
            return
        inner = newline + "  "
        separator = "[" + inner
        for item in value:
            add(separator)
            separator = "," + inner
            kind = type(item)
            if kind is str:
                add(encode(item))
            else:
                scalar(item, kind, inner)
        add(newline + "]")

    if type(doc) in (dict, list, tuple):
        try:
            scalar(doc, type(doc), "\n")
            return "".join(parts)
        except _Unusual:
            pass
    import json

    return json.dumps(doc, indent=2)


def render_json(report: Report) -> str:
    return dumps_indented(report.to_json()) + "\n"


def _stack_text(stack: Sequence[Frame], site: Optional[str]) -> str:
    lines = []
    if site:
        lines.append(f"at {site}")
    lines.extend(f"  {f.addr}: {f.describe()}" for f in stack)
    return "\n".join(lines)


def _leak_message(leak: Leak) -> str:
    return f"{leak.bytes} bytes in {leak.blocks} blocks definitely lost at {leak.key()}"


def _error_message(err: FreeError) -> str:
    times = f" ({err.count} times)" if err.count > 1 else ""
    return f"{err.kind} of {err.ptr}{times} at {err.site or (err.stack[0].describe() if err.stack else 'unknown')}"


def render_junit(report: Report) -> str:
    """One testsuite; a testcase per segment (test) when the input has them,
    else one for the whole run, each failing with its findings."""
    import xml.etree.ElementTree as ET  # only JUnit needs it: kept off start-up

    suites = ET.Element("testsuites", name="heaptrail")
    suite = ET.SubElement(suites, "testsuite", name="heaptrail")
    cases: list[tuple[str, list[tuple[str, str, str]]]] = []
    if report.segments:
        by_seg: dict[str, list[tuple[str, str, str]]] = {seg.name: [] for seg in report.segments}
        for seg in report.segments:
            for leak in seg.leaks:
                if not leak.suppressed and not leak.baselined and "leak" in report.fail_on:
                    by_seg[seg.name].append(("leak", _leak_message(leak), _stack_text(leak.stack, leak.site)))
        for err in report.active_errors():
            if err.kind in report.fail_on:
                by_seg.setdefault(err.segment or "(whole run)", []).append(
                    (err.kind, _error_message(err), _stack_text(err.stack, err.site))
                )
        cases = list(by_seg.items())
    else:
        findings: list[tuple[str, str, str]] = []
        if "leak" in report.fail_on:
            findings += [("leak", _leak_message(x), _stack_text(x.stack, x.site)) for x in report.active_leaks()]
        findings += [
            (e.kind, _error_message(e), _stack_text(e.stack, e.site)) for e in report.active_errors() if e.kind in report.fail_on
        ]
        cases = [("heap", findings)]
    if "lost-data" in report.fail_on and report.findings()["lost-data"]:
        cases.append(("lost-data", [("lost-data", f"{report.summary['lost_events']} events lost", "")]))
    if "empty" in report.fail_on and report.empty_inputs:
        cases.append(("empty", [("empty", f"{path}: no heap events", "") for path in report.empty_inputs]))
    failures = 0
    for name, findings in cases:
        case = ET.SubElement(suite, "testcase", classname="heaptrail", name=name)
        if findings:
            failures += 1
            fail = ET.SubElement(case, "failure", type=findings[0][0], message="; ".join(f[1] for f in findings[:5]))
            fail.text = "\n\n".join(f"{f[1]}\n{f[2]}" for f in findings)
    suite.set("tests", str(len(cases)))
    suite.set("failures", str(failures))
    suite.set("errors", "0")
    suites.set("tests", str(len(cases)))
    suites.set("failures", str(failures))
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def _location(site: Optional[str], stack: Sequence[Frame]) -> Optional[dict[str, Any]]:
    uri: Optional[str] = None
    line: Optional[int] = None
    if site and ":" in site and site.rsplit(":", 1)[1].isdigit():
        uri, ln = site.rsplit(":", 1)
        line = int(ln)
    else:
        for f in stack:
            if f.file and f.line:
                uri, line = f.file, f.line
                break
    if uri is None:
        return None
    loc: dict[str, Any] = {"physicalLocation": {"artifactLocation": {"uri": uri[2:] if uri.startswith("./") else uri}}}
    if line:
        loc["physicalLocation"]["region"] = {"startLine": line}
    return loc


def render_sarif(report: Report) -> str:
    results: list[dict[str, Any]] = []

    def add(rule: str, message: str, site: Optional[str], stack: Sequence[Frame], key: str) -> None:
        result: dict[str, Any] = {
            "ruleId": rule,
            "level": "error" if rule in report.fail_on else "warning",
            "message": {"text": message},
            "partialFingerprints": {"heaptrailKey/v1": key},
        }
        loc = _location(site, stack)
        result["locations"] = [loc] if loc else []
        results.append(result)

    for leak in report.active_leaks():
        add("leak", _leak_message(leak), leak.site, leak.stack, leak.key())
    for err in report.active_errors():
        add(err.kind, _error_message(err), err.site, err.stack, err.key())
    for path in report.empty_inputs:
        add("empty", f"{path}: no heap events: nothing was checked", None, [], "empty " + path)
    doc = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "heaptrail",
                        "version": __version__,
                        "rules": [{"id": k, "shortDescription": {"text": v}} for k, v in RULES.items()],
                    }
                },
                "results": results,
            }
        ],
    }
    return dumps_indented(doc) + "\n"
