"""The `heaptrail` command's contract with a user who gets it wrong: one line
on stderr naming what is wrong, exit status 2, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import unittest

HEAPTRAIL = os.environ.get("HEAPTRAIL", "")


def heaptrail(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, HEAPTRAIL, *args], capture_output=True, text=True,
                          timeout=60, check=False)


@unittest.skipUnless(HEAPTRAIL and os.path.exists(HEAPTRAIL), "no build/heaptrail launcher")
class BadUsage(unittest.TestCase):
    def assert_one_line(self, args: tuple[str, ...], *expected: str) -> None:
        r = heaptrail(*args)
        self.assertEqual(r.returncode, 2, (args, r.stderr))
        lines = r.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, (args, r.stderr))
        self.assertNotIn("Traceback", r.stderr)
        for text in expected:
            self.assertIn(text, lines[0], args)

    def test_usage_errors_are_one_line_per_subcommand(self) -> None:
        self.assert_one_line(("bogus",), "heaptrail:", "invalid choice: 'bogus'", "see heaptrail --help")
        self.assert_one_line(("report",), "heaptrail report:", "INPUT", "see heaptrail report --help")
        self.assert_one_line(("report", "--format", "xml", "x"), "invalid choice: 'xml'")
        self.assert_one_line(("diff", "only-one"), "heaptrail diff:", "NEW")
        self.assert_one_line(("capture", "--tcp", "127.0.0.1:1"), "heaptrail capture:", "-o/--output")
        self.assert_one_line(("pack",), "heaptrail pack:", "TRACE")
        self.assert_one_line(("dump",), "heaptrail dump:", "TRACE")
        self.assert_one_line(("run",), "heaptrail run:", "no program given")
        self.assert_one_line(("run", "--depth", "0", "--", "true"), "--depth 0")

    def test_inputs_that_are_not_files(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            self.assert_one_line(("report", os.path.join(tmp, "missing.htr")), "missing.htr: no such file")
            self.assert_one_line(("report", tmp), "is a directory")
            self.assert_one_line(("report", "/dev/null"), "/dev/null: not a regular file")
            text = os.path.join(tmp, "notes.txt")
            with open(text, "w", encoding="utf-8") as handle:
                handle.write("just some text\n" * 300)
            self.assert_one_line(("dump", text), "notes.txt: not a heaptrail trace (bad magic at offset 0)")
            self.assert_one_line(("pack", text), "notes.txt")


if __name__ == "__main__":
    unittest.main()
