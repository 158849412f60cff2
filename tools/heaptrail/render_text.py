"""The text report: summary first, then each finding with its stack, in
words a valgrind user already knows."""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs start-up and annotations are never evaluated
if TYPE_CHECKING:
    from typing import Optional, Sequence

from .model import Leak, Report
from .symbols import Frame

MAX_FRAMES = 12
MAX_LISTED = 50


class Style:
    def __init__(self, colour: bool) -> None:
        self.colour = colour

    def _c(self, code: str, text: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.colour else text

    def bad(self, text: str) -> str:
        return self._c("1;31", text)

    def good(self, text: str) -> str:
        return self._c("1;32", text)

    def head(self, text: str) -> str:
        return self._c("1", text)

    def dim(self, text: str) -> str:
        return self._c("2", text)


def human(n: Optional[int]) -> str:
    if n is None:
        return "?"
    return f"{n:,} bytes" if n != 1 else "1 byte"


def _blocks(n: int) -> str:
    return f"{n:,} block" + ("" if n == 1 else "s")


def _stack_lines(stack: Sequence[Frame], site: Optional[str], indent: str = "    ") -> list[str]:
    lines: list[str] = []
    if site and len(stack) == 1 and not (stack[0].function or stack[0].file):
        # A board's caller PC with no ELF to read: it names the same place.
        return [f"{indent}at {site} (pc {stack[0].addr})"]
    if site:
        lines.append(f"{indent}at {site}")
    for i, f in enumerate(stack[:MAX_FRAMES]):
        word = "at" if i == 0 and not site else "by"
        inl = " [inlined]" if f.inlined else ""
        lines.append(f"{indent}{word} {f.addr}: {f.describe()}{inl}" if f.function or f.file else f"{indent}{word} {f.addr}")
    if len(stack) > MAX_FRAMES:
        lines.append(f"{indent}... {len(stack) - MAX_FRAMES} more frames")
    if not lines:
        lines.append(f"{indent}(no call site or stack recorded)")
    return lines


def _leak_block(leak: Leak, style: Style, what: str = "definitely lost", pid: str = "") -> list[str]:
    note = ""
    if leak.suppressed:
        note = style.dim(f"  [suppressed: {leak.suppressed}]")
    elif leak.baselined:
        note = style.dim("  [in baseline]")
    addrs = ""
    if leak.addresses:
        addrs = " (e.g. " + ", ".join(leak.addresses[:3]) + ")"
    return [f"{human(leak.bytes)} in {_blocks(leak.blocks)} {what}{pid}{addrs}{note}", *_stack_lines(leak.stack, leak.site)]


def render(report: Report, quiet: bool = False, colour: bool = False) -> str:
    st = Style(colour)
    s = report.summary
    out: list[str] = []
    counts = report.findings()
    # With several processes (a parent and its children), say whose finding it is.
    pids = {p["index"]: p["pid"] for p in report.processes} if len(report.processes) > 1 else {}

    def in_pid(proc: int) -> str:
        return f" in pid {pids[proc]}" if proc in pids else ""

    out.append(st.head("HEAP SUMMARY"))
    for i in report.inputs:
        line = f"  input: {i['path']} ({i['format']}, {i['events']:,} events)"
        if i.get("stopped_at"):
            line += f" -- stopped at offset {i['stopped_at']['offset']}: {i['stopped_at']['reason']}"
        if i["path"] in report.empty_inputs:
            line += " -- no heap events in it (was heap tracing or memory profiling on?)"
            line = st.bad(line) if "empty" in report.fail_on else line
        out.append(line)
    out.append(f"  total heap usage: {s['allocations']:,} allocs, {s['frees']:,} frees, {human(s['total_bytes'])} allocated")
    if s["failed_allocations"]:
        out.append(f"  failed allocations: {s['failed_allocations']:,}")
    out.append(f"  peak: {human(s['peak_bytes'])}")
    if report.heap and report.heap.get("size"):
        h = report.heap
        out.append(f"  heap: fullest at {human(h['peak_bytes'])} of {human(h['peak_heap_size'])} ({h['peak_percent']}% full)")
    out.append(f"  definitely lost: {human(s['leaked_bytes'])} in {_blocks(s['leaked_blocks'])} ({s['leak_sites']} sites)")
    if s["unknown_blocks"]:
        out.append(f"  unknown (free may be in lost data): {human(s['unknown_bytes'])} in {_blocks(s['unknown_blocks'])}")
    if s["persistent_blocks"]:
        out.append(f"  persistent (never a leak): {human(s['persistent_bytes'])} in {_blocks(s['persistent_blocks'])}")
    out.append(
        f"  free errors: {s['free_errors']:,} (double-free {counts['double-free']}, "
        f"invalid-free {counts['invalid-free']}, mismatch {counts['mismatch']})"
    )
    if s["temporary"]:
        out.append(f"  temporary allocations: {s['temporary']:,}")
    if counts["lost-data"]:
        out.append(st.bad(f"  lost data: {s['lost_events']:,} events lost") if "lost-data" in report.fail_on else f"  lost data: {s['lost_events']:,} events lost")
    if s.get("suppressed_leaks"):
        out.append(f"  suppressed: {human(s['suppressed_bytes'])} in {_blocks(s['suppressed_blocks'])} ({s['suppressed_leaks']} sites)")
    if s.get("baselined_leaks"):
        out.append(f"  leak sites in the baseline: {s['baselined_leaks']}")

    if report.free_errors:
        out.append("")
        out.append(st.head("FREE ERRORS"))
        for e in report.free_errors[:MAX_LISTED]:
            title = {"double-free": "Double free", "invalid-free": "Invalid free", "mismatch": "Mismatched free"}[e.kind]
            times = f" ({e.count} times)" if e.count > 1 else ""
            note = st.dim(f"  [suppressed: {e.suppressed}]") if e.suppressed else ""
            where = (f" in {e.segment}" if e.segment else "") + in_pid(e.process)
            out.append(st.bad(f"{title} of {e.ptr}{times}{where}") + note)
            out.extend(_stack_lines(e.stack, e.site))
            if e.alloc_site or e.alloc_stack:
                out.append("  block allocated:")
                out.extend(_stack_lines(e.alloc_stack, e.alloc_site))
            if e.free_site or e.free_stack:
                out.append("  block first freed:")
                out.extend(_stack_lines(e.free_stack, e.free_site))
        if len(report.free_errors) > MAX_LISTED:
            out.append(f"... and {len(report.free_errors) - MAX_LISTED} more (see --format json)")

    # Suppressed and baselined leaks are counted in the summary, as valgrind
    # counts its suppressed ones; listing their stacks would bury the rest.
    shown = [leak for leak in report.leaks if not (leak.suppressed or leak.baselined)]
    if shown:
        out.append("")
        out.append(st.head("LEAKS"))
        for leak in shown[:MAX_LISTED]:
            block = _leak_block(leak, st, pid=in_pid(leak.process))
            block[0] = st.bad(block[0])
            out.extend(block)
        if len(shown) > MAX_LISTED:
            out.append(f"... and {len(shown) - MAX_LISTED} more sites (see --format json)")

    if not quiet:
        if report.unknown:
            out.append("")
            out.append(st.head("UNKNOWN (live when data was lost: maybe freed)"))
            for leak in report.unknown[:MAX_LISTED]:
                out.extend(_leak_block(leak, st, "possibly live", in_pid(leak.process)))
        if report.persistent:
            out.append("")
            out.append(st.head("PERSISTENT"))
            for p in report.persistent[:MAX_LISTED]:
                out.append(f"{human(p.bytes)} in {_blocks(p.blocks)}")
                out.extend(_stack_lines(p.stack, p.site))
        if report.peak_sites:
            out.append("")
            out.append(st.head(f"PEAK: {human(report.peak['bytes'])}") + st.dim(f" (event {report.peak['event']:,})"))
            for p in report.peak_sites:
                out.append(f"{human(p.bytes)} live at the peak")
                out.extend(_stack_lines(p.stack, p.site))
        if report.segments:
            out.append("")
            out.append(st.head("SEGMENTS"))
            for seg in report.segments:
                full = f" ({seg.percent_full}% full)" if seg.percent_full is not None else ""
                failing = [leak for leak in seg.leaks if not (leak.suppressed or leak.baselined)]
                verdict = st.bad("FAIL") if (failing or seg.free_errors) else st.good("ok")
                out.append(f"{seg.name} [{seg.kind}] {verdict}")
                out.append(f"    Total overtime: {seg.total_bytes}  Max overtime: {seg.peak_bytes}{full}")
                out.append(
                    f"    allocations {seg.allocations}, frees {seg.frees}, failed {seg.failed_allocations}, "
                    f"leaked {human(seg.leaked_bytes)} in {_blocks(seg.leaked_blocks)}, free errors {seg.free_errors}"
                )
                for leak in failing[:10]:
                    out.append(f"    leak: {human(leak.bytes)} in {_blocks(leak.blocks)} at {leak.key()}")
        if report.heap and report.heap.get("largest_free") is not None:
            h = report.heap
            out.append("")
            out.append(st.head("HEAP"))
            out.append(
                f"  size {h['size']}, free {h['free']}, largest free block {h['largest_free']}, "
                f"free blocks {h['free_blocks']}, lowest free {h['min_free']}, fragmentation {h['fragmentation_permille']}/1000"
            )
        if report.temporary_sites:
            out.append("")
            out.append(st.head(f"TEMPORARY ALLOCATIONS: {s['temporary']:,}") + st.dim(" (freed with no allocation in between)"))
            for p in report.temporary_sites[:5]:
                out.append(f"{p.blocks:,} of {p.allocations:,} allocations")
                out.extend(_stack_lines(p.stack[:3], p.site))
        if report.histogram:
            out.append("")
            out.append(st.head("ALLOCATION SIZES"))
            most = max(b["count"] for b in report.histogram)
            for b in report.histogram:
                low = b["min"]
                label = "0" if low == 0 else (f"{low}" if low == 1 else f"{low}-{2 * low - 1}")
                bar = "#" * max(1, round(b["count"] * 40 / most))
                out.append(f"  {label:>21} {b['count']:>12,} {bar}")
        if report.top_allocators:
            out.append("")
            out.append(st.head("MOST ALLOCATED"))
            for p in report.top_allocators[:5]:
                out.append(f"{human(p.bytes)} in {p.allocations:,} allocations")
                out.extend(_stack_lines(p.stack[:3], p.site))

    out.append("")
    failing = [k for k in report.fail_on if counts[k]]
    if failing:
        out.append(st.bad("RESULT: FAIL (" + ", ".join(f"{k}: {counts[k]}" for k in failing) + ")"))
    else:
        out.append(st.good("RESULT: OK"))
    return "\n".join(out) + "\n"
