"""Real programs under the recorder: python3 with threads, git, sqlite3 and
xz -T2 must print the same and exit the same with and without it, and leave
complete traces with events and no false misuse reports."""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import htr_testlib as lib  # noqa: E402

PY_SCRIPT = r"""
import threading, json, hashlib
results = {}
def work(n):
    d = {i: str(i) * (n + 1) for i in range(20000)}
    results[n] = hashlib.sha256(json.dumps(d).encode()).hexdigest()[:12]
threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
for t in threads: t.start()
for t in threads: t.join()
print(sorted(results.items()))
"""


class RealProgramsTest(unittest.TestCase):
    def same_with_and_without(self, argv: list[str], cwd_factory=None, env=None) -> lib.Run:
        cwd_a = cwd_factory() if cwd_factory else None
        cwd_b = cwd_factory() if cwd_factory else None
        bare = lib.run(argv, preload=False, cwd=cwd_a, env=env)
        traced = lib.run(argv, cwd=cwd_b, env=env)
        self.assertEqual(traced.returncode, bare.returncode, traced.stderr)
        self.assertEqual(traced.stdout, bare.stdout)
        self.assertEqual(traced.stderr, bare.stderr)
        self.check_traces(traced)
        return traced

    def check_traces(self, r: lib.Run) -> None:
        self.assertTrue(r.traces, "no trace written")
        total = 0
        for path in r.traces:
            t = lib.read_trace(path)
            self.assertTrue(t.summary["clean_exit"], path)
            self.assertEqual(t.summary["lost"], 0, path)
            self.assertEqual(t.of_type("misuse"), [], path)
            total += len(t.of_type("alloc")) + len(t.of_type("realloc"))
        self.assertGreater(total, 100)

    def test_python_threads(self) -> None:
        r = self.same_with_and_without([sys.executable, "-c", PY_SCRIPT])
        self.assertTrue(r.stdout.startswith("[(0, "))
        t = lib.read_trace(r.traces[-1])
        self.assertGreaterEqual(len([e for e in t.of_type("thread") if e["kind"] == "start"]), 9)

    @unittest.skipUnless(shutil.which("git"), "git not installed")
    def test_git(self) -> None:
        env = {"GIT_AUTHOR_DATE": "2020-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2020-01-01T00:00:00Z",
               "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
               "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
               "GIT_CONFIG_NOSYSTEM": "1", "HOME": lib.mkdtemp(prefix="htr-home-")}
        repos = [lib.mkdtemp(prefix="htr-git-") for _ in range(2)]
        for repo in repos:
            for n in range(50):
                with open(os.path.join(repo, f"f{n}.txt"), "w") as f:
                    f.write(f"file {n}\n" * (n + 1))
        steps = [["git", "init", "-q", "-b", "main", "."], ["git", "add", "."],
                 ["git", "commit", "-q", "-m", "first"], ["git", "log", "--stat"],
                 ["git", "status", "--porcelain=v1", "--branch"]]
        for step in steps:
            bare = lib.run(step, preload=False, cwd=repos[0], env=env)
            traced = lib.run(step, cwd=repos[1], env=env)
            self.assertEqual((traced.returncode, traced.stdout, traced.stderr),
                             (bare.returncode, bare.stdout, bare.stderr), step)
            self.check_traces(traced)

    @unittest.skipUnless(shutil.which("sqlite3"), "sqlite3 not installed")
    def test_sqlite3(self) -> None:
        query = """
        CREATE TABLE t(a INTEGER, b TEXT);
        WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 200000)
        INSERT INTO t SELECT x, printf('row-%d-%s', x, hex(x * 7919)) FROM c;
        CREATE INDEX tb ON t(b);
        SELECT a % 97 AS k, count(*), sum(a), max(b) FROM t GROUP BY k ORDER BY k LIMIT 20;
        SELECT count(DISTINCT substr(b, 1, 8)) FROM t;
        """
        r = self.same_with_and_without(["sqlite3", ":memory:", query])
        self.assertEqual(len(r.stdout.splitlines()), 21)

    @unittest.skipUnless(shutil.which("xz"), "xz not installed")
    def test_xz_threads(self) -> None:
        work = lib.mkdtemp(prefix="htr-xz-")
        data = os.path.join(work, "data")
        with open(data, "wb") as f:
            block = hashlib.sha256(b"seed").digest()
            for i in range(200000):
                block = hashlib.sha256(block).digest()
                f.write(block[: 8 + i % 24] + b"heaptrail " * (i % 5))
        packed = {}
        for preload in (False, True):
            out = os.path.join(work, f"data.{int(preload)}.xz")
            r = lib.run(["xz", "-T2", "-6", "--block-size=1MiB", "-c", data], preload=preload,
                        stdout_path=out)
            self.assertEqual((r.returncode, r.stderr), (0, ""))
            with open(out, "rb") as f:
                packed[preload] = f.read()
            if preload:
                self.check_traces(r)
                t = lib.read_trace(r.traces[0])
                # Really threaded: the main thread and at least two workers.
                starts = [e for e in t.of_type("thread") if e["kind"] == "start"]
                self.assertGreaterEqual(len(starts), 3)
        # Same xz, same options, same input: the same bytes.
        self.assertEqual(hashlib.sha256(packed[True]).hexdigest(),
                         hashlib.sha256(packed[False]).hexdigest())
        with open(data, "rb") as f:
            expected = hashlib.sha256(f.read()).hexdigest()
        for preload in (False, True):
            out = os.path.join(work, f"back.{int(preload)}")
            r = lib.run(["xz", "-T2", "-d", "-c", f"{work}/data.1.xz"], preload=preload,
                        stdout_path=out)
            self.assertEqual((r.returncode, r.stderr), (0, ""))
            with open(out, "rb") as f:
                self.assertEqual(hashlib.sha256(f.read()).hexdigest(), expected)
            if preload:
                self.check_traces(r)

if __name__ == "__main__":
    unittest.main(verbosity=2)
