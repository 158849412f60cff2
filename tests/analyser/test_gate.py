"""The CI gate: exit status per --fail-on kind, suppressions, baselines,
`heaptrail diff`."""

from __future__ import annotations

import json
import os
import tempfile
import unittest

import helpers
from helpers import CALL_MALLOC, MISUSE_DOUBLE, MISUSE_INVALID, MISUSE_MISMATCH, TraceWriter, report_json, run_heaptrail


def one_finding(kind: str) -> TraceWriter:
    """A trace with exactly one finding of `kind`."""
    w = TraceWriter()
    w.process()
    w.stack(1, [0x4000])
    w.site(1, "src/only.c", 7)
    if kind == "leak":
        w.alloc(0x10, 8, stack=1, site=1)
    elif kind == "lost-data":
        w.drops(5)
    else:
        code = {"double-free": MISUSE_DOUBLE, "invalid-free": MISUSE_INVALID, "mismatch": MISUSE_MISMATCH}[kind]
        w.misuse(code, 0x10, stack=1, site=1, call=11, alloc_call=CALL_MALLOC)
    w.end(0)
    return w


class FailOn(unittest.TestCase):
    def setUp(self) -> None:
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)

    def test_each_kind(self) -> None:
        kinds = ("leak", "double-free", "invalid-free", "mismatch", "lost-data")
        for kind in kinds:
            path = one_finding(kind).write(os.path.join(self.tmp.name, kind + ".htr"))
            for gate in kinds:
                with self.subTest(finding=kind, fail_on=gate):
                    status, doc, err = report_json([path], "--fail-on", gate)
                    self.assertEqual(err, "")
                    self.assertEqual(status, 1 if gate == kind else 0)
                    self.assertEqual(doc["findings"][kind], 5 if kind == "lost-data" else 1)

    def test_default_excludes_lost_data(self) -> None:
        lost = one_finding("lost-data").write(os.path.join(self.tmp.name, "l.htr"))
        leak = one_finding("leak").write(os.path.join(self.tmp.name, "k.htr"))
        self.assertEqual(report_json([lost])[0], 0)
        self.assertEqual(report_json([leak])[0], 1)
        self.assertEqual(report_json([leak], "--fail-on", "none")[0], 0)
        self.assertEqual(report_json([lost], "--fail-on", "all")[0], 1)

    def test_bad_kind_is_usage_error(self) -> None:
        leak = one_finding("leak").write(os.path.join(self.tmp.name, "k.htr"))
        proc = run_heaptrail(["report", "--fail-on", "leak,bogus", leak])
        self.assertEqual(proc.returncode, 2)
        self.assertIn("unknown kind 'bogus'", proc.stderr)


class Empty(unittest.TestCase):
    """An input with no heap events: a log without ==MP lines, a trace of a
    program that was not really traced. It passes every other gate, so it
    is said on stderr, and --fail-on empty (or all) fails the run."""

    def setUp(self) -> None:
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)

    def path(self, name: str) -> str:
        return os.path.join(self.tmp.name, name)

    def text(self, name: str, content: str) -> str:
        with open(self.path(name), "w", encoding="utf-8") as handle:
            handle.write(content)
        return self.path(name)

    def empty_inputs(self) -> list[str]:
        host = TraceWriter()
        host.process()
        host.end(0)
        return [
            self.text("no-mp.log", "seproxyhal: printf: app started\ntests/test_a.py::test_b[nanos] PASSED\n"),
            self.text("zero.log", ""),
            host.write(self.path("untraced.htr")),
        ]

    def test_default_passes_with_a_warning(self) -> None:
        for path in self.empty_inputs():
            with self.subTest(path=os.path.basename(path)):
                status, doc, err = report_json([path])
                self.assertEqual(status, 0)
                self.assertEqual(doc["findings"]["empty"], 1)
                self.assertEqual(doc["inputs"][0]["heap_events"], 0)
                self.assertFalse(doc["failed"])
                self.assertEqual(err.splitlines(), [
                    f"heaptrail report: warning: {path}: no heap events: nothing was checked; "
                    "add --fail-on empty to fail the run on this"])

    def test_fail_on_empty_fails(self) -> None:
        for path in self.empty_inputs():
            for gate in ("empty", "leak,empty", "all"):
                with self.subTest(path=os.path.basename(path), gate=gate):
                    status, doc, err = report_json([path], "--fail-on", gate)
                    self.assertEqual(status, 1)
                    self.assertTrue(doc["failed"])
                    self.assertIn(f"heaptrail report: error: {path}: no heap events", err)
            text = run_heaptrail(["report", "--fail-on", "empty", path])
            self.assertEqual(text.returncode, 1)
            self.assertIn("no heap events in it", text.stdout)
            self.assertIn("RESULT: FAIL (empty: 1)", text.stdout)

    def test_not_empty(self) -> None:
        """Any heap activity, or a report of lost events (lost-data's
        business), is not empty; nor is a fork child's trace with no
        allocation before its exec (part of its parent's run)."""
        active = self.text("active.log", "==MP init;0x20000000;4096\n==MP alloc;16;0x20000010;a.c:1\n"
                           "==MP free;0x20000010;a.c:2\n")
        bad_free = self.text("bad-free.log", "==MP free;0x20000010;a.c:2\n")
        lost = one_finding("lost-data").write(self.path("lost.htr"))
        child = TraceWriter(pid=101, ppid=100, fork_child_of=100, fork_seq=1)
        child.process()
        child.end(0)
        child_path = child.write(self.path("child.htr"))
        for path in (active, lost, child_path):
            with self.subTest(path=os.path.basename(path)):
                status, doc, err = report_json([path], "--fail-on", "empty")
                self.assertEqual((status, doc["findings"]["empty"], err), (0, 0, ""))
        status, doc, _ = report_json([bad_free], "--fail-on", "empty")
        self.assertEqual((status, doc["findings"]["empty"]), (0, 0))

    def test_one_empty_input_among_others(self) -> None:
        leak = one_finding("leak").write(self.path("leak.htr"))
        empty = self.text("no-mp.log", "nothing here\n")
        status, doc, err = report_json([leak, empty], "--fail-on", "empty")
        self.assertEqual((status, doc["findings"]["empty"], doc["findings"]["leak"]), (1, 1, 1))
        self.assertEqual(len(err.splitlines()), 1)
        self.assertIn("no-mp.log", err)

    def test_junit_and_sarif(self) -> None:
        empty = self.text("no-mp.log", "nothing here\n")
        junit = run_heaptrail(["report", "--format", "junit", "--fail-on", "empty", empty])
        self.assertEqual(junit.returncode, 1)
        self.assertIn('<testcase classname="heaptrail" name="empty">', junit.stdout)
        self.assertIn('<failure type="empty"', junit.stdout)
        sarif = run_heaptrail(["report", "--format", "sarif", empty])
        self.assertEqual(sarif.returncode, 0)
        results = json.loads(sarif.stdout)["runs"][0]["results"]
        self.assertEqual([(r["ruleId"], r["level"]) for r in results], [("empty", "warning")])


LOG = os.path.join("golden", "valground_tests.log")


class Suppressions(unittest.TestCase):
    def run_with(self, text: str, *extra: str) -> tuple[int, dict]:
        with tempfile.TemporaryDirectory() as tmp:
            supp = os.path.join(tmp, "supp.txt")
            with open(supp, "w", encoding="utf-8") as handle:
                handle.write(text)
            status, doc, err = report_json([LOG], "--suppressions", supp, *extra)
            self.assertEqual(err, "")
            return status, doc

    def test_leak_pattern_on_file(self) -> None:
        status, doc = self.run_with("# parser leaks are known\nleak:parser.c\n", "--fail-on", "leak")
        self.assertEqual(status, 1)  # handler.c:77 and keep.c:2 still leak
        by_site = {leak["site"]: leak for leak in doc["leaks"]}
        self.assertEqual(by_site["src/parser.c:100"]["suppressed"], "leak:parser.c")
        self.assertNotIn("suppressed", by_site["src/keep.c:2"])
        self.assertEqual(doc["summary"]["leaked_bytes"], 9000 + 8)
        self.assertEqual(doc["summary"]["suppressed_bytes"], 96)
        status, doc = self.run_with("leak:parser.c\nleak:keep.c\nleak:handler.c\n", "--fail-on", "leak")
        self.assertEqual(status, 0)
        self.assertEqual(doc["summary"]["leaked_bytes"], 0)

    def test_text_lists_and_fails_only_unsuppressed_leaks(self) -> None:
        log = ("seproxyhal: printf: ==MP init;0x20000000;4096\n"
               "seproxyhal: printf: ==MP alloc;32;0x20000010;src/known.c:5\n"
               "tests/test_x.py::test_second[nanox] PASSED\n"
               "seproxyhal: printf: ==MP init;0x20000000;4096\n"
               "seproxyhal: printf: ==MP alloc;48;0x20000010;src/new.c:9\n")
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "t.log")
            supp = os.path.join(tmp, "s.supp")
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(log)
            with open(supp, "w", encoding="utf-8") as handle:
                handle.write("leak:known.c\n")
            proc = run_heaptrail(["report", "--no-symbols", "--suppressions", supp, path])
        self.assertEqual(proc.returncode, 1, proc.stderr)
        text = proc.stdout
        leaks = text.split("LEAKS\n", 1)[1].split("\n\n", 1)[0]
        self.assertIn("src/new.c:9", leaks)
        self.assertNotIn("known.c", leaks)  # counted in the summary, not listed
        self.assertIn("suppressed: 32 bytes in 1 block", text)
        verdicts = [line for line in text.splitlines() if line.endswith((" ok", " FAIL")) and "[init]" in line]
        self.assertEqual(len(verdicts), 2, text)
        self.assertTrue(verdicts[0].endswith(" ok"), verdicts)
        self.assertTrue(verdicts[1].endswith(" FAIL"), verdicts)

    def test_wildcard(self) -> None:
        status, _ = self.run_with("leak:src/*er.c\nleak:src/k*p.c\n", "--fail-on", "leak")
        self.assertEqual(status, 0)
        status, _ = self.run_with("leak:src/*xyz*\n", "--fail-on", "leak")
        self.assertEqual(status, 1)

    def test_site_rule(self) -> None:
        status, _ = self.run_with("site:parser.c:100\nsite:src/keep.c:2\nsite:handler.c:77\n", "--fail-on", "leak")
        self.assertEqual(status, 0)
        status, _ = self.run_with("site:parser.c:101\nsite:src/keep.c:2\nsite:handler.c:77\n", "--fail-on", "leak")
        self.assertEqual(status, 1)

    def test_error_kinds(self) -> None:
        status, _ = self.run_with("double-free:handler.c\ninvalid-free:ui.c\n", "--fail-on", "double-free,invalid-free")
        self.assertEqual(status, 0)
        status, _ = self.run_with("double-free:handler.c\n", "--fail-on", "double-free,invalid-free")
        self.assertEqual(status, 1)

    def test_function_pattern_on_host_stack(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            leaky = one_finding("leak").write(os.path.join(tmp, "k.htr"))
            supp = os.path.join(tmp, "s")
            with open(supp, "w", encoding="utf-8") as handle:
                handle.write("leak:only.c\n")
            self.assertEqual(report_json([leaky], "--suppressions", supp)[0], 0)

    def test_malformed_file(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            supp = os.path.join(tmp, "s")
            with open(supp, "w", encoding="utf-8") as handle:
                handle.write("leak:ok\nnonsense\n")
            proc = run_heaptrail(["report", "--suppressions", supp, LOG])
            self.assertEqual(proc.returncode, 2)
            self.assertIn(f"{supp}: line 2:", proc.stderr)


def leak_log(path: str, leaks: list[tuple[int, str]], peak_extra: int = 0) -> str:
    lines = ["==MP init;0x1000;100000"]
    ptr = 0x2000
    for size, site in leaks:
        lines.append(f"==MP alloc;{size};0x{ptr:x};{site}")
        ptr += 0x1000
    if peak_extra:
        lines.append(f"==MP alloc;{peak_extra};0x{ptr:x};src/tmp.c:1")
        lines.append(f"==MP free;0x{ptr:x};src/tmp.c:2")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


class Baseline(unittest.TestCase):
    def test_write_and_apply(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            old = leak_log(os.path.join(tmp, "old.log"), [(10, "src/a.c:1"), (20, "src/b.c:2")])
            base = os.path.join(tmp, "base.json")
            status, _, _ = report_json([old], "--write-baseline", base)
            self.assertEqual(status, 1)
            with open(base, encoding="utf-8") as handle:
                doc = json.load(handle)
            self.assertEqual(doc["leaks"], [{"key": "src/a.c:1", "bytes": 10, "blocks": 1}, {"key": "src/b.c:2", "bytes": 20, "blocks": 1}])
            # The same leaks at other addresses: accepted.
            same = leak_log(os.path.join(tmp, "same.log"), [(20, "src/b.c:2"), (10, "src/a.c:1")])
            status, rep, _ = report_json([same], "--baseline", base)
            self.assertEqual(status, 0)
            self.assertEqual(rep["summary"]["baselined_leaks"], 2)
            # A new leak fails; a grown one fails too.
            new = leak_log(os.path.join(tmp, "new.log"), [(10, "src/a.c:1"), (20, "src/b.c:2"), (5, "src/c.c:3")])
            status, rep, _ = report_json([new], "--baseline", base)
            self.assertEqual(status, 1)
            self.assertEqual([leak["site"] for leak in rep["leaks"] if not leak.get("baselined")], ["src/c.c:3"])
            grown = leak_log(os.path.join(tmp, "grown.log"), [(10, "src/a.c:1"), (99, "src/b.c:2")])
            self.assertEqual(report_json([grown], "--baseline", base)[0], 1)

    def test_bad_baseline(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            bad = os.path.join(tmp, "b.json")
            with open(bad, "w", encoding="utf-8") as handle:
                handle.write("[1, 2]")
            proc = run_heaptrail(["report", "--baseline", bad, LOG])
            self.assertEqual(proc.returncode, 2)
            self.assertIn("not a heaptrail baseline", proc.stderr)


class Diff(unittest.TestCase):
    def test_regressions(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            old = leak_log(os.path.join(tmp, "old.log"), [(10, "src/a.c:1")], peak_extra=100)
            same = leak_log(os.path.join(tmp, "same.log"), [(10, "src/a.c:1")], peak_extra=100)
            newleak = leak_log(os.path.join(tmp, "n.log"), [(10, "src/a.c:1"), (4, "src/z.c:9")], peak_extra=100)
            bigger = leak_log(os.path.join(tmp, "b.log"), [(10, "src/a.c:1")], peak_extra=200)
            fixed = leak_log(os.path.join(tmp, "f.log"), [], peak_extra=100)

            proc = run_heaptrail(["diff", old, same])
            self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
            self.assertIn("RESULT: OK", proc.stdout)

            proc = run_heaptrail(["diff", "--format", "json", old, newleak])
            self.assertEqual(proc.returncode, 1)
            d = json.loads(proc.stdout)
            self.assertEqual([x["key"] for x in d["new_leaks"]], ["src/z.c:9"])

            proc = run_heaptrail(["diff", "--format", "json", old, bigger])
            self.assertEqual(proc.returncode, 1)
            d = json.loads(proc.stdout)
            self.assertEqual(d["peak"], {"old": 110, "new": 210, "regressed": True})
            self.assertEqual(run_heaptrail(["diff", "--peak-tolerance", "100", old, bigger]).returncode, 0)

            proc = run_heaptrail(["diff", "--format", "json", old, fixed])
            self.assertEqual(proc.returncode, 0)
            self.assertEqual([x["key"] for x in json.loads(proc.stdout)["fixed_leaks"]], ["src/a.c:1"])

    def test_suppressions_apply_to_analysed_inputs(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            old = leak_log(os.path.join(tmp, "old.log"), [(10, "src/a.c:1")])
            new = leak_log(os.path.join(tmp, "new.log"), [(10, "src/a.c:1"), (4, "src/z.c:9")])
            supp = os.path.join(tmp, "s")
            with open(supp, "w", encoding="utf-8") as handle:
                handle.write("leak:z.c\n")
            # (the peak grows by the leaked 4 bytes too: tolerated here)
            self.assertEqual(run_heaptrail(["diff", "--peak-tolerance", "50", old, new]).returncode, 1)
            self.assertEqual(run_heaptrail(["diff", "--peak-tolerance", "50", "--suppressions", supp, old, new]).returncode, 0)

    def test_json_reports_as_inputs(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            old = leak_log(os.path.join(tmp, "old.log"), [(10, "src/a.c:1")])
            new = leak_log(os.path.join(tmp, "new.log"), [(10, "src/a.c:1"), (1, "src/q.c:1")])
            oj, nj = os.path.join(tmp, "o.json"), os.path.join(tmp, "n.json")
            run_heaptrail(["report", "--format", "json", "-o", oj, old])
            run_heaptrail(["report", "--format", "json", "-o", nj, new])
            proc = run_heaptrail(["diff", oj, nj])
            self.assertEqual(proc.returncode, 1)
            self.assertIn("NEW LEAK: 1 bytes in 1 blocks at src/q.c:1", proc.stdout)

    def test_unreadable(self) -> None:
        proc = run_heaptrail(["diff", "/nonexistent/a", "/nonexistent/b"])
        self.assertEqual(proc.returncode, 2)
        self.assertNotIn("Traceback", proc.stderr)


if __name__ == "__main__":
    os.chdir(helpers.HERE)
    unittest.main()
