"""The `heaptrail` command's contract with a user who gets it wrong: one line
on stderr naming what is wrong, exit status 2, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import unittest

HEAPTRAIL = os.environ.get("HEAPTRAIL", "")
ENGINE = os.environ.get("HTR_ENGINE", "")
FRONT_PROBE = os.environ.get("HTR_FRONT_PROBE", "")
FRONT_PROBE_GONE = os.environ.get("HTR_FRONT_PROBE_GONE", "")
SHIM = os.environ.get("HTR_SHIM", "")
PACK = os.environ.get("HTR_PACK", "")
TOOLS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools")


def heaptrail(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([HEAPTRAIL, *args], capture_output=True, text=True,
                          timeout=60, check=False)


def python_snippet(body: str, *args: str) -> subprocess.CompletedProcess[str]:
    """body run by a fresh interpreter as the launcher starts one (-S), with
    heaptrail importable from the tree and args as sys.argv[1:]: what a
    module imports shows only in a process of its own."""
    code = f"import sys\nsys.path.insert(0, {TOOLS!r})\n" + body
    return subprocess.run([sys.executable, "-S", "-c", code, *args], capture_output=True, text=True,
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

    def test_report_with_standard_output_closed(self) -> None:
        """Started with descriptor 1 closed (`>&-`), a report to stdout says
        so in one line; one to -o FILE is written as usual."""
        with tempfile.TemporaryDirectory() as tmp:
            log, out = os.path.join(tmp, "a.log"), os.path.join(tmp, "out.json")
            with open(log, "w", encoding="utf-8") as handle:
                handle.write("==MP alloc;16;0x1000;a.c:1\n")
            for args, status in ((("--format", "json", log), 2), (("--format", "json", "-o", out, log), 1)):
                with self.subTest(args=args):
                    r = subprocess.run([HEAPTRAIL, "report", *args], stdout=None, stderr=subprocess.PIPE,
                                       text=True, timeout=60, check=False, preexec_fn=lambda: os.close(1))
                    self.assertEqual(r.returncode, status, r.stderr)  # 1: the leak, reported to the file
                    self.assertNotIn("Traceback", r.stderr)
            self.assertEqual(r.stderr, "")
            with open(out, encoding="utf-8") as handle:
                self.assertIn('"leaked_bytes": 16', handle.read())

    @unittest.skipUnless(SHIM and os.path.exists(SHIM), "no recorder")
    def test_run_with_standard_output_closed(self) -> None:
        """The report of a run goes to stderr: a closed stdout changes nothing."""
        with tempfile.TemporaryDirectory() as tmp:
            r = subprocess.run([HEAPTRAIL, "run", "-o", tmp, "--", "true"], stdout=None, stderr=subprocess.PIPE,
                               text=True, timeout=60, check=False, preexec_fn=lambda: os.close(1))
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertNotIn("Traceback", r.stderr)
            self.assertIn("RESULT: OK", r.stderr)

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
        r = python_snippet(
            "from heaptrail import cli\n"
            f"cli.build_parser(cli._named_command({argv!r})).parse_args({argv!r})\n"
            "print('\\n'.join(sys.modules))\n"
        )
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


class TwoLogs(unittest.TestCase):
    """Two one-line valground logs in a scratch directory: a (a leak of 16
    bytes) and b (32), with heaptrail importable from the tree."""

    A_NAME = "a.log"

    @classmethod
    def setUpClass(cls) -> None:
        sys.path.insert(0, TOOLS)
        cls.tmp = tempfile.TemporaryDirectory()
        cls.a = os.path.join(cls.tmp.name, cls.A_NAME)
        cls.b = os.path.join(cls.tmp.name, "b.log")
        for path, size in ((cls.a, 16), (cls.b, 32)):
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(f"==MP alloc;{size};0x1000;a.c:1\n")

    @classmethod
    def tearDownClass(cls) -> None:
        cls.tmp.cleanup()


class EarlyEngine(TwoLogs):
    """`heaptrail report` starts the engine before argparse has read the
    command line (report_early): the early reading must agree with
    argparse's whenever it dares one, and an engine it started for nothing
    must never be taken for the right one."""

    def report_parser(self):  # type: ignore[no-untyped-def]
        from heaptrail import cli

        parser = cli.build_parser("report")
        return parser, parser._subparsers._group_actions[0].choices["report"]  # type: ignore[union-attr]

    def test_plain_command_lines_read_as_argparse_reads_them(self) -> None:
        from heaptrail import report_early

        parser, _ = self.report_parser()
        a, b = self.a, self.b
        sure = [
            [a],
            ["--format", "json", a, b],
            ["--format=json", a],
            [a, b, "--format", "sarif", "-q"],
            ["--input-format", "valground", a],
            ["--input-format=mtrace", "--input-format", "auto", a],
            ["-o", "out.json", "-q", a],
            ["-o", "-", a],
            ["--output=-x", a],
            ["--fail-on", "leak", "--suppressions", "x.supp", "--suppressions=y.supp", a],
            ["--no-symbols", "--color", "never", "--no-default-suppressions", a],
            ["--debug-dir", "d", "--elf", "fw.elf", "--sysroot", "/", "--debug-dir", "e", "--baseline", "b.json", a],
            ["--write-baseline", "w.json", "--quiet", "--output", "o.txt", a],
            ["--", a, b],
            ["-q", "--", "--format", a],
            ["missing.log", "-"],
            ["--fail-on", "", "--sysroot=", ""],
        ]
        for args in sure:
            with self.subTest(args=args):
                expected = vars(parser.parse_args(["report", *args]))
                got = report_early.parse(args)
                self.assertIsNotNone(got)
                got = vars(report_early.complete(got))
                self.assertEqual(got, expected)
        unsure = [
            [],
            ["--help"],
            ["-h", a],
            ["--inp", "valground", a],
            ["--input-format", "xml", a],
            ["--format", "xml", a],
            ["--color", "yes", a],
            ["-qo", "out.json", a],
            ["-oout.json", a],
            ["-o=out.json", a],
            ["--quiet=1", a],
            ["--output", "-x", a],
            ["--sysroot", "-1", a],
            ["--format"],
            ["--version", a],
            [a, "--format", "json", b],
            [a, "--", b],
            ["--"],
            ["-1"],
        ]
        for args in unsure:
            with self.subTest(args=args):
                self.assertIsNone(report_early.parse(args))

    def test_option_tables_are_the_parsers(self) -> None:
        from heaptrail import report_early

        _, report = self.report_parser()
        options = {}
        for action in report._actions:
            if not action.option_strings or "--help" in action.option_strings:
                continue
            kind = "flag" if action.nargs == 0 else "append" if action.default == [] else "value"
            for name in action.option_strings:
                options[name] = (action.dest, kind)
            if action.choices is not None:
                self.assertEqual(tuple(action.choices), report_early.CHOICES[action.dest])
        self.assertEqual(options, report_early.OPTIONS)

    def test_plain_report_does_not_import_argparse(self) -> None:
        r = python_snippet(
            "from heaptrail import report_early\n"
            f"report_early.complete(report_early.parse(['--format', 'json', {self.a!r}]))\n"
            "print('\\n'.join(sys.modules))\n"
        )
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("heaptrail.report_cmd", r.stdout.split())
        self.assertNotIn("argparse", r.stdout.split())

    @unittest.skipUnless(ENGINE and os.path.exists(ENGINE), "no htr-engine")
    def test_plain_report_does_not_import_re(self) -> None:
        """re (with enum, functools, collections: ~6 ms of CPU, taken from
        the engine running meanwhile) stays out of a JSON, SARIF or text
        report with the default suppressions: json and fnmatch import it."""
        for fmt in ("json", "sarif", "text"):
            with self.subTest(fmt=fmt):
                r = python_snippet(
                    "from heaptrail import cli, report_early\n"
                    f"args = report_early.complete(report_early.parse(['--format', {fmt!r}, {self.a!r}]))\n"
                    f"status = args.func(args, cli.Paths(shim='', engine={ENGINE!r}, dump=''))\n"
                    "print(status, ' '.join(sys.modules), file=sys.stderr)\n"
                )
                self.assertEqual(r.returncode, 0, r.stderr)
                status, *modules = r.stderr.split()
                self.assertEqual(status, "1")  # the block is a leak: the whole report ran
                self.assertIn("16 bytes" if fmt == "text" else "16", r.stdout)
                for name in ("re", "json", "fnmatch", "enum"):
                    self.assertNotIn(name, modules)

    def engine_log(self) -> tuple[str, str]:
        """An engine that notes each run's inputs, then runs the real one."""
        log = os.path.join(self.tmp.name, f"runs.{self.id()}")
        wrapper = os.path.join(self.tmp.name, f"engine.{self.id()}")
        with open(wrapper, "w", encoding="utf-8") as handle:
            handle.write(f'#!/bin/sh\necho "$@" >> {log}\nexec {ENGINE} "$@"\n')
        os.chmod(wrapper, 0o755)
        return wrapper, log

    def runs(self, log: str) -> list[str]:
        if not os.path.exists(log):
            return []
        with open(log, encoding="utf-8") as handle:
            return handle.read().splitlines()

    @unittest.skipUnless(ENGINE and os.path.exists(ENGINE), "no htr-engine")
    def test_one_engine_per_report(self) -> None:
        wrapper, log = self.engine_log()
        code = (
            "from heaptrail import cli\n"
            f"sys.exit(cli.main(sys.argv[1:], cli.Paths(shim='', engine={wrapper!r}, dump='')))\n"
        )
        r = python_snippet(code, "report", "--format", "json", "--no-symbols", self.a)
        self.assertEqual(r.returncode, 1, r.stderr)  # the block is a leak
        self.assertIn('"leaked_bytes": 16', r.stdout)
        self.assertEqual(self.runs(log), [f"--format auto -- {self.a}"])
        # Read differently by argparse (inputs after an option): bad usage,
        # and the engine started early is not waited for.
        r = python_snippet(code, "report", self.a, "--no-symbols", self.b)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("unrecognized arguments", r.stderr)
        self.assertEqual(r.stdout, "")

    @unittest.skipUnless(ENGINE and os.path.exists(ENGINE), "no htr-engine")
    def test_launcher_starts_the_engine_before_os_and_cli_keeps_it(self) -> None:
        """What the launcher does for `heaptrail report`: report_early.start_now
        first, with os and __future__ not yet imported, then cli.main, which
        must take that engine rather than start a second one."""
        wrapper, log = self.engine_log()
        r = python_snippet(
            "from heaptrail import report_early\n"
            f"report_early.start_now(sys.argv[1:], {wrapper!r})\n"
            "early = [m for m in ('os', '__future__', 'heaptrail.engine', 'heaptrail.cli') if m in sys.modules]\n"
            "print(' '.join(early) or 'none', file=sys.stderr)\n"
            "from heaptrail import cli\n"
            f"sys.exit(cli.main(['report', *sys.argv[1:]], cli.Paths(shim='', engine={wrapper!r}, dump='')))\n",
            "--format", "json", "--no-symbols", self.a)
        self.assertEqual(r.returncode, 1, r.stderr)  # the block is a leak
        self.assertEqual(r.stderr.strip(), "none")
        self.assertIn('"leaked_bytes": 16', r.stdout)
        self.assertEqual(self.runs(log), [f"--format auto -- {self.a}"])

    @unittest.skipUnless(ENGINE and os.path.exists(ENGINE), "no htr-engine")
    def test_early_engine_for_the_same_command_is_kept(self) -> None:
        from heaptrail import engine, spawn

        wrapper, log = self.engine_log()
        engine.start_early(wrapper, [self.a], "auto")
        first = spawn._early
        engine.start_early(wrapper, [self.a], "auto")
        self.assertIs(spawn._early, first)
        data = engine.run_engine(wrapper, [self.a], "auto")
        self.assertEqual(data["totals"]["total_bytes"], 16)
        self.assertEqual(self.runs(log), [f"--format auto -- {self.a}"])

    @unittest.skipUnless(ENGINE and os.path.exists(ENGINE), "no htr-engine")
    def test_early_engine_for_other_inputs_is_replaced(self) -> None:
        from heaptrail import engine

        wrapper, log = self.engine_log()
        engine.start_early(wrapper, [self.a], "auto")
        data = engine.run_engine(wrapper, [self.b], "auto")
        self.assertEqual([item["path"] for item in data["inputs"]], [self.b])
        self.assertEqual(data["totals"]["total_bytes"], 32)
        engine.start_early(wrapper, [self.a], "auto")
        engine.cancel_early()
        data = engine.run_engine(wrapper, [self.a], "valground")
        self.assertEqual(data["totals"]["total_bytes"], 16)
        runs = self.runs(log)
        self.assertEqual(runs[-1], f"--format valground -- {self.a}")
        self.assertIn(f"--format auto -- {self.b}", runs)


@unittest.skipUnless(FRONT_PROBE and os.path.exists(FRONT_PROBE) and ENGINE and os.path.exists(ENGINE),
                     "no heaptrail-probe or htr-engine")
class Front(TwoLogs):
    """The `heaptrail` command (front.c) starts a plain report's engine or
    a plain run's program before Python, and the launcher keeps it: exactly
    what it would have started, and no second one. heaptrail-probe is that
    front with tests/cli/front_probe.py in the launcher's place."""

    A_NAME = "a b.log"  # a space: the command crosses as lengths, not words

    def probe(self, *args: str, env: dict[str, str] | None = None, command: str = "report",
              cwd: str | None = None) -> tuple[subprocess.CompletedProcess[str], dict]:
        r = subprocess.run([FRONT_PROBE, command, *args], capture_output=True, text=True, timeout=60, cwd=cwd,
                           env=dict(os.environ, HTR_ENGINE=ENGINE, HTR_SHIM=SHIM, HTR_PACK=PACK, **(env or {})),
                           check=False)
        import json

        said = json.loads(r.stderr.strip().splitlines()[-1])
        self.assertFalse(said["left_in_environ"], said)  # no child of the launcher sees it
        return r, said

    def test_plain_reports_keep_the_engine_the_front_started(self) -> None:
        a, b = self.a, self.b
        for args, fmt, inputs in (
            (["--format", "json", "--no-symbols", a], "auto", [a]),
            (["--no-symbols", "--format=json", "--input-format", "valground", a, b], "valground", [a, b]),
            (["--input-format=mtrace", "--input-format", "auto", "-q", "--no-symbols", "--format", "json", a],
             "auto", [a]),
            (["--format", "json", "--no-symbols", "--", a, b], "auto", [a, b]),
        ):
            with self.subTest(args=args):
                r, said = self.probe(*args)
                self.assertEqual(r.returncode, 1, r.stderr)  # the blocks are leaks
                self.assertIn('"leaked_bytes": 16', r.stdout)
                self.assertEqual(said["python_started"], [])
                self.assertEqual(said["kept_cmd"], [ENGINE, "--format", fmt, "--", *inputs])
                self.assertTrue(said["announced"].startswith(f"{said['kept_pid']},"), said)

    def test_other_command_lines_start_no_engine_first(self) -> None:
        a, b = self.a, self.b
        for args in (
            [a, "--no-symbols", "--format", "json", b],  # inputs in two runs: argparse's call
            ["-qo", "out.json", "--no-symbols", "--format", "json", a],  # bundled short options
            ["--format", "json", "--no-symbols", os.path.join(self.tmp.name, "missing.log")],
        ):
            with self.subTest(args=args):
                r, said = self.probe(*args)
                self.assertIsNone(said["announced"], said)
                self.assertIsNone(said["kept_pid"], said)

    def test_an_inherited_announcement_is_not_believed(self) -> None:
        """Only the front's own word counts: a variable from the caller's
        environment is dropped before anything reads it."""
        bogus = f"1,0,1;{len(ENGINE)}:{ENGINE}"
        r, said = self.probe(self.a, "--no-symbols", "--format", "json", self.b,
                             env={"HEAPTRAIL_EARLY_ENGINE": bogus})
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIsNone(said["announced"], said)
        self.assertIsNone(said["kept_pid"], said)

    def test_launcher_ignores_an_announcement_of_no_child_of_its_own(self) -> None:
        """A launcher run without the front, with the variable set by hand:
        pid 1 is nobody's child here, and malformed values say nothing."""
        for value in ("1,0,1;3:abc", "x", "12,3;", f"{os.getpid()},0,1;5:abc"):
            with self.subTest(value=value):
                r = python_snippet(
                    "import posix\n"
                    "from heaptrail import spawn\n"
                    f"posix.environ[spawn.EARLY_ENV] = {value.encode()!r}\n"
                    "spawn.adopt_early()\n"
                    "print(spawn._early is None, spawn.EARLY_ENV in posix.environ)\n")
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(r.stdout.split(), ["True", "False"])

    def test_announcement_reads_back_every_byte_of_a_path(self) -> None:
        from heaptrail import spawn

        odd = "/tmp/a;b,c:1\nd\udcff"
        said = f"42,5,6;4:/eng{len(odd.encode('utf-8', 'surrogateescape'))}:".encode() + odd.encode(
            "utf-8", "surrogateescape")
        self.assertEqual(spawn._decode_early(said), (["/eng", odd], 42, 5, 6))
        for bad in (b"42,5,6", b"42,5;1:a", b"42,5,6;9:abc", b"42,5,6;x:abc", b"0,5,6;"):
            with self.subTest(bad=bad):
                with self.assertRaises(ValueError):
                    spawn._decode_early(bad)


    def run_probe(self, *args: str, **kwargs: object) -> tuple[subprocess.CompletedProcess[str], dict]:
        return self.probe(*args, command="run", **kwargs)  # type: ignore[arg-type]

    # The program tells what it was started with, in a file of its own.
    SHOW_ENV = ("import os, sys; open(sys.argv[1], 'w').write(repr({k: v for k, v in os.environ.items() "
                "if k.startswith(('HEAPTRAIL_', 'LD_PRELOAD'))}))")

    def shown(self, path: str) -> dict[str, str]:
        import ast

        with open(path, encoding="utf-8") as handle:
            return ast.literal_eval(handle.read())

    @unittest.skipUnless(SHIM and os.path.exists(SHIM) and PACK and os.path.exists(PACK), "no recorder")
    def test_plain_runs_keep_the_program_the_front_started(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            out, seen = os.path.join(tmp, "out dir"), os.path.join(tmp, "env")
            r, said = self.run_probe("--depth", "007", "--on-error=abort", "--chunk-kb", "64", "--no-report",
                                     "-o", out, "--", sys.executable, "-S", "-c", self.SHOW_ENV, seen,
                                     env={"LD_PRELOAD": "  "})
            self.assertEqual(said["status"], 0, r.stderr)
            self.assertEqual(said["python_started"], [])
            pid, _, outdir = said["announced"].partition(";")
            self.assertEqual(outdir, out)
            self.assertEqual(self.shown(seen), {"LD_PRELOAD": SHIM, "HEAPTRAIL_OUTPUT": out, "HEAPTRAIL_DEPTH": "7",
                                                "HEAPTRAIL_ON_ERROR": "abort", "HEAPTRAIL_CHUNK_KB": "64"})
            self.assertEqual(os.listdir(out), [f"heaptrail.{pid}.0.htr"])
            self.assertIn("packed 1 trace", r.stderr)
            # The default directory, named after the launcher's pid as it would name it.
            r, said = self.run_probe("--no-report", "--no-pack", "--", sys.executable, "-S", "-c", self.SHOW_ENV,
                                     seen, env={"LD_PRELOAD": "libm.so.6", "HEAPTRAIL_DEPTH": "9"}, cwd=tmp)
            self.assertEqual(said["status"], 0, r.stderr)
            self.assertEqual(said["python_started"], [])
            default = os.path.join(os.path.realpath(tmp), f"heaptrail-{said['pid']}")
            self.assertEqual(said["announced"].partition(";")[2], default)
            self.assertEqual(self.shown(seen), {"LD_PRELOAD": f"libm.so.6 {SHIM}", "HEAPTRAIL_OUTPUT": default,
                                                "HEAPTRAIL_DEPTH": "9"})

    @unittest.skipUnless(SHIM and os.path.exists(SHIM), "no recorder")
    def test_other_run_lines_are_left_to_the_launcher(self) -> None:
        """Lines the launcher reads (or refuses) its own way: the front
        starts nothing, and the program runs once, from Python, or not at
        all."""
        with tempfile.TemporaryDirectory() as tmp:
            used = os.path.join(tmp, "used")
            os.mkdir(used)
            open(os.path.join(used, "heaptrail.1.0.htr"), "wb").close()
            for args, runs in (
                (["-o", "./x"], True),  # abspath would change it: the launcher's to name
                (["-o", "x/"], True),
                (["-o", used], True),  # traces already there: the launcher knows which
                (["--depth", "0"], False),
                (["--depth=0x7"], False),
                (["--chunk-kb", "6"], False),
                (["--error-exitcode", "256"], False),
                (["--on-error", "stop"], False),
                (["--no-pack=1"], False),
                (["-o=x"], False),
                (["--dep", "7"], False),
            ):
                with self.subTest(args=args):
                    r, said = self.run_probe(*args, "--no-report", "--no-pack", "--", "true", cwd=tmp)
                    self.assertIsNone(said["announced"], said)
                    self.assertEqual(said["python_started"], [["true"]] if runs else [], said)
            r, said = self.run_probe("--no-report", "-o", "y", "--", os.path.join(tmp, "missing"), cwd=tmp)
            self.assertIsNone(said["announced"], said)
            self.assertIsNone(said["status"], said)  # the launcher's parser says why

    @unittest.skipUnless(SHIM and os.path.exists(SHIM), "no recorder")
    def test_an_inherited_program_announcement_is_not_believed(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            r, said = self.run_probe("-o", "./z", "--no-report", "--no-pack", "--", "true", cwd=tmp,
                                     env={"HEAPTRAIL_EARLY_PROGRAM": f"1;{tmp}"})
            self.assertIsNone(said["announced"], said)
            self.assertEqual(said["python_started"], [["true"]])
            self.assertEqual(said["status"], 0, r.stderr)

    def test_launcher_waits_for_a_program_it_reads_otherwise(self) -> None:
        """Should the two readings ever differ, the program (already
        running) is waited for and the run fails with one line; and values
        that name no child of the launcher are not believed."""
        with tempfile.TemporaryDirectory() as tmp:
            r = python_snippet(
                "import os\n"
                "from heaptrail import run_cmd\n"
                "pid = os.posix_spawn('/bin/sh', ['sh', '-c', 'exit 3'], dict(os.environ))\n"
                f"os.environ['HEAPTRAIL_EARLY_PROGRAM'] = f'{{pid}};{tmp}/elsewhere'\n"
                f"status = run_cmd.run_fast(['-o', {tmp!r}, '--no-report', '--', 'true'], {{}})\n"
                "print(status, 'HEAPTRAIL_EARLY_PROGRAM' in os.environ)\n"
                "for bogus in ('1;/tmp', 'x;/tmp', '5', f'{os.getpid()};/tmp'):\n"
                "    os.environ['HEAPTRAIL_EARLY_PROGRAM'] = bogus\n"
                "    print(run_cmd._early_program(), 'HEAPTRAIL_EARLY_PROGRAM' in os.environ)\n")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout.splitlines(), ["70 False"] + ["None False"] * 4)
            self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
            self.assertIn("internal error", r.stderr)
            self.assertIn("exit status 3", r.stderr)


    @unittest.skipUnless(FRONT_PROBE_GONE and os.path.exists(FRONT_PROBE_GONE), "no heaptrail-probe-gone")
    def test_an_interpreter_that_is_gone(self) -> None:
        """Built with an interpreter that is no longer there, the command
        runs python3 from PATH; with none there either, it says so in one
        line, exit 127."""
        with tempfile.TemporaryDirectory() as bin_dir:
            os.symlink(sys.executable, os.path.join(bin_dir, "python3"))
            args = [FRONT_PROBE_GONE, "report", "--format", "json", "--no-symbols", self.a]
            env = dict(os.environ, HTR_ENGINE=ENGINE, PATH=bin_dir)
            r = subprocess.run(args, capture_output=True, text=True, timeout=60, env=env, check=False)
            self.assertEqual(r.returncode, 1, r.stderr)  # the leak: the whole report ran
            self.assertIn('"leaked_bytes": 16', r.stdout)
            env["PATH"] = os.path.join(bin_dir, "nothing-here")
            r = subprocess.run(args, capture_output=True, text=True, timeout=60, env=env, check=False)
            self.assertEqual(r.returncode, 127, r.stderr)
            self.assertEqual(r.stderr, "heaptrail: cannot start /nonexistent/heaptrail-test/python3 or python3: "
                             "No such file or directory\n")



if __name__ == "__main__":
    unittest.main()
