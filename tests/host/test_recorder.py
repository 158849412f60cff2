"""Integration tests of libheaptrail.so: small programs run under the
preload; the exact events in their traces are checked through htr-dump."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import htr_testlib as lib  # noqa: E402


def brief(events: list[lib.Event]) -> list[tuple]:
    """What the tests compare: type, call and size (kind for misuse)."""
    out: list[tuple] = []
    for e in events:
        if e["type"] == "alloc":
            out.append(("alloc", e["call"], e["size"], e["alignment"]))
        elif e["type"] == "free":
            out.append(("free", e["call"]))
        elif e["type"] == "realloc":
            out.append(("realloc", e["call"], e["ptr"] != "0x0", e["ptr2"] != "0x0", e["size"]))
        elif e["type"] == "misuse":
            out.append(("misuse", e["kind"], e["call"], e.get("alloc_call")))
        else:
            out.append((e["type"],))
    return out


def source_line(filename: str, tag: str) -> int:
    with open(os.path.join(lib.SOURCE, "programs", filename)) as f:
        for number, line in enumerate(f, 1):
            if re.search(re.escape(tag) + r"\b", line):
                return number
    raise AssertionError(f"{tag} not in {filename}")


class BasicTest(unittest.TestCase):
    def test_every_c_function_recorded_exactly(self) -> None:
        r = lib.run([lib.program("basic")])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(r.traces), 1)
        t = r.trace()
        page = os.sysconf("SC_PAGESIZE")
        ev = t.between_marks("begin", "end")
        self.assertEqual(brief(ev), [
            ("alloc", "malloc", 1001, 0),
            ("alloc", "calloc", 1002, 0),
            ("realloc", "realloc", False, True, 1003),
            ("realloc", "realloc", True, True, 1004),
            ("alloc", "posix_memalign", 1005, 64),
            ("alloc", "aligned_alloc", 1006 * 128, 128),
            ("alloc", "memalign", 1007, 32),
            ("alloc", "valloc", 1008, page),
            ("alloc", "pvalloc", 1009, page),
            ("realloc", "reallocarray", False, True, 1010),
        ] + [("free", "free")] * 8 + [
            ("realloc", "realloc", True, False, 0),
        ])
        # Frees name the blocks in order; realloc(p, 0) the reallocarray block.
        made = [e.get("ptr2") if e["type"] == "realloc" else e["ptr"] for e in ev[:10]]
        del made[2]  # the first realloc's block moved on with the second
        self.assertEqual([e["ptr"] for e in ev[10:18]], made[:8])
        self.assertEqual(ev[18]["ptr"], made[8])
        # seq strictly increases
        seqs = [e["seq"] for e in ev]
        self.assertEqual(seqs, sorted(seqs))
        self.assertEqual(len(set(seqs)), len(seqs))
        # The first allocation's stack: leaf_alloc called from main.
        sym = lib.Symbolizer(t)
        frames = t.stacks[ev[0]["stack"]]
        self.assertEqual(sym.function(frames[0]), "leaf_alloc")
        self.assertEqual(sym.function(frames[1]), "main")
        self.assertEqual(sym.function(t.stacks[ev[1]["stack"]][0]), "main")
        # Orderly end
        self.assertTrue(t.summary["clean_exit"])
        self.assertEqual(t.header["state"], "clean_exit")
        self.assertEqual(t.of_type("end")[-1]["size"], 0)
        self.assertEqual(t.summary["lost"], 0)
        proc = t.of_type("process")[0]
        self.assertEqual(proc["args"], [lib.program("basic")])
        self.assertEqual(t.events[0]["type"], "process")

    def test_fifo_at_a_taken_name_does_not_hang(self) -> None:
        outdir = lib.mkdtemp(prefix="htr-test-")

        def plant() -> None:
            os.mkfifo(os.path.join(outdir, f"heaptrail.{os.getpid()}.0.htr"))

        r = lib.run([lib.program("basic")], outdir=outdir, preexec=plant, timeout=30)
        self.assertEqual(r.returncode, 0)
        self.assertEqual(len(r.traces), 2)
        t = lib.read_trace(r.traces[1])
        self.assertEqual(t.header["flags"], 0)
        self.assertTrue(t.summary["clean_exit"])

    def test_chains_with_glibc_debug_allocator(self) -> None:
        debug = "/usr/lib/x86_64-linux-gnu/libc_malloc_debug.so.0"
        if not os.path.exists(debug):
            self.skipTest("no libc_malloc_debug.so.0")
        plain = lib.run([lib.program("basic")]).trace().between_marks("begin", "end")
        r = lib.run([lib.program("basic")],
                    env={"LD_PRELOAD": f"{lib.SHIM} {debug}", "MALLOC_CHECK_": "3"})
        self.assertEqual(r.returncode, 0, r.stderr)
        chained = r.trace().between_marks("begin", "end")
        self.assertEqual(brief(chained), brief(plain))

    def test_output_and_status_unchanged(self) -> None:
        bare = lib.run([lib.program("basic")], preload=False)
        traced = lib.run([lib.program("basic")])
        self.assertEqual((traced.returncode, traced.stdout, traced.stderr),
                         (bare.returncode, bare.stdout, bare.stderr))
        self.assertEqual(traced.stdout, "basic: stdout line\n")
        for name, rc in (("crash", 0),):
            self.assertEqual(lib.run([lib.program(name), "none"]).returncode, rc)

    def test_file_mode_and_name(self) -> None:
        r = lib.run([lib.program("basic")])
        st = os.lstat(r.traces[0])
        self.assertTrue(stat.S_ISREG(st.st_mode))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
        self.assertRegex(os.path.basename(r.traces[0]), r"^heaptrail\.\d+\.0\.htr$")
        # truncated to whole chunks: header + n * chunk_size
        t = r.trace()
        self.assertEqual((st.st_size - 4096) % t.header["chunk_size"], 0)

    def test_symlink_at_next_name_not_followed(self) -> None:
        outdir = lib.mkdtemp(prefix="htr-test-")
        victim = os.path.join(outdir, "victim")

        def plant() -> None:
            os.symlink(victim, os.path.join(outdir, f"heaptrail.{os.getpid()}.0.htr"))

        r = lib.run([lib.program("basic")], outdir=outdir, preexec=plant)
        self.assertEqual(r.returncode, 0)
        self.assertFalse(os.path.lexists(victim))
        self.assertEqual(len(r.traces), 2)
        self.assertTrue(os.path.islink(r.traces[0]))
        self.assertTrue(r.traces[1].endswith(".1.htr"))
        st = os.lstat(r.traces[1])
        self.assertTrue(stat.S_ISREG(st.st_mode))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
        t = lib.read_trace(r.traces[1])
        self.assertEqual(t.header["flags"], 0)  # a symlink is not an earlier image
        self.assertTrue(t.summary["clean_exit"])


class SitesTest(unittest.TestCase):
    def test_file_and_line_for_macro_users(self) -> None:
        r = lib.run([lib.program("sites")])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "stats ok\n")
        t = r.trace()
        ev = t.between_marks("begin", "end")
        self.assertEqual(brief(ev), [
            ("alloc", "malloc", 2001, 0),
            ("alloc", "calloc", 2002, 0),
            ("realloc", "realloc", True, True, 2003),
            ("alloc", "strdup", 6, 0),
            ("alloc", "aligned_alloc", 2048, 256),
            ("alloc", "malloc", 2006, 0),
            ("persist",),
            ("free", "free"), ("free", "free"), ("free", "free"), ("free", "free"),
        ])
        self.assertEqual(ev[6]["ptr"], ev[5]["ptr"])
        sites = [e["site"] for e in ev if e["type"] != "persist"]
        for n, site in enumerate(sites, 1):
            path, line = t.sites[site]
            self.assertTrue(path.endswith("sites.c"), path)
            self.assertEqual(line, source_line("sites.c", f"SITE-{n}"), f"SITE-{n}")
        self.assertEqual(len(set(sites)), len(sites))


class CxxTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.run_ = lib.run([lib.program("misuse")])
        cls.trace = cls.run_.trace()

    def test_program_continues(self) -> None:
        self.assertEqual(self.run_.returncode, 0, self.run_.stderr)
        self.assertEqual(self.run_.stdout, "still running\n")
        self.assertEqual(self.run_.stderr, "")
        self.assertTrue(self.trace.summary["clean_exit"])

    def test_every_new_delete_form(self) -> None:
        ev = self.trace.between_marks("forms", "misuse")
        expected: list[tuple] = []
        forms = [("new", 3001, 0), ("new[]", 3002, 0), ("new", 3003, 0), ("new[]", 3004, 0),
                 ("new", 3005, 0), ("new[]", 3006, 0), ("new", 3007, 64), ("new[]", 3008, 128),
                 ("new", 3009, 256), ("new[]", 3010, 512), ("new", 3011, 64),
                 ("new[]", 3012, 64), ("new", 64, 64)]
        for call, size, align in forms:
            expected.append(("alloc", call, size, align))
            expected.append(("free", "delete" if call == "new" else "delete[]"))
        self.assertEqual(brief(ev), expected)
        for i in range(0, len(ev), 2):
            self.assertEqual(ev[i]["ptr"], ev[i + 1]["ptr"])
            align = ev[i]["alignment"]
            if align:
                self.assertEqual(int(ev[i]["ptr"], 16) % align, 0)

    def test_misuse_recorded_and_refused(self) -> None:
        ev = self.trace.between_marks("misuse", "after")
        self.assertEqual(brief(ev), [
            ("alloc", "malloc", 4001, 0),
            ("free", "free"),
            ("misuse", "double_free", "free", "malloc"),
            ("alloc", "malloc", 4002, 0),
            ("misuse", "invalid_free", "free", None),   # interior
            ("misuse", "invalid_free", "free", None),   # stack
            ("misuse", "invalid_free", "free", None),   # global
            ("misuse", "invalid_free", "free", None),   # garbage
            ("alloc", "new", 4, 0),
            ("misuse", "mismatch", "free", "new"),
            ("alloc", "new[]", 4004, 0),
            ("misuse", "mismatch", "delete", "new[]"),
            ("alloc", "malloc", 4003, 0),
            ("misuse", "mismatch", "delete", "malloc"),
            ("alloc", "new", 4, 0),
            ("misuse", "mismatch", "delete[]", "new"),
        ])
        double = ev[2]
        self.assertEqual(double["ptr"], ev[0]["ptr"])
        self.assertEqual(double["size"], 4001)
        self.assertEqual(double["alloc_stack"], ev[0]["stack"])
        self.assertEqual(double["free_stack"], ev[1]["stack"])
        self.assertNotEqual(double["stack"], ev[1]["stack"])
        self.assertEqual(int(ev[4]["ptr"], 16), int(ev[3]["ptr"], 16) + 8)
        self.assertEqual(ev[7]["ptr"], "0x10")
        for i in (9, 11, 13, 15):
            self.assertEqual(ev[i]["ptr"], ev[i - 1]["ptr"])
            self.assertEqual(ev[i]["alloc_stack"], ev[i - 1]["stack"])
        # The misuse calls are the program's: their stacks end in main.
        sym = lib.Symbolizer(self.trace)
        self.assertEqual(sym.function(self.trace.stacks[double["stack"]][0]), "main")
        # q, still live, is freed normally afterwards.
        marker = next(e for e in self.trace.events
                      if e["type"] == "marker" and e["text"] == "after")
        later = [e for e in self.trace.events
                 if e.get("ptr") == ev[3]["ptr"] and e.get("seq", 0) > marker["seq"]]
        self.assertEqual(brief(later[:1]), [("free", "free")])

    def test_failed_allocations(self) -> None:
        ev = self.trace.between_marks("oom", "done")
        huge = (2**64 - 1) // 2
        # Throwing bad_alloc allocates the exception object (and frees it
        # when caught): recorded too.
        self.assertEqual(brief(ev[2:4]), [("alloc", "malloc", ev[2].get("size"), 0), ("free", "free")])
        self.assertEqual(ev[2]["ptr"], ev[3]["ptr"])
        failed = ev[:2] + ev[4:]
        self.assertEqual(brief(failed), [("alloc", "malloc", huge, 0), ("alloc", "new", huge, 0),
                                         ("alloc", "new[]", huge, 0)])
        self.assertTrue(all(e["ptr"] == "0x0" for e in failed))

    def test_on_error_abort(self) -> None:
        r = lib.run([lib.program("misuse")], env={"HEAPTRAIL_ON_ERROR": "abort"})
        self.assertEqual(r.returncode, -signal.SIGABRT)
        lines = r.stderr.splitlines()
        self.assertEqual(len(lines), 1, r.stderr)
        self.assertRegex(lines[0], r"^heaptrail: double free of 0x[0-9a-f]+ by free; aborting")
        t = r.trace()
        self.assertEqual([e["kind"] for e in t.of_type("misuse")], ["double_free"])
        self.assertFalse(t.summary["clean_exit"])


class LateTest(unittest.TestCase):
    def test_allocations_in_destructors_after_main(self) -> None:
        r = lib.run([lib.program("late")])
        self.assertEqual((r.returncode, r.stdout, r.stderr), (0, "main done\n", ""))
        t = r.trace()
        sizes = [e["size"] for e in t.of_type("alloc")]
        self.assertIn(8001, sizes)
        self.assertIn(8002, sizes)
        self.assertTrue(t.summary["clean_exit"])
        end = t.of_type("end")[0]
        late = [e for e in t.of_type("alloc") if e["size"] in (8001, 8002)]
        self.assertTrue(all(e["seq"] < end["seq"] for e in late))


class ThreadsTest(unittest.TestCase):
    def test_no_event_lost(self) -> None:
        r = lib.run([lib.program("threads")])
        self.assertEqual(r.returncode, 0, r.stderr)
        t = r.trace()
        self.assertEqual(t.summary["lost"], 0)
        counts: dict[int, int] = {}
        threads: dict[int, set[int]] = {}
        for e in t.of_type("alloc"):
            if 5000 <= e["size"] < 5012:
                counts[e["size"]] = counts.get(e["size"], 0) + 1
                threads.setdefault(e["size"], set()).add(e["thread"])
        self.assertEqual(counts, {5000 + i: 20000 if i < 8 else 500 for i in range(12)})
        self.assertTrue(all(len(s) == 1 for s in threads.values()))
        self.assertEqual(len({next(iter(s)) for s in threads.values()}), 12)
        ours = {e["ptr"] for e in t.of_type("alloc") if 5000 <= e["size"] < 5012}
        frees = [e for e in t.of_type("free") if e["ptr"] in ours]
        self.assertEqual(len(frees), 8 * 20000 + 4 * 500)
        starts = [e for e in t.of_type("thread") if e["kind"] == "start"]
        exits = [e for e in t.of_type("thread") if e["kind"] == "exit"]
        self.assertEqual(len(starts), 13)
        self.assertEqual(len(exits), 12)
        self.assertEqual(len({e["tid"] for e in starts}), 13)
        seqs = [e["seq"] for e in t.events if "seq" in e and e["type"] != "stack"]
        self.assertEqual(len(seqs), len(set(seqs)))
        self.assertEqual(t.misuse if hasattr(t, "misuse") else t.of_type("misuse"), [])
        # Counts kept per thread add up, threads that ended included.
        ev = t.between_marks("stats-before", "stats-after")
        allocs = sum(1 for e in ev if e["type"] == "alloc" and e["ptr"] != "0x0")
        frees = sum(1 for e in ev if e["type"] == "free")
        for e in ev:
            if e["type"] == "realloc":
                allocs += e["ptr2"] != "0x0"
                frees += e["ptr"] != "0x0" and (e["ptr2"] != "0x0" or e["size"] == 0)
        self.assertGreaterEqual(frees, 8 * 20000 + 4 * 500)
        line = r.stdout.splitlines()[-1].split()
        self.assertEqual(line, ["stats", str(allocs), str(frees), str(allocs - frees)])


class OrderingTest(unittest.TestCase):
    def check(self, argv: list[str], with_realloc: bool) -> None:
        low, high = (2048, 2096) if with_realloc else (64, 112)
        r = lib.run(argv)
        self.assertEqual((r.returncode, r.stdout), (0, "handoff done\n"), r.stderr)
        t = r.trace()
        self.assertEqual(t.summary["lost"], 0)
        live: set[str] = set()
        owner: dict[str, int] = {}
        allocs = frees = reallocs = moved = cross_thread = 0

        def born(e: lib.Event, ptr: str) -> None:
            self.assertNotIn(ptr, live, f"{e['type']} to a live address at seq {e['seq']}")
            live.add(ptr)
            owner[ptr] = e["thread"]

        for e in t.events:  # in seq order
            if e["type"] == "alloc" and low <= e["size"] <= high:
                born(e, e["ptr"])
                allocs += 1
            elif e["type"] == "realloc" and e["ptr"] in live:
                live.remove(e["ptr"])
                cross_thread += owner[e["ptr"]] != e["thread"]
                born(e, e["ptr2"])
                reallocs += 1
                moved += e["ptr"] != e["ptr2"]
            elif e["type"] == "free" and e["ptr"] in live:
                live.remove(e["ptr"])
                frees += 1
                cross_thread += owner[e["ptr"]] != e["thread"]
        self.assertEqual(allocs, 4 * 20000)
        self.assertEqual(frees, 4 * 20000)
        # every swap but the first into each slot hands over a block
        self.assertEqual(reallocs, 4 * 20000 - 16 if with_realloc else 0)
        if with_realloc:
            self.assertGreater(moved, 1000)
        self.assertGreater(cross_thread, 20)  # the test did hand blocks over
        self.assertEqual(t.of_type("misuse"), [])

    def test_address_reuse_across_threads_sorts_free_first(self) -> None:
        self.check([lib.program("handoff")], False)

    def test_realloc_that_moves_sorts_before_reuse(self) -> None:
        self.check([lib.program("handoff"), "realloc"], True)


class ForkExecTest(unittest.TestCase):
    def test_fork_child_gets_own_trace(self) -> None:
        r = lib.run([lib.program("forker")])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(r.traces), 2, r.traces)
        traces = [lib.read_trace(p) for p in r.traces]
        parent = next(t for t in traces if t.header["flags"] == 0)
        child = next(t for t in traces if t.header["flags"] == 1)
        fork = parent.of_type("fork")
        self.assertEqual(len(fork), 1)
        self.assertEqual(fork[0]["tid"], child.header["pid"])
        self.assertEqual(child.header["parent_pid"], parent.header["pid"])
        self.assertEqual(child.header["fork_seq"], fork[0]["seq"])
        self.assertEqual(r.stdout, f"child {child.header['pid']} exited 4\n")
        psizes = [e["size"] for e in parent.of_type("alloc") if 6000 < e["size"] < 6010]
        csizes = [e["size"] for e in child.of_type("alloc") if 6000 < e["size"] < 6010]
        self.assertEqual(psizes, [6001, 6003])
        self.assertEqual(csizes, [6002])
        self.assertTrue(parent.summary["clean_exit"] and child.summary["clean_exit"])
        self.assertEqual(child.of_type("end")[0]["size"], 4)
        self.assertGreater(min(e["seq"] for e in child.events if "seq" in e), fork[0]["seq"])
        self.assertEqual(child.events[0]["type"], "process")
        self.assertTrue(child.of_type("module"))

    def test_exec_image_traced(self) -> None:
        r = lib.run([lib.program("forker"), "exec"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(r.traces), 3, r.traces)
        traces = [lib.read_trace(p) for p in r.traces]
        image = next(t for t in traces if t.header["flags"] == 2)
        child = next(t for t in traces if t.header["flags"] == 1)
        self.assertEqual(image.header["pid"], child.header["pid"])
        self.assertTrue(image.path.endswith(f".{image.header['pid']}.1.htr"))
        self.assertEqual([e["size"] for e in image.of_type("alloc") if e["size"] == 6004], [6004])
        self.assertEqual(image.of_type("process")[0]["args"][1:], ["image"])
        self.assertEqual(image.of_type("end")[0]["size"], 5)
        self.assertEqual([e["size"] for e in child.of_type("alloc") if e["size"] == 6002], [6002])
        # The replaced image ended its trace on the way out.
        self.assertEqual([e["kind"] for e in child.of_type("end")], ["exec"])
        self.assertTrue(child.summary["clean_exit"])
        self.assertTrue(image.summary["clean_exit"])

    def test_list_form_execs_pass_arguments_and_environment(self) -> None:
        for form, expected in (("l", "zero|one|inherited"), ("lp", "zero|one|inherited"),
                               ("le", "zero|one|given")):
            r = lib.run([lib.program("forker"), "listforms", form], env={"HTR_FORM": "inherited"})
            self.assertEqual(r.returncode, 0, (form, r.stderr))
            self.assertEqual(r.stdout, expected + "\n", form)
            forker = next(t for t in (lib.read_trace(p) for p in r.traces)
                          if any(e["size"] == 6006 for e in t.of_type("alloc")))
            self.assertEqual([e["kind"] for e in forker.of_type("end")], ["exec"], form)

    def test_failed_exec_keeps_recording(self) -> None:
        r = lib.run([lib.program("forker"), "badexec"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(r.traces), 1)
        t = r.trace()
        self.assertEqual([e["kind"] for e in t.of_type("end")], ["exit"])
        self.assertEqual([e["size"] for e in t.of_type("alloc") if e["size"] == 6005], [6005])
        self.assertTrue(t.summary["clean_exit"])


class ForkStressTest(unittest.TestCase):
    def test_fork_while_threads_allocate(self) -> None:
        r = lib.run([lib.program("forkstress"), "threads"], timeout=60)
        self.assertEqual((r.returncode, r.stdout), (0, "forked 50\n"), r.stderr)
        traces = [lib.read_trace(p) for p in r.traces]
        children = [t for t in traces if t.header["flags"] == 1]
        self.assertEqual(len(children), 50)
        for child in children:
            self.assertEqual([e["size"] for e in child.of_type("alloc") if e["size"] == 9100], [9100])
            self.assertTrue(child.summary["clean_exit"])
        parent = next(t for t in traces if t.header["flags"] == 0)
        self.assertEqual(sorted(e["tid"] for e in parent.of_type("fork")),
                         sorted(t.header["pid"] for t in children))
        self.assertTrue(parent.summary["clean_exit"])
        self.assertEqual(parent.of_type("misuse"), [])

    def test_fork_from_signal_handler_never_hangs(self) -> None:
        r = lib.run([lib.program("forkstress"), "signal"], timeout=60)
        self.assertEqual((r.returncode, r.stdout), (0, "forked from handler\n"), r.stderr)
        traces = [lib.read_trace(p) for p in r.traces]
        parent = next(t for t in traces if t.header["flags"] == 0)
        self.assertTrue(parent.summary["clean_exit"])
        self.assertEqual(parent.of_type("misuse"), [])
        # A fork that interrupted the recorder itself leaves its child
        # untraced (and no FORK record); every other child has a trace.
        children = [t for t in traces if t.header["flags"] == 1]
        self.assertGreater(len(children), 0)
        self.assertEqual(sorted(e["seq"] for e in parent.of_type("fork")),
                         sorted(t.header["fork_seq"] for t in children))


class DlopenTest(unittest.TestCase):
    def test_plugin_allocation_and_module_map(self) -> None:
        r = lib.run([lib.program("loader"), lib.PLUGIN])
        self.assertEqual(r.returncode, 0, r.stderr)
        t = r.trace()
        loads = [e for e in t.of_type("module") if e["text"] == lib.PLUGIN]
        self.assertEqual([e["kind"] for e in loads], ["load", "unload"])
        self.assertTrue(loads[0]["build_id"])
        alloc = [e for e in t.of_type("alloc") if e["size"] == 7007]
        self.assertEqual(len(alloc), 1)
        self.assertLess(loads[0]["seq"], alloc[0]["seq"])
        sym = lib.Symbolizer(t)
        frames = t.stacks[alloc[0]["stack"]]
        self.assertEqual(sym.function(frames[0]), "plugin_alloc")
        self.assertEqual(sym.function(frames[1]), "main")
        after = [e for e in t.of_type("alloc") if e["size"] == 7008]
        self.assertEqual(len(after), 1)
        self.assertLess(loads[1]["seq"], after[0]["seq"])


    def test_unload_recorded_by_the_end(self) -> None:
        r = lib.run([lib.program("loader"), lib.PLUGIN, "quiet"])
        self.assertEqual(r.returncode, 0, r.stderr)
        t = r.trace()
        mods = [e for e in t.of_type("module") if e["text"] == lib.PLUGIN]
        self.assertEqual([e["kind"] for e in mods], ["load", "unload"])
        self.assertLess(mods[1]["seq"], t.of_type("end")[0]["seq"])


class CrashTest(unittest.TestCase):
    def check(self, how: str, status: int) -> None:
        r = lib.run([lib.program("crash"), how])
        self.assertEqual(r.returncode, status, r.stderr)
        t = r.trace()
        self.assertEqual(len([e for e in t.of_type("alloc") if e["size"] == 777]), 1000)
        self.assertFalse(t.summary["clean_exit"])
        self.assertEqual(t.of_type("end"), [])

    def test_exit_underscore(self) -> None:
        self.check("_exit", 9)

    def test_abort(self) -> None:
        self.check("abort", -signal.SIGABRT)

    def test_segv(self) -> None:
        self.check("segv", -signal.SIGSEGV)

    def test_sigkill(self) -> None:
        self.check("kill", -signal.SIGKILL)


class DescriptorTest(unittest.TestCase):
    def test_program_closing_all_descriptors(self) -> None:
        work = lib.mkdtemp(prefix="htr-test-")
        target = os.path.join(work, "data.txt")
        r = lib.run([lib.program("daemonish"), target])
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(target) as f:
            self.assertEqual(f.read(), "hello\nworld\n")
        traces = [lib.read_trace(p) for p in r.traces]
        parent = next(t for t in traces if t.header["flags"] == 0)
        self.assertEqual(len([e for e in parent.of_type("alloc") if e["size"] == 9009]), 50000)
        self.assertTrue(parent.summary["clean_exit"])
        self.assertEqual(parent.summary["lost"], 0)


class OptionsTest(unittest.TestCase):
    def test_bad_value_one_line(self) -> None:
        bare = lib.run([lib.program("basic")], preload=False)
        r = lib.run([lib.program("basic")], env={"HEAPTRAIL_DEPTH": "0"})
        self.assertEqual(r.returncode, 0)
        self.assertEqual(r.stdout, bare.stdout)
        extra = r.stderr.replace(bare.stderr, "", 1).splitlines()
        self.assertEqual(len(extra), 1, r.stderr)
        self.assertTrue(extra[0].startswith("heaptrail: HEAPTRAIL_DEPTH=\"0\""), extra[0])
        self.assertEqual(r.trace().header["max_depth"], 64)

    def test_unknown_variable_one_line(self) -> None:
        r = lib.run([lib.program("basic")], env={"HEAPTRAIL_BOGUS": "1"})
        self.assertEqual(r.returncode, 0)
        lines = [x for x in r.stderr.splitlines() if x.startswith("heaptrail: ")]
        self.assertEqual(len(lines), 1)
        self.assertTrue(lines[0].startswith("heaptrail: HEAPTRAIL_BOGUS: unknown variable"))
        self.assertEqual(len(r.traces), 1)

    def test_unwritable_output_runs_untraced(self) -> None:
        bare = lib.run([lib.program("basic")], preload=False)
        outdir = lib.mkdtemp(prefix="htr-test-")
        r = lib.run([lib.program("basic")], outdir=outdir,
                    env={"HEAPTRAIL_OUTPUT": os.path.join(outdir, "missing")})
        self.assertEqual((r.returncode, r.stdout), (bare.returncode, bare.stdout))
        extra = r.stderr.replace(bare.stderr, "", 1).splitlines()
        self.assertEqual(len(extra), 1, r.stderr)
        self.assertIn("cannot create a trace file", extra[0])
        self.assertEqual(r.traces, [])

    def test_depth(self) -> None:
        r = lib.run([lib.program("basic")], env={"HEAPTRAIL_DEPTH": "2"})
        t = r.trace()
        self.assertEqual(t.header["max_depth"], 2)
        self.assertTrue(t.stacks)
        self.assertTrue(all(1 <= len(f) <= 2 for f in t.stacks.values()))
        # The unwind is asked for few frames: the program's must still be
        # there in full, first one first (leaf_alloc, then main).
        ev = t.between_marks("begin", "end")
        self.assertTrue(all(len(t.stacks[e["stack"]]) == 2 for e in ev))
        sym = lib.Symbolizer(t)
        self.assertEqual([sym.function(f) for f in t.stacks[ev[0]["stack"]]], ["leaf_alloc", "main"])
        calloc = t.stacks[ev[1]["stack"]]
        self.assertEqual(sym.function(calloc[0]), "main")
        r1 = lib.run([lib.program("basic")], env={"HEAPTRAIL_DEPTH": "1"})
        t1 = r1.trace()
        ev1 = t1.between_marks("begin", "end")
        self.assertEqual(lib.Symbolizer(t1).function(t1.stacks[ev1[0]["stack"]][0]), "leaf_alloc")
        self.assertTrue(all(len(t1.stacks[e["stack"]]) == 1 for e in ev1))

    def test_free_depth(self) -> None:
        r = lib.run([lib.program("basic")], env={"HEAPTRAIL_FREE_DEPTH": "2"})
        t = r.trace()
        ev = t.between_marks("begin", "end")
        frees = [e for e in ev if e["type"] == "free"]
        self.assertEqual(len(frees), 8)
        # The frees are main's, four frames or more deep: cut at two.
        self.assertTrue(all(len(t.stacks[e["stack"]]) == 2 for e in frees))
        sym = lib.Symbolizer(t)
        self.assertTrue(all(sym.function(t.stacks[e["stack"]][0]) == "main" for e in frees))
        allocs = [e for e in ev if e["type"] == "alloc"]
        self.assertTrue(all(len(t.stacks[e["stack"]]) > 2 for e in allocs))

    def test_free_depth_zero_keeps_misuse_reports(self) -> None:
        r = lib.run([lib.program("misuse")], env={"HEAPTRAIL_FREE_DEPTH": "0"})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr, "")
        t = r.trace()
        self.assertTrue(all(e["stack"] == 0 for e in t.of_type("free")))
        self.assertTrue(t.of_type("free"))
        ev = t.between_marks("misuse", "after")
        self.assertEqual(brief(ev[:3]), [("alloc", "malloc", 4001, 0), ("free", "free"),
                                         ("misuse", "double_free", "free", "malloc")])
        double = ev[2]
        self.assertEqual(double["alloc_stack"], ev[0]["stack"])
        self.assertEqual(double["free_stack"], 0)
        # The bad call itself is still unwound in full.
        sym = lib.Symbolizer(t)
        self.assertEqual(sym.function(t.stacks[double["stack"]][0]), "main")
        self.assertGreater(len(t.stacks[double["stack"]]), 1)
        kinds = [e["kind"] for e in ev if e["type"] == "misuse"]
        self.assertEqual(kinds, ["double_free"] + ["invalid_free"] * 4 + ["mismatch"] * 4)
        self.assertTrue(all(e["stack"] != 0 for e in ev if e["type"] == "misuse"))


class MemoryTest(unittest.TestCase):
    def test_resident_size_bounded_while_trace_grows(self) -> None:
        """Filled chunks, and those of threads that ended, leave the process:
        the peak RSS stays small while the trace holds every event."""
        pairs, threads = 600000, 400
        r = lib.run([lib.program("churn"), str(pairs), str(threads)])
        self.assertEqual(r.returncode, 0, r.stderr)
        hwm_kb = int(r.stdout.split()[1])
        size = os.path.getsize(r.traces[0])
        self.assertGreater(size, 40 << 20)
        # Without retiring chunks: about 43 MB for the pairs, plus a chunk
        # (HEAPTRAIL_CHUNK_KB) for each of the 400 threads.
        self.assertLess(hwm_kb, 16 << 10, f"peak RSS {hwm_kb} kB for a {size >> 20} MB trace")
        out = subprocess.run([lib.DUMP, r.traces[0]], capture_output=True, text=True, check=True)
        frees = allocs = starts = exits = 0
        for line in out.stdout.splitlines():
            if line.startswith('{"type": "free"'):
                frees += 1
            elif line.startswith('{"type": "alloc"'):
                allocs += 1
            elif line.startswith('{"type": "thread"'):
                starts += '"start"' in line
                exits += '"exit"' in line
        summary = json.loads(out.stdout.splitlines()[-1])
        self.assertTrue(summary["clean_exit"])
        self.assertEqual(summary["lost"], 0)
        self.assertGreaterEqual(frees, pairs + threads * 100)
        self.assertGreaterEqual(allocs, pairs + threads * 100)
        self.assertEqual(exits, threads)
        self.assertEqual(starts, threads + 1)


if __name__ == "__main__":
    unittest.main(verbosity=2)
