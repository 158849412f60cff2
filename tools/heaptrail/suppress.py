"""Suppressions: LeakSanitizer's `leak:PATTERN` lines, plus `site:FILE:LINE`
and the free-error kinds (`double-free:`, `invalid-free:`, `mismatch:`).

A `leak:` pattern matches when it matches any frame's function, file or
module name, or the call site; `*` is a wildcard and a pattern without one
matches as a substring (LeakSanitizer's rule). `site:` matches the
allocation's file:line exactly, or by the end of the path ("a.c:10"
matches "src/a.c:10"). `#` starts a comment."""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs start-up and annotations are never evaluated
if TYPE_CHECKING:
    from typing import Iterable, Optional, Sequence

from .errors import InputError
from .records import record
from .symbols import Frame

KINDS = ("leak", "site", "double-free", "invalid-free", "mismatch")

# The C library's own memory that lives until exit by design: stdio's
# buffers, and the TLS blocks of thread stacks glibc caches for reuse
# (valgrind calls them "still reachable" / frees them in __libc_freeres).
DEFAULT_RULES_TEXT = ("leak:_IO_file_doallocate", "leak:_dl_allocate_tls")


@record(frozen=True)
class Rule:
    kind: str
    pattern: str
    text: str  # as written, for the report


def default_rules() -> list[Rule]:
    return [Rule(t.split(":", 1)[0], t.split(":", 1)[1], t + " (default)") for t in DEFAULT_RULES_TEXT]


def load(path: str) -> list[Rule]:
    rules: list[Rule] = []
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text file") from None
    for n, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        kind, sep, pattern = line.partition(":")
        kind = kind.strip()
        pattern = pattern.strip()
        if not sep or kind not in KINDS or not pattern:
            raise InputError(f"{path}: line {n}: expected KIND:PATTERN with KIND one of {', '.join(KINDS)}")
        rules.append(Rule(kind, pattern, line))
    return rules


def _match(pattern: str, value: Optional[str]) -> bool:
    if not value:
        return False
    if "*" in pattern or "?" in pattern:
        import fnmatch  # only for wildcards: it imports re (see jsonread), the default rules have none

        return fnmatch.fnmatchcase(value, pattern) or fnmatch.fnmatchcase(value, "*" + pattern + "*")
    return pattern in value


def _site_match(pattern: str, site: Optional[str]) -> bool:
    if not site:
        return False
    return site == pattern or site.endswith("/" + pattern)


def match_stack(rules: Iterable[Rule], kind: str, site: Optional[str], stack: Sequence[Frame]) -> Optional[str]:
    """The first rule that suppresses a finding of this kind, or None."""
    for rule in rules:
        if rule.kind == "site":
            if _site_match(rule.pattern, site):
                return rule.text
            continue
        if rule.kind != kind:
            continue
        if _match(rule.pattern, site):
            return rule.text
        for f in stack:
            if _match(rule.pattern, f.function) or _match(rule.pattern, f.file) or _match(rule.pattern, f.module):
                return rule.text
    return None


def apply(report: "object", rules: Sequence[Rule]) -> None:
    """Marks suppressed leaks and free errors in a report (model.Report)."""
    from .model import Report

    assert isinstance(report, Report)
    for leak in report.leaks:
        leak.suppressed = match_stack(rules, "leak", leak.site, leak.stack)
    for seg in report.segments:
        for leak in seg.leaks:
            leak.suppressed = match_stack(rules, "leak", leak.site, leak.stack)
    for err in report.free_errors:
        err.suppressed = match_stack(rules, err.kind, err.site, err.stack)
    # Like valgrind: suppressed bytes are counted apart, not as lost.
    hidden = [leak for leak in report.leaks if leak.suppressed]
    report.summary["suppressed_leaks"] = len(hidden)
    report.summary["suppressed_bytes"] = sum(leak.bytes for leak in hidden)
    report.summary["suppressed_blocks"] = sum(leak.blocks for leak in hidden)
    report.summary["leaked_bytes"] -= report.summary["suppressed_bytes"]
    report.summary["leaked_blocks"] -= report.summary["suppressed_blocks"]
    report.summary["leak_sites"] -= len(hidden)
    report.summary["suppressed_free_errors"] = sum(e.count for e in report.free_errors if e.suppressed)
