"""The `heaptrail` command's contract with a user who gets it wrong: one line
on stderr naming what is wrong, exit status 2, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import unittest

HEAPTRAIL = os.environ.get("HEAPTRAIL", "")
TOOLS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools")


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


class StartUp(unittest.TestCase):
    """Every `heaptrail report` in CI pays the start-up: a named subcommand
    imports its own module only, and nothing heavy it does not use."""

    def modules_after(self, argv: list[str]) -> set[str]:
        code = (
            "import sys\n"
            f"sys.path.insert(0, {TOOLS!r})\n"
            "from heaptrail import cli\n"
            f"cli.build_parser(cli._named_command({argv!r})).parse_args({argv!r})\n"
            "print('\\n'.join(sys.modules))\n"
        )
        r = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=60,
                           check=False)
        self.assertEqual(r.returncode, 0, r.stderr)
        return set(r.stdout.split())

    def test_report_imports_only_report(self) -> None:
        mods = self.modules_after(["report", "--format", "json", "trace.htr"])
        self.assertIn("heaptrail.report_cmd", mods)
        for other in ("run", "diff", "capture", "pack", "dump"):
            self.assertNotIn(f"heaptrail.{other}_cmd", mods)
        for heavy in ("dataclasses", "inspect", "typing", "shutil", "subprocess", "xml.etree.ElementTree", "hashlib", "socket"):
            self.assertNotIn(heavy, mods)

    @unittest.skipUnless(HEAPTRAIL and os.path.exists(HEAPTRAIL), "no build/heaptrail launcher")
    def test_help_still_lists_every_subcommand(self) -> None:
        r = heaptrail("--help")
        self.assertEqual(r.returncode, 0, r.stderr)
        for name in ("run", "report", "diff", "capture", "pack", "dump"):
            self.assertRegex(r.stdout, rf"\n    {name}\s")

    def test_records_behave_like_dataclasses(self) -> None:
        sys.path.insert(0, TOOLS)
        from heaptrail.records import record

        @record(frozen=True)
        class Point:
            x: int
            y: int = 0

        @record()
        class Box:
            name: str
            size: int = 1

        self.assertEqual(Point(1), Point(x=1, y=0))
        self.assertNotEqual(Point(1), Point(1, 2))
        self.assertEqual(len({Point(1, 2), Point(1, 2)}), 1)
        self.assertEqual(repr(Point(1, 2)), "Point(x=1, y=2)")
        with self.assertRaises(AttributeError):
            Point(1).x = 2  # type: ignore[misc]
        box = Box("a")
        box.size = 3
        self.assertEqual(box, Box("a", 3))
        with self.assertRaises(TypeError):
            hash(box)
        with self.assertRaises(TypeError):
            Box()  # type: ignore[call-arg]
        with self.assertRaises(TypeError):
            Box("a", 1, 2)  # type: ignore[call-arg]
        with self.assertRaises(TypeError):
            Box("a", name="b")  # type: ignore[misc]


if __name__ == "__main__":
    unittest.main()
