"""valground ==MP logs: golden reports and parity with valground's counting
rules, re-implemented here from their description (not from its code)."""

from __future__ import annotations

import os
import re
import tempfile
import unittest
from typing import Any

import helpers
from helpers import GOLDEN, golden, report_json, run_heaptrail

LOG = os.path.join("golden", "valground_tests.log")
CLEAN = os.path.join("golden", "valground_clean.log")


def valground_rules(path: str) -> dict[str, Any]:
    """valground's counting, as documented: a pytest test-name line starts a
    test (a new segment; the heap and its live blocks carry on); `init`
    starts a new heap (a new segment; the blocks still live are leaks, and
    the previous segment's summary is printed); alloc and persist add to the
    totals (ptr 0x0 included: a failed allocation counts in "Total
    overtime" and as an allocation; it never becomes live); a free of a
    pointer not live is a free error; a block is a leak of the segment that
    allocated it when its heap ends with it still live, unless persistent;
    exit 1 if any segment had leaks or errors. Max overtime is the highest
    live byte count of the heap while the segment lasts."""
    segments: list[dict[str, Any]] = []
    test = ""
    heap = 0
    live: dict[int, tuple[int, bool, int]] = {}  # ptr -> size, persistent, segment
    current = 0

    def new_segment() -> dict[str, Any]:
        seg = {"name": test, "total": 0, "max": current, "heap": heap, "errors": 0, "allocs": 0,
               "leaked_blocks": 0, "leaked_bytes": 0}
        segments.append(seg)
        return seg

    def end_heap() -> None:
        nonlocal current
        for size, pers, seg in live.values():
            if not pers:
                segments[seg]["leaked_blocks"] += 1
                segments[seg]["leaked_bytes"] += size
        live.clear()
        current = 0

    cur = new_segment()
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    for line in lines:
        m = re.search(r"==MP (\w+);(.*)$", line)
        words = line.split()
        if words and ".py::" in words[0] and words[0] != test:
            test = words[0]
            cur = new_segment()
        if m is None:
            continue
        op, fields = m.group(1), m.group(2).split(";")
        if op == "init":
            end_heap()
            heap = int(fields[1], 0)
            if cur["allocs"] or cur["errors"] or any(s is cur for s in segments if s["leaked_blocks"]):
                cur = new_segment()
            else:
                cur["heap"] = heap
                cur["max"] = 0
            continue
        if op in ("alloc", "persist"):
            size, ptr = int(fields[0], 0), int(fields[1], 16)
            cur["total"] += size
            cur["allocs"] += 1
            if ptr:
                live[ptr] = (size, op == "persist", segments.index(cur))
                current += size
                cur["max"] = max(cur["max"], current)
        elif op == "free":
            ptr = int(fields[0], 16)
            if ptr in live:
                current -= live.pop(ptr)[0]
            elif ptr:
                cur["errors"] += 1
    end_heap()
    # A segment where nothing happened is not reported.
    segments = [s for s in segments if s["allocs"] or s["errors"] or s["leaked_blocks"]]
    status = 1 if any(s["leaked_blocks"] or s["errors"] for s in segments) else 0
    return {"segments": segments, "status": status}


class ValgroundParity(unittest.TestCase):
    def check_parity(self, path: str) -> None:
        expected = valground_rules(path)
        status, doc, err = report_json([path])
        self.assertEqual(err, "")
        self.assertEqual(status, expected["status"])
        got = doc["segments"]
        self.assertEqual(len(got), len(expected["segments"]))
        for g, e in zip(got, expected["segments"]):
            with self.subTest(segment=e["name"]):
                self.assertEqual(g["name"], e["name"])
                self.assertEqual(g["total_bytes"], e["total"], "Total overtime")
                self.assertEqual(g["peak_bytes"], e["max"], "Max overtime")
                self.assertEqual(g["allocations"], e["allocs"])
                self.assertEqual(g["free_errors"], e["errors"])
                self.assertEqual(g["leaked_blocks"], e["leaked_blocks"])
                self.assertEqual(g["leaked_bytes"], e["leaked_bytes"])
                if e["heap"]:
                    self.assertEqual(g["percent_full"], round(e["max"] * 100.0 / e["heap"], 2), "% full")

    def test_parity_tests_log(self) -> None:
        self.check_parity(LOG)

    def test_parity_clean_log(self) -> None:
        self.check_parity(CLEAN)

    def test_hand_computed(self) -> None:
        """Numbers worked out by hand from golden/valground_tests.log."""
        status, doc, _ = report_json([LOG])
        self.assertEqual(status, 1)
        segs = doc["segments"]
        self.assertEqual([s["name"] for s in segs], [
            "tests/test_sign.py::test_sign_tx[nanox]",  # first heap
            "tests/test_sign.py::test_sign_tx[nanox]",  # init reset inside the test
            "tests/test_sign.py::test_reject[nanox]",
            "tests/test_sign.py::test_clean[nanox]",
            "tests/test_more.py::test_no_init_a",  # no init: the heap carries on
            "tests/test_more.py::test_no_init_b",
        ])
        first = segs[0]
        # 128 + 64 + 256 (persist) + 9000 (failed) + 32
        self.assertEqual(first["total_bytes"], 9480)
        # live: 128+64+256 = 448 before the free; 64+256+32 = 352 after
        self.assertEqual(first["peak_bytes"], 448)
        self.assertEqual(first["percent_full"], 5.47)
        self.assertEqual(first["failed_allocations"], 1)
        self.assertEqual((first["leaked_blocks"], first["leaked_bytes"]), (2, 96))
        self.assertEqual(first["persistent_blocks"], 1)
        self.assertEqual(sorted(leak["site"] for leak in first["leaks"]), ["src/parser.c:100"])
        self.assertEqual(first["leaks"][0]["addresses"], ["0xda7a00a0", "0xda7a0210"])
        second = segs[1]
        self.assertEqual((second["total_bytes"], second["peak_bytes"], second["leaked_blocks"]), (16, 16, 0))
        reject = segs[2]
        self.assertEqual(reject["free_errors"], 2)
        kinds = sorted((e["kind"], e["site"]) for e in doc["free_errors"])
        self.assertEqual(kinds, [("double-free", "src/handler.c:61"), ("invalid-free", "src/ui.c:12")])
        double = [e for e in doc["free_errors"] if e["kind"] == "double-free"][0]
        self.assertEqual(double["alloc_site"], "src/handler.c:42")
        self.assertEqual(double["free_site"], "src/handler.c:60")
        self.assertEqual(double["segment"], "tests/test_sign.py::test_reject[nanox]")
        clean = segs[3]
        self.assertEqual((clean["total_bytes"], clean["peak_bytes"], clean["percent_full"]), (2048, 2048, 50.0))
        # A block from test a freed in test b is no leak; the one never freed
        # is test a's leak, found when the heap ends (end of log).
        a, b = segs[4], segs[5]
        self.assertEqual((a["total_bytes"], a["peak_bytes"], a["leaked_bytes"]), (48, 48, 8))
        self.assertEqual((b["total_bytes"], b["peak_bytes"], b["leaked_bytes"], b["free_errors"]), (4, 48, 0, 0))
        s = doc["summary"]
        self.assertEqual(s["allocations"], 9 + 3)
        self.assertEqual(s["total_bytes"], 9480 + 16 + 200 + 2048 + 52)
        self.assertEqual(s["failed_allocations"], 1)
        self.assertEqual(s["leaked_bytes"], 96 + 8)
        self.assertEqual(s["free_errors"], 2)
        self.assertEqual(s["peak_bytes"], 2048)
        self.assertEqual(doc["heap"]["size"], 4096)
        self.assertEqual(doc["inputs"][0]["format"], "valground")

    def test_clean_log_exits_zero(self) -> None:
        status, doc, _ = report_json([CLEAN])
        self.assertEqual(status, 0)
        self.assertEqual(doc["leaks"], [])
        self.assertEqual(doc["persistent"][0]["bytes"], 50)

    def test_summary_line_does_not_start_a_test(self) -> None:
        """"FAILED x.py::y" in pytest's summary names an old test: no segment."""
        _, doc, _ = report_json([LOG])
        self.assertEqual(sum(1 for s in doc["segments"] if s["kind"] == "test" and s["allocations"] == 0), 0)

    def test_test_id_and_output_on_one_line(self) -> None:
        """pytest -v -s: "tests/t.py::test_b[nanos] seproxyhal: printf: ==MP init;..."."""
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "x.log")
            with open(path, "w", encoding="utf-8") as handle:
                handle.write("tests/t.py::test_a[nanos] seproxyhal: printf: ==MP init;0x1000;100\n"
                             "seproxyhal: printf: ==MP alloc;8;0x1010;a.c:1\n"
                             "PASSED\n"
                             "tests/t.py::test_b[nanos] seproxyhal: printf: ==MP init;0x1000;100\n"
                             "seproxyhal: printf: ==MP alloc;9;0x1010;a.c:2\n"
                             "seproxyhal: printf: ==MP free;0x1010;a.c:3\n"
                             "PASSED\n")
            status, doc, _ = report_json([path])
            self.assertEqual(status, 1)
            self.assertEqual([(s["name"], s["leaked_bytes"], s["total_bytes"]) for s in doc["segments"]],
                             [("tests/t.py::test_a[nanos]", 8, 8), ("tests/t.py::test_b[nanos]", 0, 9)])
            self.assertEqual(self.rules_segments(path), [("tests/t.py::test_a[nanos]", 8, 8), ("tests/t.py::test_b[nanos]", 0, 9)])

    @staticmethod
    def rules_segments(path: str) -> list[tuple[str, int, int]]:
        return [(s["name"], s["leaked_bytes"], s["total"]) for s in valground_rules(path)["segments"]]

    def test_0x0x_pointer_and_crlf(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "x.log")
            with open(path, "w", encoding="utf-8", newline="") as handle:
                handle.write("==MP alloc;8;0x0x1000;a.c:1\r\n==MP free;0x0x1000;a.c:2\r\n")
            status, doc, _ = report_json([path])
            self.assertEqual(status, 0)
            self.assertEqual(doc["summary"]["frees"], 1)

    def test_random_churn_against_reference(self) -> None:
        """200k random operations over 3000 pointers chosen to collide in
        the live table; the engine must agree with a dict on every count."""
        import random

        rng = random.Random(1234)
        pool = [0x20000000 + k * 0x100000 for k in range(3000)]
        live: dict[int, int] = {}
        cur = peak = total = allocs = errors = frees = 0
        lines = ["==MP init;0x20000000;4000000000"]
        for _ in range(200_000):
            ptr = rng.choice(pool)
            if ptr in live and rng.random() < 0.9:
                cur -= live.pop(ptr)
                frees += 1
                lines.append(f"==MP free;0x{ptr:x};f.c:1")
            elif ptr not in live and rng.random() < 0.03:
                errors += 1
                lines.append(f"==MP free;0x{ptr:x};f.c:2")
            elif ptr not in live:
                size = rng.randrange(1, 5000)
                live[ptr] = size
                cur += size
                total += size
                allocs += 1
                peak = max(peak, cur)
                lines.append(f"==MP alloc;{size};0x{ptr:x};a.c:{size % 7}")
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "r.log")
            with open(path, "w", encoding="utf-8") as handle:
                handle.write("\n".join(lines) + "\n")
            status, doc, err = report_json([path])
        s = doc["summary"]
        self.assertEqual(err, "")
        self.assertEqual((s["allocations"], s["frees"], s["total_bytes"], s["peak_bytes"]), (allocs, frees, total, peak))
        self.assertEqual((s["leaked_blocks"], s["leaked_bytes"]), (len(live), sum(live.values())))
        self.assertEqual(s["free_errors"], errors)
        self.assertEqual(status, 1)

    def test_golden_text(self) -> None:
        proc = run_heaptrail(["report", "--no-symbols", "--color", "never", LOG])
        self.assertEqual(proc.returncode, 1)
        golden(self, "valground_tests.txt", proc.stdout)

    def test_golden_json(self) -> None:
        proc = run_heaptrail(["report", "--no-symbols", "--format", "json", LOG])
        golden(self, "valground_tests.json", proc.stdout)


if __name__ == "__main__":
    os.chdir(helpers.HERE)
    unittest.main()
