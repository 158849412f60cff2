"""The report model: engine results (per-stack aggregates) turned into
findings with symbolised stacks. Renderers read only this model; parsing
the engine output and rendering stay apart."""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs start-up and annotations are never evaluated
if TYPE_CHECKING:
    from typing import Any, Optional, Sequence

from .records import record
from .symbols import Frame, ProcessSymbols, Symbolizer

KINDS = ("leak", "double-free", "invalid-free", "mismatch", "lost-data", "empty")
DEFAULT_FAIL_ON = ("leak", "double-free", "invalid-free", "mismatch")
PEAK_CONTRIBUTORS = 10
TOP_ALLOCATORS = 10


@record()
class Leak:
    bytes: int
    blocks: int
    addresses: list[str]
    site: Optional[str]
    stack: list[Frame]
    process: int = 0
    segment: Optional[str] = None
    suppressed: Optional[str] = None  # the rule that matched
    baselined: bool = False

    def key(self) -> str:
        return finding_key(self.site, self.stack)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "bytes": self.bytes,
            "blocks": self.blocks,
            "addresses": self.addresses,
            "site": self.site,
            "stack": [f.to_json() for f in self.stack],
            "process": self.process,
            "key": self.key(),
        }
        if self.suppressed:
            out["suppressed"] = self.suppressed
        if self.baselined:
            out["baselined"] = True
        return out


@record()
class FreeError:
    kind: str
    count: int
    ptr: str
    size: int
    site: Optional[str]
    stack: list[Frame]
    alloc_site: Optional[str]
    alloc_stack: list[Frame]
    free_site: Optional[str]
    free_stack: list[Frame]
    process: int = 0
    segment: Optional[str] = None
    suppressed: Optional[str] = None

    def key(self) -> str:
        return self.kind + " " + finding_key(self.site, self.stack)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind,
            "count": self.count,
            "ptr": self.ptr,
            "size": self.size,
            "site": self.site,
            "stack": [f.to_json() for f in self.stack],
            "alloc_site": self.alloc_site,
            "alloc_stack": [f.to_json() for f in self.alloc_stack],
            "free_site": self.free_site,
            "free_stack": [f.to_json() for f in self.free_stack],
            "process": self.process,
            "segment": self.segment,
        }
        if self.suppressed:
            out["suppressed"] = self.suppressed
        return out


@record()
class SiteStat:
    """An allocation site with a figure: peak share, persistent, top."""

    bytes: int
    blocks: int
    site: Optional[str]
    stack: list[Frame]
    allocations: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "bytes": self.bytes,
            "blocks": self.blocks,
            "allocations": self.allocations,
            "site": self.site,
            "stack": [f.to_json() for f in self.stack],
        }


@record()
class Segment:
    name: str
    kind: str
    allocations: int
    frees: int
    total_bytes: int
    peak_bytes: int
    heap_size: int
    failed_allocations: int
    leaked_bytes: int
    leaked_blocks: int
    unknown_blocks: int
    persistent_blocks: int
    free_errors: int
    lost_events: int
    leaks: list[Leak]

    @property
    def percent_full(self) -> Optional[float]:
        if not self.heap_size:
            return None
        return round(self.peak_bytes * 100.0 / self.heap_size, 2)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "allocations": self.allocations,
            "frees": self.frees,
            "total_bytes": self.total_bytes,
            "peak_bytes": self.peak_bytes,
            "heap_size": self.heap_size or None,
            "percent_full": self.percent_full,
            "failed_allocations": self.failed_allocations,
            "leaked_bytes": self.leaked_bytes,
            "leaked_blocks": self.leaked_blocks,
            "unknown_blocks": self.unknown_blocks,
            "persistent_blocks": self.persistent_blocks,
            "free_errors": self.free_errors,
            "lost_events": self.lost_events,
            "leaks": [leak.to_json() for leak in self.leaks],
        }


@record()
class Report:
    summary: dict[str, Any]
    leaks: list[Leak]
    unknown: list[Leak]
    free_errors: list[FreeError]
    persistent: list[SiteStat]
    peak: dict[str, Any]
    peak_sites: list[SiteStat]
    top_allocators: list[SiteStat]
    temporary_sites: list[SiteStat]
    segments: list[Segment]
    heap: Optional[dict[str, Any]]
    inputs: list[dict[str, Any]]
    processes: list[dict[str, Any]]
    histogram: list[dict[str, int]]
    timeline: list[dict[str, int]]
    fail_on: tuple[str, ...] = DEFAULT_FAIL_ON
    # Inputs that hold no heap activity at all (see empty_input()).
    empty_inputs: tuple[str, ...] = ()

    def active_leaks(self) -> list[Leak]:
        return [leak for leak in self.leaks if not leak.suppressed and not leak.baselined]

    def active_errors(self) -> list[FreeError]:
        return [e for e in self.free_errors if not e.suppressed]

    def findings(self) -> dict[str, int]:
        counts = {kind: 0 for kind in KINDS}
        for leak in self.active_leaks():
            counts["leak"] += 1
        for err in self.active_errors():
            counts[err.kind] += err.count
        lost = sum(int(i.get("lost_events", 0)) for i in self.inputs)
        incomplete = sum(1 for i in self.inputs if not i.get("complete", True))
        counts["lost-data"] = lost + incomplete
        counts["empty"] = len(self.empty_inputs)
        return counts

    def failed(self) -> bool:
        counts = self.findings()
        return any(counts[k] for k in self.fail_on)

    def to_json(self) -> dict[str, Any]:
        return {
            "heaptrail_report": 1,
            "summary": self.summary,
            "leaks": [leak.to_json() for leak in self.leaks],
            "unknown": [leak.to_json() for leak in self.unknown],
            "free_errors": [e.to_json() for e in self.free_errors],
            "persistent": [p.to_json() for p in self.persistent],
            "peak": dict(self.peak, sites=[p.to_json() for p in self.peak_sites]),
            "top_allocators": [p.to_json() for p in self.top_allocators],
            "temporary": [p.to_json() for p in self.temporary_sites],
            "segments": [s.to_json() for s in self.segments],
            "heap": self.heap,
            "inputs": self.inputs,
            "processes": self.processes,
            "histogram": self.histogram,
            "timeline": self.timeline,
            "findings": self.findings(),
            "fail_on": list(self.fail_on),
            "failed": self.failed(),
        }


def empty_input(heap_events: int, lost_events: int, fork_child: bool) -> bool:
    """An input in which nothing at all was seen of the heap: no allocation,
    free, realloc or free error, and no report of lost events either (that
    is lost-data). A CI gate that passes on it passes on a broken capture
    (the program was not traced, the log was not captured, the wrong file).
    A fork child's trace is part of its parent's run: a child that made no
    allocation before exec (what a shell does) is not an empty capture."""
    return heap_events == 0 and lost_events == 0 and not fork_child


def finding_key(site: Optional[str], stack: Sequence[Frame]) -> str:
    """A key that survives rebuilds and address layout: the call site, else
    the chain of function names (module+offset only as a last resort)."""
    if site:
        return site
    names = [f.function or f"{f.module or '?'}" for f in stack[:6] if not f.inlined or f.function]
    if names:
        return " < ".join(names)
    return "(no stack)"


def _plain_frames(addrs: Sequence[str]) -> list[Frame]:
    return [Frame(addr=a) for a in addrs]


def build_report(data: dict[str, Any], sym: Optional[Symbolizer] = None) -> Report:
    """Turns engine JSON into the report model, symbolising every stack the
    report shows (and only those) in one batch per module."""
    procs = data.get("processes", [])
    aggs = data.get("aggregates", [])
    errs = data.get("free_errors", [])
    segs = data.get("segments", [])
    totals = data["totals"]

    psym: list[Optional[ProcessSymbols]] = []
    if sym is not None:
        by_pid = {p["pid"]: p for p in procs if not p.get("fork_child")}
        for p in procs:
            parent = by_pid.get(p.get("parent_pid")) if p.get("fork_child") else None
            psym.append(ProcessSymbols(sym, p, parent))
        wanted: dict[int, list[list[str]]] = {}
        for a in aggs:
            if a["leaked_blocks"] or a["unknown_blocks"] or a["persistent_blocks"] or a["peak_bytes"] or a["temporary"]:
                wanted.setdefault(a["process"], []).append(a["frames"])
        for e in errs:
            for key in ("frames", "alloc_frames", "free_frames"):
                wanted.setdefault(e["process"], []).append(e[key])
        for a in sorted(aggs, key=lambda x: -x["total_bytes"])[:TOP_ALLOCATORS]:
            wanted.setdefault(a["process"], []).append(a["frames"])
        for pi, stacks in wanted.items():
            ps = psym[pi] if pi < len(psym) else None
            if ps is not None:
                ps.prepare(stacks)

    def frames(proc: int, addrs: Sequence[str]) -> list[Frame]:
        if not addrs:
            return []
        ps = psym[proc] if proc < len(psym) else None
        return ps.frames(addrs) if ps is not None else _plain_frames(addrs)

    # The segment before any marker has no name of its own: call it by what
    # it covers, so JUnit test cases and error locations read well.
    named = {s["process"] for s in segs if s["name"]}
    unnamed = "(whole run)" if not named else "(before the first marker)"
    segname = {s["index"]: s["name"] or unnamed for s in segs}

    leaks: list[Leak] = []
    unknown: list[Leak] = []
    persistent: list[SiteStat] = []
    for a in aggs:
        if a["leaked_blocks"]:
            leaks.append(
                Leak(a["leaked_bytes"], a["leaked_blocks"], sorted(a["addresses"], key=lambda x: int(x, 16)), a["site"], frames(a["process"], a["frames"]), a["process"])
            )
        if a["unknown_blocks"]:
            unknown.append(Leak(a["unknown_bytes"], a["unknown_blocks"], [], a["site"], frames(a["process"], a["frames"]), a["process"]))
        if a["persistent_blocks"]:
            persistent.append(
                SiteStat(a["persistent_bytes"], a["persistent_blocks"], a["site"], frames(a["process"], a["frames"]), a["allocations"])
            )
    leaks.sort(key=lambda x: (-x.bytes, -x.blocks, x.site or ""))
    unknown.sort(key=lambda x: (-x.bytes, x.site or ""))
    persistent.sort(key=lambda x: (-x.bytes, x.site or ""))

    free_errors = [
        FreeError(
            kind=e["kind"],
            count=e["count"],
            ptr=e["ptr"],
            size=e["size"],
            site=e["site"],
            stack=frames(e["process"], e["frames"]),
            alloc_site=e["alloc_site"],
            alloc_stack=frames(e["process"], e["alloc_frames"]),
            free_site=e["free_site"],
            free_stack=frames(e["process"], e["free_frames"]),
            process=e["process"],
            segment=segname.get(e["segment"]),
        )
        for e in errs
    ]

    peak_sites = [
        SiteStat(a["peak_bytes"], 0, a["site"], frames(a["process"], a["frames"]), a["allocations"])
        for a in sorted(aggs, key=lambda x: (-x["peak_bytes"], x["id"]))
        if a["peak_bytes"]
    ][:PEAK_CONTRIBUTORS]
    top = [
        SiteStat(a["total_bytes"], 0, a["site"], frames(a["process"], a["frames"]), a["allocations"])
        for a in sorted(aggs, key=lambda x: (-x["total_bytes"], x["id"]))[:TOP_ALLOCATORS]
        if a["allocations"]
    ]
    temporary = [
        SiteStat(0, a["temporary"], a["site"], frames(a["process"], a["frames"]), a["allocations"])
        for a in sorted(aggs, key=lambda x: (-x["temporary"], x["id"]))[:TOP_ALLOCATORS]
        if a["temporary"]
    ]

    segments: list[Segment] = []
    for s in segs:
        empty = not (s["allocations"] or s["frees"] or s["free_errors"] or s["leaks"] or s["lost_events"])
        if empty:
            continue  # nothing happened in it (e.g. the implicit one before the first marker)
        seg_leaks = []
        for item in s["leaks"]:
            if not item["blocks"]:
                continue
            a = aggs[item["aggregate"]]
            seg_leaks.append(
                Leak(item["bytes"], item["blocks"], sorted(item["addresses"], key=lambda x: int(x, 16)), a["site"], frames(a["process"], a["frames"]), a["process"], s["name"])
            )
        seg_leaks.sort(key=lambda x: (-x.bytes, x.site or ""))
        segments.append(
            Segment(
                name=segname[s["index"]],
                kind=s["kind"],
                allocations=s["allocations"],
                frees=s["frees"],
                total_bytes=s["total_bytes"],
                peak_bytes=s["peak_bytes"],
                heap_size=s["heap_size"],
                failed_allocations=s["failed_allocations"],
                leaked_bytes=s["leaked_bytes"],
                leaked_blocks=s["leaked_blocks"],
                unknown_blocks=s["unknown_blocks"],
                persistent_blocks=s["persistent_blocks"],
                free_errors=s["free_errors"],
                lost_events=s["lost_events"],
                leaks=seg_leaks,
            )
        )

    heap = None
    h = data.get("heap")
    if h:
        size = h.get("size") or 0
        peak_size = h.get("peak_heap_size") or size
        heap = {
            "base": h.get("base"),
            "size": size or None,
            "peak_bytes": h.get("peak_bytes"),
            "peak_heap_size": peak_size or None,
            # of the heap that was fullest (heaps may differ in size)
            "peak_percent": round(h["peak_bytes"] * 100.0 / peak_size, 2) if peak_size else None,
            "free": h.get("free"),
            "largest_free": h.get("largest_free"),
            "free_blocks": h.get("free_blocks"),
            "min_free": h.get("min_free"),
            "fragmentation_permille": h.get("fragmentation_permille"),
            "checks": h.get("checks", 0),
            "check_mismatches": h.get("check_mismatches", 0),
        }

    heap_events: dict[int, int] = {}
    for s in segs:
        heap_events[s["process"]] = heap_events.get(s["process"], 0) + s["allocations"] + s["frees"] + s["free_errors"]
    inputs = [
        {
            "path": i["path"],
            "format": i["format"],
            "complete": i["complete"],
            "exited": i["exited"],
            "stopped_at": i["stopped_at"],
            "lost_events": i["lost_events"],
            "events": i["events"],
            "heap_events": heap_events.get(i["process"], 0),
        }
        for i in data.get("inputs", [])
    ]
    fork_child = {p["index"]: bool(p.get("fork_child")) for p in procs}
    empty_inputs = tuple(
        i["path"]
        for i in data.get("inputs", [])
        if empty_input(heap_events.get(i["process"], 0), i["lost_events"], fork_child.get(i["process"], False))
    )
    processes = [
        {k: p[k] for k in ("index", "pid", "ppid", "parent_pid", "fork_child", "exe", "args", "end_status", "peak_bytes", "origin")}
        for p in procs
    ]

    summary = {
        "allocations": totals["allocations"],
        "frees": totals["frees"],
        "reallocs": totals["reallocs"],
        "failed_allocations": totals["failed_allocations"],
        "total_bytes": totals["total_bytes"],
        "peak_bytes": totals["peak_bytes"],
        "leaked_bytes": totals["leaked_bytes"],
        "leaked_blocks": totals["leaked_blocks"],
        "leak_sites": len(leaks),
        "unknown_bytes": totals["unknown_bytes"],
        "unknown_blocks": totals["unknown_blocks"],
        "persistent_bytes": totals["persistent_bytes"],
        "persistent_blocks": totals["persistent_blocks"],
        "free_errors": totals["free_errors"],
        "temporary": totals["temporary"],
        "lost_events": totals["lost_events"],
        "unmatched_frees": totals["unmatched_frees"],
        "events": totals["events"],
        "suppressed_leaks": 0,
        "baselined_leaks": 0,
    }
    peak = {
        "bytes": totals["peak_bytes"],
        "process": totals["peak_process"],
        "seq": totals["peak_seq"],
        "time_ns": totals["peak_time_ns"],
        "event": totals["peak_event"],
    }
    histogram = [{"min": b["min"], "count": b["count"]} for b in data.get("histogram", [])]
    timeline = [{"event": t[0], "seq": t[1], "time_ns": t[2], "bytes": t[3]} for t in data.get("timeline", [])]
    return Report(
        summary=summary,
        leaks=leaks,
        unknown=unknown,
        free_errors=free_errors,
        persistent=persistent,
        peak=peak,
        peak_sites=peak_sites,
        top_allocators=top,
        temporary_sites=temporary,
        segments=segments,
        heap=heap,
        inputs=inputs,
        processes=processes,
        histogram=histogram,
        timeline=timeline,
        empty_inputs=empty_inputs,
    )


def parse_fail_on(text: str) -> tuple[str, ...]:
    from .errors import UsageError

    if text.strip() in ("", "none"):
        return ()
    if text.strip() == "all":
        return KINDS
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    for k in kinds:
        if k not in KINDS:
            raise UsageError(f"--fail-on: unknown kind '{k}' (choose from {', '.join(KINDS)}, all, none)")
    return kinds
