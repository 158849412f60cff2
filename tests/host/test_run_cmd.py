"""`heaptrail run`: the program keeps its streams and exit status, traces
of the process and its children are listed, LD_PRELOAD is appended to, and
--error-exitcode turns report findings into a status."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import types
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import htr_testlib as lib  # noqa: E402

PACK = os.path.join(os.path.dirname(lib.DUMP), "htr-pack") if lib.DUMP else ""


def heaptrail(args: list[str], cwd: str | None = None,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("HEAPTRAIL_") and k != "LD_PRELOAD"}
    full.update(env or {})
    return subprocess.run([lib.LAUNCHER, *args], capture_output=True, text=True,
                          cwd=cwd, env=full, timeout=120)


@unittest.skipUnless(lib.LAUNCHER and os.path.exists(lib.LAUNCHER), "no build/heaptrail launcher")
class RunCommandTest(unittest.TestCase):
    def test_streams_status_and_listing(self) -> None:
        out = lib.mkdtemp(prefix="htr-run-")
        bare = lib.run([lib.program("basic")], preload=False)
        r = heaptrail(["run", "-o", out, "--no-report", "--", lib.program("basic")])
        self.assertEqual(r.returncode, bare.returncode)
        self.assertEqual(r.stdout, bare.stdout)
        self.assertTrue(r.stderr.startswith(bare.stderr), r.stderr)
        listing = r.stderr[len(bare.stderr):].splitlines()
        traces = [n for n in os.listdir(out) if n.endswith(".htr")]
        self.assertEqual(len(traces), 1)
        self.assertEqual(listing[0], f"heaptrail run: 1 trace file in {out}:")
        self.assertRegex(listing[1], r"^  heaptrail\.\d+\.0\.htr  \(pid \d+\)$")
        self.assertRegex(listing[2], r"^heaptrail run: packed 1 trace: \d+(\.\d [KM]iB| bytes) -> \d+(\.\d [KM]iB| bytes)$")
        self.assertEqual(len(listing), 3)
        path = os.path.join(out, traces[0])
        with open(path, "rb") as handle:
            self.assertEqual(handle.read(8), b"HTRPACK\0")
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
        t = lib.read_trace(path)
        self.assertTrue(t.summary["clean_exit"])

    def test_no_pack_keeps_the_raw_trace_and_both_read_the_same(self) -> None:
        kinds = []
        for extra in (["--no-pack"], []):
            out = lib.mkdtemp(prefix="htr-run-")
            r = heaptrail(["run", "-o", out, "--no-report", *extra, "--", lib.program("basic")])
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual("packed" in r.stderr, not extra)
            (name,) = [n for n in os.listdir(out) if n.endswith(".htr")]
            with open(os.path.join(out, name), "rb") as handle:
                self.assertEqual(handle.read(8), b"HTRTRACE" if extra else b"HTRPACK\0")
            t = lib.read_trace(os.path.join(out, name))
            kinds.append([(e["type"], e.get("call"), e.get("size")) for e in t.events
                          if e["type"] in ("alloc", "free", "realloc")])
        self.assertGreater(len(kinds[0]), 0)
        self.assertEqual(kinds[0], kinds[1])

    def test_pack_spreads_traces_over_packers_and_keeps_their_order(self) -> None:
        out = lib.mkdtemp(prefix="htr-pack-")
        for _ in range(5):
            lib.run([lib.program("basic")], outdir=out)
        traces = sorted(os.path.join(out, n) for n in os.listdir(out) if n.endswith(".htr"))
        self.assertEqual(len(traces), 5)
        before = [[(e["type"], e.get("ptr"), e.get("size")) for e in lib.read_trace(t).events] for t in traces]
        r = heaptrail(["pack", *traces])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual([line.split(":")[0] for line in r.stdout.splitlines()], traces)
        for path, events in zip(traces, before):
            with open(path, "rb") as handle:
                self.assertEqual(handle.read(8), b"HTRPACK\0")
            self.assertEqual([(e["type"], e.get("ptr"), e.get("size")) for e in lib.read_trace(path).events],
                             events)

    def test_a_process_still_running_keeps_its_trace_raw(self) -> None:
        # sh puts a sleep in the background, waits until it has exec'd, and
        # exits; that sleep outlives the run and may still write: packing its
        # trace would lose what comes after. Every trace no process writes
        # any more is packed, including the fork child's image that exec
        # replaced although its pid lives on.
        out = lib.mkdtemp(prefix="htr-run-")
        r = heaptrail(["run", "-o", out, "--no-report", "--", "/bin/sh", "-c",
                       "sleep 4 >/dev/null 2>&1 & sleep 0.5; echo started"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "started\n")
        forms = {}
        for name in os.listdir(out):
            with open(os.path.join(out, name), "rb") as handle:
                forms[name] = handle.read(8)
        raw = [n for n, magic in forms.items() if magic == b"HTRTRACE"]
        packed = [n for n, magic in forms.items() if magic == b"HTRPACK\0"]
        self.assertEqual(len(raw), 1, forms)
        self.assertEqual(len(packed), len(forms) - 1, forms)
        still_running = lib.read_trace(os.path.join(out, raw[0]))
        self.assertEqual(still_running.of_type("process")[0]["args"][1:], ["4"])
        # The same pid's image before the exec: its pid is alive, but no
        # process writes that trace any more.
        pid = raw[0].split(".")[1]
        self.assertIn(f"heaptrail.{pid}.0.htr", packed)
        self.assertEqual(raw[0], f"heaptrail.{pid}.1.htr")

    def test_fork_and_exec_traces_listed(self) -> None:
        out = lib.mkdtemp(prefix="htr-run-")
        r = heaptrail(["run", "-o", out, "--no-report", "--", lib.program("forker"), "exec"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("heaptrail run: 3 trace files in", r.stderr)
        self.assertRegex(r.stderr, r"\(pid \d+, fork child of \d+\)")
        self.assertRegex(r.stderr, r"\(pid \d+, exec'd image\)")

    def test_exit_status_and_signals(self) -> None:
        out = lib.mkdtemp(prefix="htr-run-")
        for how, status in (("_exit", 9), ("segv", 128 + signal.SIGSEGV), ("abort", 128 + signal.SIGABRT)):
            r = heaptrail(["run", "-o", out, "--no-report", "--", lib.program("crash"), how])
            self.assertEqual(r.returncode, status, how)

    def test_preload_appended_and_options_passed(self) -> None:
        out = lib.mkdtemp(prefix="htr-run-")
        libm = "/lib/x86_64-linux-gnu/libm.so.6"
        if not os.path.exists(libm):
            self.skipTest("no libm at the Debian path")
        script = "import os; print(os.environ['LD_PRELOAD']); print(os.environ['HEAPTRAIL_DEPTH'])"
        r = heaptrail(["run", "-o", out, "--no-report", "--depth", "7", "--", sys.executable, "-c", script],
                      env={"LD_PRELOAD": libm})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.splitlines(), [f"{libm} {lib.SHIM}", "7"])

    def test_default_output_dir(self) -> None:
        cwd = lib.mkdtemp(prefix="htr-run-")
        r = heaptrail(["run", "--no-report", "--", lib.program("basic")], cwd=cwd)
        self.assertEqual(r.returncode, 0, r.stderr)
        dirs = [d for d in os.listdir(cwd) if d.startswith("heaptrail-")]
        self.assertEqual(len(dirs), 1)
        self.assertEqual(len(os.listdir(os.path.join(cwd, dirs[0]))), 1)

    def test_usage_errors_one_line(self) -> None:
        for args in (["run"], ["run", "--", "/nonexistent/program"], ["run", "--depth", "0", "--", "true"]):
            r = heaptrail(args)
            self.assertEqual(r.returncode, 2, args)
            self.assertEqual(len(r.stderr.splitlines()), 1, r.stderr)
            self.assertTrue(r.stderr.startswith("heaptrail run: "), r.stderr)
            self.assertNotIn("Traceback", r.stderr)

    def test_error_exitcode_with_report(self) -> None:
        out = lib.mkdtemp(prefix="htr-run-")
        r = heaptrail(["run", "-o", out, "--error-exitcode", "42", "--", lib.program("misuse")])
        if "report" not in r.stderr.lower() and "RESULT" not in r.stderr:
            self.skipTest("no report in this build")
        self.assertEqual(r.stdout, "still running\n")
        self.assertEqual(r.returncode, 42, r.stderr[-2000:])
        # Without the option the program's own status stands.
        r = heaptrail(["run", "-o", out, "--", lib.program("misuse")])
        self.assertEqual(r.returncode, 0)
        # And a clean program does not trigger it.
        r = heaptrail(["run", "-o", out, "--error-exitcode", "42", "--", lib.program("sites")])
        self.assertNotEqual(r.returncode, 42, r.stderr[-2000:])

    def _follow(self, argv: list[str]) -> tuple[str, str, "subprocess.CompletedProcess[str]"]:
        """Runs argv under the recorder with `htr-pack --follow` beside it, as
        `heaptrail run` does; returns the raw trace, the streamed pack and
        the follower's result."""
        out = lib.mkdtemp(prefix="htr-follow-")
        env = {k: v for k, v in os.environ.items() if not k.startswith("HEAPTRAIL_") and k != "LD_PRELOAD"}
        env.update({"LD_PRELOAD": lib.SHIM, "HEAPTRAIL_OUTPUT": out, "HEAPTRAIL_CHUNK_KB": "16"})
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        raw = os.path.join(out, f"heaptrail.{proc.pid}.0.htr")
        streamed = os.path.join(out, "streamed.htr")
        follower = subprocess.Popen([PACK, "--follow", str(proc.pid), raw, "-o", streamed],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        fout, ferr = follower.communicate(timeout=120)
        proc.wait()
        return raw, streamed, subprocess.CompletedProcess(follower.args, follower.returncode, fout, ferr)

    @unittest.skipUnless(os.access(PACK, os.X_OK), "no htr-pack")
    def test_streamed_pack_is_the_post_exit_pack(self) -> None:
        # A multi-threaded program (workers, short-lived threads), one that
        # crashes and one killed with SIGKILL: the file packed while they ran
        # is byte for byte the one packed after the exit, and it holds every
        # event they committed.
        crash = lib.program("crash")
        cases = ((lib.program("threads"), None), (crash, "segv"), (crash, "kill"))
        for program, how in cases:
            raw, streamed, r = self._follow([program] + ([how] if how else []))
            self.assertEqual(r.returncode, 0, r.stderr)
            post = raw + ".post"
            p = subprocess.run([PACK, raw, "-o", post], capture_output=True, text=True)
            self.assertEqual(p.returncode, 0, p.stderr)
            with open(streamed, "rb") as a, open(post, "rb") as b:
                self.assertEqual(a.read(), b.read(), (program, how, r.stderr))
            t = lib.read_trace(streamed)
            if how:
                self.assertEqual(len([e for e in t.of_type("alloc") if e.get("size") == 777]), 1000)
                self.assertFalse(t.summary["clean_exit"])
            else:
                self.assertTrue(t.summary["clean_exit"])
            raw_events = lib.read_trace(raw).events
            self.assertEqual(t.events, raw_events)

    @unittest.skipUnless(os.access(PACK, os.X_OK), "no htr-pack")
    def test_follow_errors_one_line(self) -> None:
        dead = subprocess.Popen(["true"])
        dead.wait()
        for args in (["--follow", str(dead.pid), "/nonexistent/t.htr"], ["--follow", "x", "t.htr"],
                     ["--follow", "1", "a.htr", "b.htr"]):
            r = subprocess.run([PACK, *args], capture_output=True, text=True)
            self.assertEqual(r.returncode, 2, args)
            self.assertTrue(r.stderr.startswith("htr-pack: ") or r.stderr.startswith("usage:"), r.stderr)
            if r.stderr.startswith("htr-pack: "):
                self.assertEqual(len(r.stderr.splitlines()), 1, r.stderr)
        r = subprocess.run([PACK, "--follow", str(dead.pid), "t.htr"], capture_output=True, text=True)
        self.assertEqual(r.stderr, f"htr-pack: pid {dead.pid}: no such process\n")

    def test_run_packs_while_the_program_runs_and_falls_back(self) -> None:
        # Packed by the follower (it leaves no raw file and no temporary
        # behind), and the same events as a run packed after the exit.
        for how in (None, "kill"):
            out = lib.mkdtemp(prefix="htr-run-")
            argv = [lib.program("crash")] + ([how] if how else [])
            r = heaptrail(["run", "-o", out, "--no-report", "--", *argv])
            self.assertIn("heaptrail run: packed 1 trace:", r.stderr)
            (name,) = os.listdir(out)
            with open(os.path.join(out, name), "rb") as handle:
                self.assertEqual(handle.read(8), b"HTRPACK\0")
            t = lib.read_trace(os.path.join(out, name))
            self.assertEqual(len([e for e in t.of_type("alloc") if e.get("size") == 777]), 1000)
        # A follower that fails (here: a packer that only fails) leaves the
        # trace to be packed after the exit, as any other.
        sys.path.insert(0, os.path.join(lib.SOURCE, "..", "..", "tools"))
        from heaptrail import run_cmd  # noqa: E402

        done = lib.run([lib.program("basic")])
        follower = run_cmd._start_follower(types.SimpleNamespace(pack="/bin/false"), done.outdir, set(), 1)
        self.assertIsNotNone(follower)
        self.assertEqual(run_cmd._follower_lines(follower), [])
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            run_cmd._pack(types.SimpleNamespace(pack=PACK), done.traces, [])
        self.assertIn("heaptrail run: packed 1 trace:", err.getvalue())
        with open(done.traces[0], "rb") as handle:
            self.assertEqual(handle.read(8), b"HTRPACK\0")

    def test_follower_spawned_alone_at_the_default_level(self) -> None:
        # The follower is started without subprocess: its own session,
        # stdin and stderr on /dev/null, stdout to the launcher, nothing
        # else inherited, and the packer's own default level, which must
        # be the one `heaptrail pack` uses.
        sys.path.insert(0, os.path.join(lib.SOURCE, "..", "..", "tools"))
        from heaptrail import pack_cmd, run_cmd  # noqa: E402

        out = lib.mkdtemp(prefix="htr-spawn-")
        tool = os.path.join(out, "fake-pack")
        with open(tool, "w") as handle:
            handle.write("#!/bin/sh\n"
                         "{ echo \"args $*\"; ls /proc/self/fd | sort -n | tr '\\n' ' '; echo;\n"
                         "  readlink /proc/self/fd/0 /proc/self/fd/2; cut -d' ' -f6 /proc/$$/stat; echo \"pid $$\"\n"
                         "} > \"$3.info\"\n"
                         "echo \"$3: 1 records, 2 -> 3 bytes\"\n")
        os.chmod(tool, 0o755)
        keep_r, keep_w = os.pipe()
        os.set_inheritable(keep_w, True)
        try:
            follower = run_cmd._start_follower(types.SimpleNamespace(pack=tool), out, {"heaptrail.42.0.htr"}, 42)
            self.assertIsNotNone(follower)
            self.assertEqual(run_cmd._follower_lines(follower), [])  # its output is no packed trace
        finally:
            os.close(keep_r)
            os.close(keep_w)
        path = os.path.join(out, "heaptrail.42.1.htr")
        with open(path + ".info") as handle:
            info = handle.read().splitlines()
        self.assertEqual(info[0], f"args --follow 42 {path}")
        self.assertEqual(info[1].split(), ["0", "1", "2", "3"])  # 3: the directory ls reads
        self.assertEqual(info[2:4], [os.devnull, os.devnull])
        self.assertEqual(info[4].strip(), info[5].split()[1])  # session leader
        with open(path, "wb") as handle:
            handle.write(b"HTRPACK\0")
        follower = run_cmd._start_follower(types.SimpleNamespace(pack=tool), out, {"heaptrail.42.0.htr"}, 42)
        self.assertEqual(run_cmd._follower_lines(follower), [f"{path}: 1 records, 2 -> 3 bytes"])
        if os.access(PACK, os.X_OK):
            usage = subprocess.run([PACK, "--help"], capture_output=True, text=True).stdout
            self.assertIn(f"(default {pack_cmd.DEFAULT_LEVEL};", usage)


if __name__ == "__main__":
    unittest.main(verbosity=2)
