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


SPECULOS = "seproxyhal: printf: ==MP "


def valground_rules(path: str) -> dict[str, Any]:
    """valground's rules, re-implemented here from their description:
    only lines that start with "seproxyhal: printf: ==MP " count; a line
    holding "test_", "::" and "[" names the test (its first word) and does
    not end anything; `init` ends the current heap (its summary: leaks are
    the blocks still in the table, persistent ones excepted) and starts a
    new one named after the current test; alloc and persist enter the table
    (ptr 0x0 included, replacing an earlier 0x0 entry) and add their size to
    the allocation count, the total ("Total overtime") and the running
    usage, whose highest value is "Max overtime" (% full = Max overtime *
    100 / heap size); a free of a pointer in the table removes it and its
    size from the usage, any other free is a free error; exit 1 when any
    heap had a leak or a free error."""
    segments: list[dict[str, Any]] = []
    test = ""
    cur: dict[str, Any] | None = None
    table: dict[int, tuple[int, bool]] = {}

    def close() -> None:
        if cur is None:
            return
        cur["leaked_blocks"] = sum(1 for size, pers in table.values() if not pers)
        cur["leaked_bytes"] = sum(size for size, pers in table.values() if not pers)
        segments.append(cur)

    with open(path, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    for line in lines:
        line = line.rstrip()
        if "test_" in line and "::" in line and "[" in line:
            test = line.split(" ")[0]
            continue
        if not line.startswith(SPECULOS):
            continue
        op, *fields = line[len(SPECULOS):].split(";")
        if op == "init":
            close()
            table = {}
            cur = {"name": test, "total": 0, "current": 0, "max": 0, "heap": int(fields[1], 0), "errors": 0, "allocs": 0}
            continue
        assert cur is not None, "an allocation before any init"
        if op in ("alloc", "persist"):
            size, ptr = int(fields[0], 0), int(fields[1], 0)
            table[ptr] = (size, op == "persist")
            cur["current"] += size
            cur["max"] = max(cur["max"], cur["current"])
            cur["total"] += size
            cur["allocs"] += 1
        elif op == "free":
            ptr = int(fields[0], 0)
            if ptr in table:
                cur["current"] -= table.pop(ptr)[0]
            else:
                cur["errors"] += 1
    close()
    status = 1 if any(s["leaked_blocks"] or s["errors"] for s in segments) else 0
    # heaptrail lists no heap in which nothing happened.
    segments = [s for s in segments if s["allocs"] or s["errors"]]
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
                self.assertEqual(g["name"], e["name"] or "(whole run)")
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
        # One segment per heap (init); the test_more tests have no init of
        # their own, so they run on test_clean's heap, as in valground.
        self.assertEqual([s["name"] for s in segs], [
            "tests/test_sign.py::test_sign_tx[nanox]",
            "tests/test_sign.py::test_sign_tx[nanox]",  # init reset inside the test
            "tests/test_sign.py::test_reject[nanox]",
            "tests/test_sign.py::test_clean[nanox]",
        ])
        self.assertEqual({s["kind"] for s in segs}, {"init"})
        first = segs[0]
        # 128 + 64 + 256 (persist) + 9000 (failed, at 0x0) + 32
        self.assertEqual(first["total_bytes"], 9480)
        self.assertEqual(first["allocations"], 5)
        # usage: 448, 320 after the free, +9000 for the failed one (valground
        # keeps it in its table), +32
        self.assertEqual(first["peak_bytes"], 9352)
        self.assertEqual(first["percent_full"], 114.16)
        self.assertEqual(first["failed_allocations"], 1)
        # leaks: 64 + 32 from parser.c, and the failed allocation at 0x0
        self.assertEqual((first["leaked_blocks"], first["leaked_bytes"]), (3, 9096))
        self.assertEqual(first["persistent_blocks"], 1)
        by_site = {leak["site"]: leak for leak in first["leaks"]}
        self.assertEqual(by_site["src/parser.c:100"]["addresses"], ["0xda7a00a0", "0xda7a0210"])
        self.assertEqual(by_site["src/handler.c:77"]["addresses"], ["0x0"])
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
        # 1024 + 1024, then the test_more blocks: 40 + 8 + 4
        self.assertEqual((clean["total_bytes"], clean["peak_bytes"], clean["percent_full"]), (2100, 2048, 50.0))
        self.assertEqual((clean["leaked_blocks"], clean["leaked_bytes"]), (1, 8))
        self.assertEqual(clean["leaks"][0]["site"], "src/keep.c:2")
        s = doc["summary"]
        self.assertEqual(s["allocations"], 12)
        self.assertEqual(s["total_bytes"], 9480 + 16 + 200 + 2100)
        self.assertEqual(s["failed_allocations"], 1)
        self.assertEqual(s["leaked_bytes"], 9096 + 8)
        self.assertEqual(s["free_errors"], 2)
        self.assertEqual(s["peak_bytes"], 9352)  # valground's "Higher Max overtime"
        self.assertEqual(doc["heap"]["size"], 4096)
        self.assertEqual(doc["inputs"][0]["format"], "valground")

    def test_failed_allocation_freed_as_null(self) -> None:
        """valground matches a later free;0x0 with the failed allocation;
        without one, that free is a free error. Board lines (no Speculos
        prefix) treat 0x0 as a failed request only."""
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "x.log")
            with open(path, "w", encoding="utf-8") as handle:
                handle.write("seproxyhal: printf: ==MP init;0x1000;1000\n"
                             "seproxyhal: printf: ==MP alloc;500;0x0;a.c:1\n"
                             "seproxyhal: printf: ==MP alloc;300;0x0;a.c:2\n"
                             "seproxyhal: printf: ==MP free;0x0;a.c:3\n"
                             "seproxyhal: printf: ==MP free;0x0;a.c:4\n")
            status, doc, _ = report_json([path])
            seg = doc["segments"][0]
            # both failed sizes counted; the free takes the last one (300) off
            self.assertEqual((seg["total_bytes"], seg["peak_bytes"], seg["leaked_blocks"], seg["free_errors"]),
                             (800, 800, 0, 1))
            self.assertEqual(doc["free_errors"][0]["site"], "a.c:4")
            self.assertEqual(status, 1)
            self.check_parity(path)
            board = os.path.join(tmp, "b.log")
            with open(board, "w", encoding="utf-8") as handle:
                handle.write("==MP init;0x1000;1000;seq=0\n==MP alloc;500;0x0;a.c:1;seq=1\n==MP free;0x0;a.c:3;seq=2\n")
            status, doc, _ = report_json([board])
            seg = doc["segments"][0]
            self.assertEqual((seg["total_bytes"], seg["peak_bytes"], seg["leaked_blocks"], seg["free_errors"]), (500, 0, 0, 0))
            self.assertEqual(status, 0)

    def test_clean_log_exits_zero(self) -> None:
        status, doc, _ = report_json([CLEAN])
        self.assertEqual(status, 0)
        self.assertEqual(doc["leaks"], [])
        self.assertEqual(doc["persistent"][0]["bytes"], 50)

    def test_summary_line_does_not_name_a_heap(self) -> None:
        """"FAILED x.py::y[..]" in pytest's summary is not a test start."""
        _, doc, _ = report_json([LOG])
        self.assertNotIn("FAILED", {s["name"] for s in doc["segments"]})

    def test_test_names_the_next_heap(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "x.log")
            with open(path, "w", encoding="utf-8") as handle:
                handle.write("tests/t.py::test_a[nanos]\n"
                             "seproxyhal: printf: ==MP init;0x1000;100\n"
                             "seproxyhal: printf: ==MP alloc;8;0x1010;a.c:1\n"
                             "tests/t.py::test_b[nanos] PASSED\n"
                             "seproxyhal: printf: ==MP alloc;9;0x1020;a.c:2\n"
                             "seproxyhal: printf: ==MP init;0x1000;100\n"
                             "seproxyhal: printf: ==MP alloc;7;0x1010;a.c:3\n"
                             "seproxyhal: printf: ==MP free;0x1010;a.c:4\n")
            status, doc, _ = report_json([path])
            self.assertEqual(status, 1)
            got = [(s["name"], s["leaked_bytes"], s["total_bytes"]) for s in doc["segments"]]
            self.assertEqual(got, [("tests/t.py::test_a[nanos]", 17, 17), ("tests/t.py::test_b[nanos]", 0, 7)])
            self.check_parity(path)

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


class LeakAddresses(unittest.TestCase):
    """An aggregate shows the addresses of its first four leaked blocks, in
    allocation order: not the live table's order, which changes with its
    size (enough other live blocks here to make it grow several times)."""

    def test_first_four_allocated(self) -> None:
        leaked = [0x7000 + 0x40 * k for k in (9, 3, 7, 1, 8, 2)]
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "leaks.log")
            with open(path, "w", encoding="utf-8") as handle:
                handle.write("==MP init;0x10000000;100000000\n")
                for k in range(20_000):
                    handle.write(f"==MP alloc;8;0x{0x10000000 + 16 * k:x};src/other.c:1\n")
                    if k < len(leaked):
                        handle.write(f"==MP alloc;32;0x{leaked[k]:x};src/leak.c:7\n")
                for k in range(20_000):
                    handle.write(f"==MP free;0x{0x10000000 + 16 * k:x};src/other.c:2\n")
            doc = helpers.engine_json([path])
            agg = [a for a in doc["aggregates"] if a["site"] == "src/leak.c:7"][0]
            first = [f"0x{p:x}" for p in leaked[:4]]
            self.assertEqual((agg["leaked_blocks"], agg["addresses"]), (6, first))
            groups = [g for s in doc["segments"] for g in s["leaks"] if g["aggregate"] == agg["id"]]
            self.assertEqual([g["addresses"] for g in groups], [first])
            _, report, _ = report_json([path])
            self.assertEqual(report["leaks"][0]["addresses"], sorted(first, key=lambda a: int(a, 16)))


if __name__ == "__main__":
    os.chdir(helpers.HERE)
    unittest.main()
