"""End to end under QEMU: the example firmware (examples/firmware) runs on
qemu-system-arm -M mps2-an385 in its three variants; its logs are captured
with `heaptrail capture` (UART text over TCP, UART binary from a file, RTT
over the gdbstub) and checked line by line, event by event, and through
`heaptrail report` when the analyser is in the build.

Configured by meson through the environment (see tests/board/meson.build).
Exit 77 (skip) only when the cross compiler or QEMU is missing.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import unittest
from typing import Dict, List, Optional, Tuple

ENV = os.environ
QEMU = ENV.get("HTR_QEMU", "")
FW = {name: ENV.get("HTR_FW_" + name.upper().replace("-", "_"), "")
      for name in ("text-uart", "bin-uart", "bin-rtt", "bin-rtt-small")}
DECODE = ENV.get("HTR_DECODE", "")
LAUNCHER = ENV.get("HTR_LAUNCHER", "")
SOURCE = ENV.get("HTR_FW_SOURCE", "")
NM = ENV.get("HTR_ARM_NM", "")
QEMU_TIMEOUT = 60

MARKS = ["boot", "test_config", "test_buffers", "test_misuse", "test_churn", "end"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def qemu_cmd(elf: str, *extra: str) -> List[str]:
    return [QEMU, "-M", "mps2-an385", "-nographic", "-monitor", "none",
            "-semihosting-config", "enable=on,target=native", "-kernel", elf, *extra]


def heaptrail(*args: str, timeout: float = QEMU_TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run([LAUNCHER, *args], capture_output=True, timeout=timeout)


def expected_lines() -> Dict[str, int]:
    """'leak 64' -> line number, from the firmware's "expect:" tags."""
    tags = {}
    with open(SOURCE, encoding="utf-8") as f:
        for number, text in enumerate(f, 1):
            m = re.search(r"/\* expect: ([a-z-]+(?: \d+)?) \*/", text)
            if m:
                tags[m.group(1)] = number
    return tags


# The text grammar of docs/board-wire.md, one pattern per verb.
SITE = r"(?:[^;\n]+:\d+)"
TAIL = r";seq=(\d+);pc=0x[0-9a-f]+"
TEXT_GRAMMAR = [
    ("init", re.compile(r"==MP init;0x[0-9a-f]+;0x[0-9a-f]+;seq=(\d+)")),
    ("alloc", re.compile(r"==MP alloc;(\d+);(0x[0-9a-f]+);(" + SITE + ")" + TAIL + r"(;re=1)?")),
    ("persist", re.compile(r"==MP persist;(\d+);(0x[0-9a-f]+);(" + SITE + ")" + TAIL)),
    ("free", re.compile(r"==MP free;(0x[0-9a-f]+);(" + SITE + ")" + TAIL + r"(;re=1|;err=double|;err=invalid)?")),
    ("mark", re.compile(r"==HT mark;([^;\n]*);seq=(\d+)")),
    ("drop", re.compile(r"==HT drop;count=(\d+);seq=(\d+)")),
    ("check", re.compile(r"==HT check;seq=(\d+);live=(\d+);bytes=(\d+);heap=(\d+);free=(\d+);largest=(\d+);"
                         r"fblocks=(\d+);minfree=(\d+)")),
]


def parse_text(data: bytes) -> List[Tuple[str, re.Match]]:
    out = []
    for line in data.decode("ascii").splitlines():
        for verb, pattern in TEXT_GRAMMAR:
            m = pattern.fullmatch(line)
            if m:
                out.append((verb, m))
                break
        else:
            raise AssertionError(f"line outside the text grammar: {line!r}")
    return out


def text_events(parsed: List[Tuple[str, re.Match]]) -> List[Tuple]:
    """Heap events of a text log as (verb, size, ptr, site); a refused free
    is ("double"|"invalid", None, ptr, site)."""
    events = []
    for verb, m in parsed:
        if verb in ("alloc", "persist"):
            events.append((verb, int(m.group(1)), m.group(2), m.group(3)))
        elif verb == "free":
            err = m.group(4) or ""
            kind = "double" if "double" in err else "invalid" if "invalid" in err else "free"
            events.append((kind, None, m.group(1), m.group(2)))
        elif verb == "mark":
            events.append(("mark", None, None, m.group(1)))
    return events


def decode(path: str) -> List[str]:
    r = subprocess.run([DECODE, path], capture_output=True, timeout=30, check=True)
    return r.stdout.decode().splitlines()


DECODED = re.compile(r"(\w+) (.*?)(?: seq=(\d+))? @(\d+)")


def binary_events(lines: List[str]) -> List[Tuple]:
    """The decoder's lines as text_events() tuples; a realloc becomes the
    free + alloc pair the text encoding writes."""
    events = []
    for line in lines:
        m = DECODED.fullmatch(line)
        if not m:
            continue
        kind, rest = m.group(1), m.group(2).split()
        if kind == "alloc":
            events.append(("alloc", int(rest[0]), rest[1], rest[2]))
        elif kind == "persist":
            events[-1] = ("persist", int(rest[0]), rest[1], rest[2])
        elif kind == "free":
            events.append(("free", None, rest[0], rest[1]))
        elif kind == "misuse":
            events.append((rest[0], None, rest[1], rest[2]))
        elif kind == "realloc":
            old, new, size, site = rest[0], rest[1], int(rest[2]), rest[3]
            if old != "0x0":
                events.append(("free", None, old, site))
            events.append(("alloc", size, new, site))
        elif kind == "mark":
            events.append(("mark", None, None, rest[0]))
    return events


def normalise(events: List[Tuple]) -> List[Tuple]:
    """Renames pointers by order of first appearance, so runs whose heap
    sits elsewhere in RAM compare equal."""
    names: Dict[str, str] = {"0x0": "NULL"}
    out = []
    for verb, size, ptr, site in events:
        if ptr is not None and ptr not in names:
            names[ptr] = f"P{len(names)}"
        out.append((verb, size, names.get(ptr) if ptr else None, site))
    return out


def replay(events: List[Tuple]) -> Tuple[Dict[str, Tuple[int, str]], List[Tuple[str, str]], Dict[str, int]]:
    """valground's view: live blocks, refused frees, persistent blocks."""
    live: Dict[str, Tuple[int, str]] = {}
    errors = []
    persistent = {}
    for verb, size, ptr, site in events:
        if verb in ("alloc", "persist") and ptr != "0x0":
            live[ptr] = (size, site)
            if verb == "persist":
                persistent[ptr] = size
        elif verb == "free":
            assert ptr in live, f"free of {ptr} that is not live"
            del live[ptr]
            persistent.pop(ptr, None)
        elif verb in ("double", "invalid"):
            assert ptr not in live, f"refused free of live block {ptr}"
            errors.append((verb, site))
    return live, errors, persistent


class Captures:
    dir: str
    text: bytes
    binary: bytes
    rtt: bytes
    rtt_report: Optional[dict]


CAP = Captures()


def run_captures() -> None:
    CAP.dir = tempfile.mkdtemp(prefix="htr-e2e-")
    # 1. Text over UART, captured from QEMU's TCP serial server.
    port = free_port()
    text_path = os.path.join(CAP.dir, "text.cap")
    qemu = subprocess.Popen(qemu_cmd(FW["text-uart"], "-serial", f"tcp:127.0.0.1:{port},server=on,wait=on"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    cap = heaptrail("capture", "--tcp", f"127.0.0.1:{port}", "-o", text_path, "--quiet")
    rc = qemu.wait(timeout=QEMU_TIMEOUT)
    assert cap.returncode == 0, cap.stderr.decode()
    assert rc == 0, f"text firmware exited {rc}: {qemu.stderr.read().decode() if qemu.stderr else ''}"
    with open(text_path, "rb") as f:
        CAP.text = f.read()
    # 2. Binary over UART (TX ring drained by the UART interrupt), to a file.
    bin_raw = os.path.join(CAP.dir, "bin.raw")
    r = subprocess.run(qemu_cmd(FW["bin-uart"], "-serial", f"file:{bin_raw}"), capture_output=True,
                       timeout=QEMU_TIMEOUT)
    assert r.returncode == 0, f"binary firmware exited {r.returncode}: {r.stderr.decode()}"
    bin_path = os.path.join(CAP.dir, "bin.cap")
    cap = heaptrail("capture", "--file", bin_raw, "-o", bin_path, "--quiet")
    assert cap.returncode == 0, cap.stderr.decode()
    with open(bin_path, "rb") as f:
        CAP.binary = f.read()
    # 3. Binary into RTT, read over QEMU's gdbstub; the report straight after.
    port = free_port()
    rtt_path = os.path.join(CAP.dir, "rtt.cap")
    qemu = subprocess.Popen(qemu_cmd(FW["bin-rtt"], "-serial", "null", "-gdb", f"tcp:127.0.0.1:{port}", "-S"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    args = ["capture", "--gdb", f"127.0.0.1:{port}", "--elf", FW["bin-rtt"], "-o", rtt_path, "--quiet"]
    if report_available():
        args += ["--report", "--report-format", "json"]
    cap = heaptrail(*args)
    rc = qemu.wait(timeout=QEMU_TIMEOUT)
    assert rc == 0, f"RTT firmware exited {rc}"
    # With --report the status is the report's: 1 means findings (planted).
    assert cap.returncode in ((0, 1) if report_available() else (0,)), cap.stderr.decode()
    CAP.rtt_report = json.loads(cap.stdout) if report_available() else None
    with open(rtt_path, "rb") as f:
        CAP.rtt = f.read()
    # 4. RTT with a buffer far too small: skip mode drops records.
    port = free_port()
    small_path = os.path.join(CAP.dir, "rtt-small.cap")
    qemu = subprocess.Popen(qemu_cmd(FW["bin-rtt-small"], "-serial", "null", "-gdb", f"tcp:127.0.0.1:{port}", "-S"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    cap = heaptrail("capture", "--gdb", f"127.0.0.1:{port}", "--elf", FW["bin-rtt-small"], "-o", small_path,
                    "--quiet")
    rc = qemu.wait(timeout=QEMU_TIMEOUT)
    assert rc == 0, f"small-RTT firmware exited {rc}"
    assert cap.returncode == 0, cap.stderr.decode()


_REPORT: List[bool] = []


def report_available() -> bool:
    """Whether this build's `heaptrail` has the report subcommand (the
    analyser is developed alongside)."""
    if not _REPORT:
        r = subprocess.run([LAUNCHER, "report", "--help"], capture_output=True, timeout=30)
        _REPORT.append(r.returncode == 0)
    return _REPORT[0]


def report(capture: bytes, name: str, elf: str) -> dict:
    path = os.path.join(CAP.dir, name)
    with open(path, "wb") as f:
        f.write(capture)
    r = heaptrail("report", "--format", "json", path, "--elf", elf)
    assert r.returncode in (0, 1), r.stderr.decode()
    return json.loads(r.stdout)


class TextOverUart(unittest.TestCase):
    def test_every_line_follows_the_grammar_and_numbers_run_on(self) -> None:
        parsed = parse_text(CAP.text)
        seqs = [int(re.search(r";seq=(\d+)", m.group(0)).group(1)) for _, m in parsed]
        self.assertEqual(seqs, list(range(len(seqs))))
        self.assertEqual(parsed[0][0], "init")
        self.assertEqual([m.group(1) for v, m in parsed if v == "mark"], MARKS)
        self.assertNotIn("drop", [v for v, _ in parsed])

    def test_planted_bugs_at_their_lines(self) -> None:
        tags = expected_lines()
        text = CAP.text.decode()

        def one(pattern: str) -> re.Match:
            found = re.findall(pattern, text, re.M)
            self.assertEqual(len(found), 1, pattern)
            return re.search(pattern, text, re.M)

        one(r"^==MP alloc;64;0x[0-9a-f]+;[^;]*main\.c:%d;seq=\d+;pc=0x[0-9a-f]+$" % tags["leak 64"])
        one(r"^==MP alloc;24;0x[0-9a-f]+;[^;]*main\.c:%d;seq=\d+;pc=0x[0-9a-f]+$" % tags["leak 24"])
        one(r"^==MP persist;256;0x[0-9a-f]+;[^;]*main\.c:%d;seq=\d+;pc=0x[0-9a-f]+$" % tags["persistent 256"])
        double = one(r"^==MP free;(0x[0-9a-f]+);[^;]*main\.c:%d;seq=\d+;pc=0x[0-9a-f]+;err=double$"
                     % tags["double-free"])
        # The refused pointer is the block freed just before, and still free.
        self.assertEqual(len(re.findall(r"^==MP free;%s;[^;]*main\.c:%d;" % (double.group(1), tags["double-free"] - 1),
                                        text, re.M)), 1)
        one(r"^==MP free;0x[0-9a-f]+;[^;]*main\.c:%d;seq=\d+;pc=0x[0-9a-f]+;err=invalid$" % tags["invalid-free"])

    def test_valground_view(self) -> None:
        tags = expected_lines()
        live, errors, persistent = replay(text_events(parse_text(CAP.text)))
        leaks = sorted((size, site.rsplit("/", 1)[-1]) for ptr, (size, site) in live.items() if ptr not in persistent)
        self.assertEqual(leaks, sorted([(64, f"main.c:{tags['leak 64']}"), (24, f"main.c:{tags['leak 24']}")]))
        self.assertEqual(list(persistent.values()), [256])
        self.assertEqual([(k, s.rsplit("/", 1)[-1]) for k, s in errors],
                         [("double", f"main.c:{tags['double-free']}"), ("invalid", f"main.c:{tags['invalid-free']}")])
        checks = [m for v, m in parse_text(CAP.text) if v == "check"]
        last = checks[-1]
        self.assertEqual((int(last.group(2)), int(last.group(3))), (3, 256 + 64 + 24))
        init = re.match(r"==MP init;0x[0-9a-f]+;(0x[0-9a-f]+);", CAP.text.decode())
        self.assertEqual(int(last.group(4)), int(init.group(1), 16))


class BinaryOverUart(unittest.TestCase):
    def test_decodes_cleanly_and_matches_the_text_run(self) -> None:
        path = os.path.join(CAP.dir, "bin.cap")
        lines = decode(path)
        self.assertTrue(lines[-1].startswith("total records="), lines[-1])
        self.assertIn(" bad=0 lost=0 ", lines[-1])
        self.assertFalse([l for l in lines if l.startswith(("bad ", "loss ", "truncated "))])
        self.assertEqual(normalise(binary_events(lines)), normalise(text_events(parse_text(CAP.text))))

    def test_bytes_per_event(self) -> None:
        lines = decode(os.path.join(CAP.dir, "bin.cap"))
        offsets = {}
        events = 0
        for line in lines:
            m = DECODED.fullmatch(line)
            if not m:
                continue
            if m.group(1) == "mark":
                offsets[m.group(2)] = int(m.group(4))
            elif "test_churn" in offsets and "end" not in offsets and m.group(1) in ("alloc", "free"):
                events += 1
        churn_bytes = offsets["end"] - offsets["test_churn"]
        per_event = churn_bytes / events
        text_lines = CAP.text.decode().splitlines()
        start = next(i for i, l in enumerate(text_lines) if l.startswith("==HT mark;test_churn;"))
        end = next(i for i, l in enumerate(text_lines) if l.startswith("==HT mark;end;"))
        text_bytes = sum(len(l) + 1 for l in text_lines[start:end])
        print(f"\nchurn segment: {events} alloc/free events; binary {churn_bytes} B = {per_event:.2f} B/event "
              f"(mark and checkpoints included); text {text_bytes} B = {text_bytes / events:.1f} B/event; "
              f"whole run: binary {len(CAP.binary)} B, text {len(CAP.text)} B")
        self.assertEqual(events, 2 * 500)
        self.assertLessEqual(per_event, 8.0)

    def test_cut_bytes_are_reported_lost_and_nothing_invented(self) -> None:
        lines = decode(os.path.join(CAP.dir, "bin.cap"))
        frames = []  # (offset, seq, line) of heap events
        for line in lines:
            m = DECODED.fullmatch(line)
            if m and m.group(3) is not None:
                frames.append((int(m.group(4)), int(m.group(3)), line))
        data = CAP.binary
        cut_at, cut_len = len(data) * 2 // 3, 61
        cut = data[:cut_at] + data[cut_at + cut_len:]
        path = os.path.join(CAP.dir, "cut.cap")
        with open(path, "wb") as f:
            f.write(cut)
        got = decode(path)
        offsets = sorted({o for o, _, _ in frames})
        touched = set()
        for i, start in enumerate(offsets):
            end = offsets[i + 1] if i + 1 < len(offsets) else len(data)
            if start < cut_at + cut_len and end > cut_at:
                touched.add(start)
        lost_seqs = {s for o, s, _ in frames if o in touched}
        loss = sum(int(l.split()[1]) for l in got if l.startswith("loss "))
        self.assertIn(loss, (len(lost_seqs), len(lost_seqs) + 1))
        self.assertGreater(loss, 3)
        kept = [DECODED.fullmatch(l) for l in got]
        kept_seqs = {int(m.group(3)) for m in kept if m and m.group(3) and m.group(1) not in ("loss", "bad")}
        self.assertFalse(kept_seqs & lost_seqs, "events decoded from the lost range")
        # Everything else is exactly what the intact stream said, except that
        # an alloc or free sent as "same site as the latest one" soon after
        # the cut may have lost the record that named its site: it then has
        # none. The site is named again after at most 8 such records of a
        # kind, each within 4 records of the last (lib/board/wire.h).
        intact = {(int(m.group(3)), m.group(1)): re.sub(r" @\d+$", "", l) for l in lines
                  if (m := DECODED.fullmatch(l)) and m.group(3) and m.group(1) != "loss"}
        site = re.compile(r" \S+:\d+ pc=0x[0-9a-f]+")
        unsited = 0
        for l in got:
            m = DECODED.fullmatch(l)
            if m and m.group(3) and m.group(1) not in ("loss", "bad"):
                want = intact[(int(m.group(3)), m.group(1))]
                line = re.sub(r" @\d+$", "", l)
                if line != want and m.group(1) in ("alloc", "free") and int(m.group(3)) <= max(lost_seqs) + 32:
                    want = site.sub(" ?:0 pc=0x0", want, count=1)
                    unsited += 1
                self.assertEqual(line, want)
        self.assertLessEqual(unsited, 16)

    def test_no_newlib_malloc_in_any_image(self) -> None:
        for name, elf in FW.items():
            syms = subprocess.run([NM, elf], capture_output=True, check=True).stdout.decode().split()
            for banned in ("malloc", "_malloc_r", "free", "_free_r", "calloc", "realloc"):
                self.assertNotIn(banned, syms, f"{name} links newlib's {banned}")


class BinaryOverRtt(unittest.TestCase):
    def test_rtt_stream_equals_the_uart_stream(self) -> None:
        lines = decode(os.path.join(CAP.dir, "rtt.cap"))
        self.assertIn(" bad=0 lost=0 ", lines[-1])
        uart = decode(os.path.join(CAP.dir, "bin.cap"))
        self.assertEqual(normalise(binary_events(lines)), normalise(binary_events(uart)))
        # The tail made it out before the firmware exited: the final
        # checkpoint (timestamps differ between runs, so lengths may too).
        self.assertTrue(lines[-2].startswith("check live=3 bytes=344 "), lines[-2])


class RttSkipModeLoss(unittest.TestCase):
    def test_drops_are_reported_in_band_and_add_up(self) -> None:
        lines = decode(os.path.join(CAP.dir, "rtt-small.cap"))
        total = re.fullmatch(r"total records=(\d+) bad=(\d+) lost=(\d+) bytes=\d+", lines[-1])
        records, bad, lost = (int(total.group(i)) for i in (1, 2, 3))
        self.assertEqual(bad, 0)
        self.assertGreater(lost, 100)
        self.assertTrue([l for l in lines if l.startswith("loss ") and " kind=2 " in l], "no DROP-record loss")
        # The closing checkpoint got through with the real totals, and every
        # record the target numbered is either decoded or counted lost.
        final = DECODED.fullmatch(lines[-2])
        self.assertTrue(lines[-2].startswith("check live=3 bytes=344 "), lines[-2])
        self.assertEqual(records + lost, int(final.group(3)) + 1)
        # Nothing decoded twice, nothing invented: sequence numbers rise.
        seqs = [int(m.group(3)) for l in lines if (m := DECODED.fullmatch(l)) and m.group(3)
                and m.group(1) not in ("loss", "persist")]
        self.assertEqual(seqs, sorted(set(seqs)))

    def test_report_counts_the_loss(self) -> None:
        if not report_available():
            self.skipTest("heaptrail report is not in this build")
        with open(os.path.join(CAP.dir, "rtt-small.cap"), "rb") as f:
            rep = report(f.read(), "rtt-small-copy.cap", FW["bin-rtt-small"])
        lines = decode(os.path.join(CAP.dir, "rtt-small.cap"))
        lost = int(re.search(r"lost=(\d+)", lines[-1]).group(1))
        self.assertEqual([i["lost_events"] for i in rep["inputs"]], [lost])


class Report(unittest.TestCase):
    def setUp(self) -> None:
        if not report_available():
            self.skipTest("heaptrail report is not in this build")

    def check(self, rep: dict) -> None:
        tags = expected_lines()
        leaks = sorted((l["bytes"], l["blocks"], l["site"].rsplit("/", 1)[-1]) for l in rep["leaks"])
        self.assertEqual(leaks, sorted([(64, 1, f"main.c:{tags['leak 64']}"), (24, 1, f"main.c:{tags['leak 24']}")]))
        for leak in rep["leaks"]:
            self.assertTrue(leak["stack"], "board leaks carry the caller PC frame")
            self.assertEqual(leak["stack"][0]["line"], int(leak["site"].rsplit(":", 1)[1]))
        errors = sorted((e["kind"], e["site"].rsplit("/", 1)[-1]) for e in rep["free_errors"])
        self.assertEqual(errors, [("double-free", f"main.c:{tags['double-free']}"),
                                  ("invalid-free", f"main.c:{tags['invalid-free']}")])
        self.assertEqual([p["bytes"] for p in rep["persistent"]], [256])
        self.assertEqual([i["lost_events"] for i in rep["inputs"]], [0])
        init = re.match(r"==MP init;0x[0-9a-f]+;(0x[0-9a-f]+);", CAP.text.decode())
        self.assertEqual(rep["heap"]["size"], int(init.group(1), 16))
        self.assertEqual(rep["heap"]["check_mismatches"], 0)
        # Utilisation: what the firmware's last checkpoint says of its heap,
        # and the peak as a share of it.
        check = [line for line in CAP.text.decode().splitlines() if line.startswith("==HT check;")][-1]
        fields = dict(kv.split("=", 1) for kv in check.split(";")[1:])
        heap = rep["heap"]
        self.assertEqual(heap["free"], int(fields["free"]))
        self.assertEqual(heap["largest_free"], int(fields["largest"]))
        self.assertEqual(heap["free_blocks"], int(fields["fblocks"]))
        self.assertEqual(heap["min_free"], int(fields["minfree"]))
        free, largest = int(fields["free"]), int(fields["largest"])
        self.assertEqual(heap["fragmentation_permille"], 1000 - largest * 1000 // free)
        self.assertGreater(rep["summary"]["peak_bytes"], 0)
        self.assertEqual(heap["peak_percent"], round(rep["summary"]["peak_bytes"] * 100 / heap["size"], 2))

    def test_text_capture(self) -> None:
        self.check(report(CAP.text, "text.cap", FW["text-uart"]))

    def test_binary_capture(self) -> None:
        self.check(report(CAP.binary, "bin.cap", FW["bin-uart"]))

    def test_rtt_capture_streamed_into_report(self) -> None:
        self.assertIsNotNone(CAP.rtt_report)
        self.check(CAP.rtt_report)


def main() -> int:
    missing = [what for what, path in (("arm-none-eabi-gcc (firmware not built)", FW["text-uart"]),
                                       ("qemu-system-arm", QEMU)) if not path]
    if missing:
        print(f"SKIP: {' and '.join(missing)} not found; install with scripts/setup-deps")
        return 77
    import shutil

    try:
        run_captures()
        result = unittest.main(argv=[sys.argv[0], "-v"], exit=False).result
    finally:
        if getattr(CAP, "dir", None) and not os.environ.get("HTR_KEEP"):
            shutil.rmtree(CAP.dir, ignore_errors=True)
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
