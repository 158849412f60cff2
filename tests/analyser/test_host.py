"""Host traces: synthetic ones written to trace_format.h by helpers.TraceWriter,
and a real one from the recorder on examples/leaky."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import unittest

import helpers
from helpers import (CALL_DELETE, CALL_MALLOC, CALL_NEW, MISUSE_DOUBLE, MISUSE_INVALID, MISUSE_MISMATCH, TraceWriter, golden,
                     report_json, run_heaptrail)

A, B, C = 0x1000, 0x2000, 0x3000


def sample_trace() -> TraceWriter:
    w = TraceWriter(pid=4242)
    w.process("/usr/bin/sample", ["sample", "--flag"])
    w.stack(1, [0x401100, 0x401200])
    w.stack(2, [0x401300, 0x401200])
    w.stack(3, [0x401400])
    w.site(1, "src/cfg.c", 12)
    w.marker("load")
    w.alloc(A, 100, stack=1)
    w.alloc(A + 0x100, 100, stack=1)          # same stack: grouped with the first
    w.alloc(B, 40, stack=2, site=1)
    w.free(B, stack=3)                          # right after its allocation: temporary
    w.alloc(C, 1000, stack=2)
    w.free(C, stack=3)
    w.free(0x7777, stack=3)                     # unknown pointer: allocated before tracing, not an error
    w.marker("work")
    w.alloc(0x5000, 64, stack=2, call=CALL_NEW)
    w.misuse(MISUSE_MISMATCH, 0x5000, 64, stack=3, alloc_stack=2, call=CALL_MALLOC and 11, alloc_call=CALL_NEW)
    w.misuse(MISUSE_DOUBLE, C, 1000, stack=3, alloc_stack=2, free_stack=3)
    w.misuse(MISUSE_INVALID, 0x9999, stack=1)
    w.realloc(A + 0x100, 0x6000, 300, stack=2)  # the block moves: its new stack owns it
    w.alloc(0x7000, 8, stack=3)
    w.persist(0x7000)
    w.alloc(0, 1 << 40, stack=3)                # failed
    w.end(0)
    return w


class HostTraces(unittest.TestCase):
    def setUp(self) -> None:
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)

    def path(self, name: str) -> str:
        return os.path.join(self.tmp.name, name)

    def test_findings(self) -> None:
        trace = sample_trace().write(self.path("t.htr"))
        status, doc, err = report_json([trace])
        self.assertEqual(status, 1, err)
        s = doc["summary"]
        self.assertEqual(s["allocations"], 8)  # 6 allocs + realloc's block + the failed one
        self.assertEqual(s["failed_allocations"], 1)
        self.assertEqual(s["frees"], 4)  # B, C, the mismatched 0x5000, realloc's old block
        self.assertEqual(s["total_bytes"], 100 + 100 + 40 + 1000 + 64 + 300 + 8 + (1 << 40))
        self.assertEqual(s["peak_bytes"], 1200)
        self.assertEqual(s["temporary"], 2)
        self.assertEqual(s["unmatched_frees"], 1)
        self.assertEqual(s["free_errors"], 3)
        leaks = {tuple(f["addr"] for f in leak["stack"]): (leak["bytes"], leak["blocks"]) for leak in doc["leaks"]}
        self.assertEqual(leaks, {("0x401100", "0x401200"): (100, 1), ("0x401300", "0x401200"): (300, 1)})
        self.assertEqual(doc["persistent"][0]["bytes"], 8)
        kinds = {e["kind"]: e for e in doc["free_errors"]}
        self.assertEqual(set(kinds), {"double-free", "invalid-free", "mismatch"})
        self.assertEqual([f["addr"] for f in kinds["double-free"]["alloc_stack"]], ["0x401300", "0x401200"])
        self.assertEqual([f["addr"] for f in kinds["double-free"]["free_stack"]], ["0x401400"])
        self.assertEqual([f["addr"] for f in kinds["mismatch"]["stack"]], ["0x401400"])
        self.assertEqual(kinds["mismatch"]["segment"], "work")
        self.assertEqual(doc["processes"][0]["pid"], 4242)
        self.assertEqual(doc["processes"][0]["args"], ["sample", "--flag"])
        self.assertTrue(doc["inputs"][0]["complete"])
        self.assertEqual(doc["inputs"][0]["format"], "host")

    def test_peak_sites(self) -> None:
        trace = sample_trace().write(self.path("t.htr"))
        _, doc, _ = report_json([trace])
        # At the peak (1200 bytes): 200 from stack 1, 1000 from stack 2.
        sites = {tuple(f["addr"] for f in p["stack"]): p["bytes"] for p in doc["peak"]["sites"]}
        self.assertEqual(sites, {("0x401100", "0x401200"): 200, ("0x401300", "0x401200"): 1000})

    def test_segments_from_markers(self) -> None:
        trace = sample_trace().write(self.path("t.htr"))
        _, doc, _ = report_json([trace])
        segs = {s["name"]: s for s in doc["segments"]}
        self.assertEqual(list(segs), ["load", "work"])
        self.assertEqual(segs["load"]["leaked_bytes"], 100)
        self.assertEqual(segs["work"]["leaked_bytes"], 300)
        self.assertEqual(segs["work"]["free_errors"], 3)

    def test_fork_child_trace(self) -> None:
        parent = TraceWriter(pid=10)
        parent.process()
        parent.stack(7, [0xAAA0, 0xBBB0])
        parent.site(3, "src/parent.c", 33)
        parent.alloc(A, 10, stack=7, site=3)
        fork_seq = parent.fork(11)
        parent.free(A)
        parent.end(0)
        child = TraceWriter(pid=11, ppid=10, fork_child_of=10, fork_seq=fork_seq)
        child.process()
        child.free(A)       # inherited block: not an error, not a leak
        child.alloc(B, 77, stack=7, site=3)  # the child's own leak, through ids defined before the fork
        child.end(0)
        p = parent.write(self.path("p.htr"))
        c = child.write(self.path("c.htr"))
        status, doc, _ = report_json([p, c])
        self.assertEqual(status, 1)
        self.assertEqual([(x["pid"], x["fork_child"]) for x in doc["processes"]], [(10, False), (11, True)])
        self.assertEqual([(leak["bytes"], leak["process"]) for leak in doc["leaks"]], [(77, 1)])
        self.assertEqual([f["addr"] for f in doc["leaks"][0]["stack"]], ["0xaaa0", "0xbbb0"])
        self.assertEqual(doc["leaks"][0]["site"], "src/parent.c:33")
        # given child first, the ids still resolve
        _, doc2, _ = report_json([c, p])
        self.assertEqual(doc2["leaks"][0]["site"], "src/parent.c:33")
        self.assertEqual(doc["free_errors"], [])

    def test_truncated_trace_reports_where_it_stopped(self) -> None:
        w = TraceWriter()
        w.process()
        for i in range(300):
            w.alloc(0x10000 + i * 16, 16)
        for i in range(300):
            w.free(0x10000 + i * 16)
        w.end(0)
        data = w.build()
        cut = 4096 + 4096 + 2004  # inside a record of the second chunk
        path = self.path("cut.htr")
        with open(path, "wb") as handle:
            handle.write(data[:cut])
        status, doc, err = report_json([path])
        self.assertEqual(err, "")
        inp = doc["inputs"][0]
        self.assertFalse(inp["complete"])
        self.assertEqual(inp["stopped_at"]["offset"], cut)
        # Blocks whose frees were in the lost part are unknown, never leaks.
        self.assertEqual(doc["leaks"], [])
        self.assertGreater(doc["summary"]["unknown_blocks"], 0)
        self.assertEqual(status, 0)
        status_lost, _, _ = report_json([path], "--fail-on", "lost-data")
        self.assertEqual(status_lost, 1)
        text = run_heaptrail(["report", "--no-symbols", path]).stdout
        self.assertIn(f"stopped at offset {cut}", text)

    def test_crash_without_end_keeps_leaks(self) -> None:
        w = TraceWriter()
        w.process()
        w.alloc(A, 5)
        w.clean = False
        status, doc, _ = report_json([w.write(self.path("crash.htr"))])
        self.assertFalse(doc["inputs"][0]["exited"])
        self.assertTrue(doc["inputs"][0]["complete"])
        self.assertEqual(doc["leaks"][0]["bytes"], 5)
        self.assertEqual(status, 1)

    def test_drops_make_older_blocks_unknown(self) -> None:
        w = TraceWriter()
        w.process()
        w.alloc(A, 5)
        w.drops(2)
        w.alloc(B, 7)
        w.end(0)
        status, doc, _ = report_json([w.write(self.path("drops.htr"))])
        self.assertEqual(doc["summary"]["lost_events"], 2)
        self.assertEqual([leak["bytes"] for leak in doc["leaks"]], [7])
        self.assertEqual([u["bytes"] for u in doc["unknown"]], [5])
        self.assertEqual(status, 1)

    def test_corrupt_bytes_name_file_and_offset(self) -> None:
        data = bytearray(sample_trace().build())
        off = 4096 + 8  # chunk 0's chunk_index field: the chunk no longer checks
        data[off] = 0x55
        path = self.path("bad.htr")
        with open(path, "wb") as handle:
            handle.write(data)
        proc = run_heaptrail(["report", path])
        self.assertEqual(proc.returncode, 2)
        self.assertTrue(proc.stderr.startswith(f"heaptrail report: {path}: corrupt data at offset 4096"), proc.stderr)
        self.assertNotIn("Traceback", proc.stderr)

    def test_unknown_version_refused(self) -> None:
        w = sample_trace()
        w.version = (3, 0)
        path = w.write(self.path("v3.htr"))
        proc = run_heaptrail(["report", path])
        self.assertEqual(proc.returncode, 2)
        self.assertIn("version 3.0", proc.stderr)
        self.assertEqual(len(proc.stderr.strip().splitlines()), 1)

    def test_golden_outputs(self) -> None:
        path = os.path.join(self.tmp.name, "sample.htr")
        sample_trace().write(path)
        os.chdir(self.tmp.name)
        try:
            text = run_heaptrail(["report", "--no-symbols", "--color", "never", "sample.htr"]).stdout
            js = run_heaptrail(["report", "--no-symbols", "--format", "json", "sample.htr"]).stdout
        finally:
            os.chdir(helpers.HERE)
        golden(self, "host_sample.txt", text)
        golden(self, "host_sample.json", js)


@unittest.skipUnless(helpers.SHIM and helpers.LEAKY and os.path.exists(helpers.SHIM) and os.path.exists(helpers.LEAKY),
                     "recorder or examples/leaky not built")
class RealTrace(unittest.TestCase):
    def test_leaky_example(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            env = dict(os.environ, LD_PRELOAD=helpers.SHIM, HEAPTRAIL_OUTPUT=tmp)
            subprocess.run([helpers.LEAKY], env=env, stdout=subprocess.DEVNULL, check=True)
            traces = sorted(os.path.join(tmp, f) for f in os.listdir(tmp))
            self.assertEqual(len(traces), 1)
            proc = run_heaptrail(["report", "--format", "json", *traces])
            self.assertEqual(proc.returncode, 1, proc.stderr)
            doc = json.loads(proc.stdout)
            # One real leak (config->limits from calloc), stdio's buffer suppressed by default.
            self.assertEqual(doc["summary"]["leaked_blocks"], 1)
            leak = [x for x in doc["leaks"] if not x.get("suppressed")][0]
            self.assertEqual(leak["bytes"], 64)
            top = leak["stack"][0]
            self.assertEqual(top["function"], "config_load")
            self.assertTrue(top["file"].endswith("leaky.c"))
            self.assertEqual(top["module"], "leaky")
            self.assertEqual([e["kind"] for e in doc["free_errors"]], ["double-free"])
            err = doc["free_errors"][0]
            self.assertEqual(err["stack"][0]["function"], "scratch_work")
            self.assertTrue(err["alloc_stack"] and err["free_stack"])


    def test_fork_parent_and_child(self) -> None:
        src = (
            "#include <stdlib.h>\n#include <unistd.h>\n#include <sys/wait.h>\n"
            "__attribute__((noinline)) void *mk(int n) { return malloc(n); }\n"
            "int main(void) {\n"
            "\tvoid *a = mk(11);\n"
            "\tpid_t p = fork();\n"
            "\tif (p == 0) { free(a); mk(22); _exit(0); }\n"
            "\twaitpid(p, 0, 0);\n"
            "\tfree(a);\n"
            "\tmk(33);\n"
            "\treturn 0;\n}\n"
        )
        with tempfile.TemporaryDirectory() as tmp:
            with open(os.path.join(tmp, "fk.c"), "w", encoding="utf-8") as handle:
                handle.write(src)
            exe = os.path.join(tmp, "fk")
            subprocess.run(["cc", "-g", "-O1", "-o", exe, os.path.join(tmp, "fk.c")], check=True)
            out = os.path.join(tmp, "traces")
            os.mkdir(out)
            env = dict(os.environ, LD_PRELOAD=helpers.SHIM, HEAPTRAIL_OUTPUT=out)
            subprocess.run([exe], env=env, check=True)
            traces = sorted(os.path.join(out, f) for f in os.listdir(out))
            self.assertEqual(len(traces), 2)
            proc = run_heaptrail(["report", "--format", "json", *traces])
            self.assertEqual(proc.returncode, 1, proc.stderr)
            doc = json.loads(proc.stdout)
            self.assertEqual(sorted(p["fork_child"] for p in doc["processes"]), [False, True])
            child = [p["index"] for p in doc["processes"] if p["fork_child"]][0]
            leaks = sorted((leak["bytes"], leak["process"] == child) for leak in doc["leaks"])
            self.assertEqual(leaks, [(22, True), (33, False)])
            self.assertEqual(doc["free_errors"], [])  # the child's free of the inherited block is fine
            self.assertTrue(all(leak["stack"][0]["function"] == "mk" for leak in doc["leaks"]))


if __name__ == "__main__":
    os.chdir(helpers.HERE)
    unittest.main()
