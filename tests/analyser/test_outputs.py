"""Report formats: the JSON contract, JUnit and SARIF fields CI systems
read, text options (-q, colour, -o)."""

from __future__ import annotations

import json
import os
import tempfile
import unittest
import xml.etree.ElementTree as ET

import helpers
from helpers import golden, run_heaptrail

LOG = os.path.join("golden", "valground_tests.log")
CLEAN = os.path.join("golden", "valground_clean.log")


class JsonContract(unittest.TestCase):
    def test_names_other_tests_rely_on(self) -> None:
        proc = run_heaptrail(["report", "--format", "json", "--no-symbols", LOG])
        doc = json.loads(proc.stdout)
        for key in ("allocations", "frees", "total_bytes", "peak_bytes", "leaked_bytes", "leaked_blocks", "free_errors"):
            self.assertIsInstance(doc["summary"][key], int, key)
        leak = doc["leaks"][0]
        self.assertEqual(set(leak) >= {"bytes", "blocks", "addresses", "site", "stack"}, True)
        err = doc["free_errors"][0]
        for key in ("kind", "site", "stack", "alloc_site", "alloc_stack", "free_site", "free_stack"):
            self.assertIn(key, err)
        self.assertIn(err["kind"], ("double-free", "invalid-free", "mismatch"))
        self.assertIsInstance(doc["persistent"], list)
        seg = doc["segments"][0]
        for key in ("name", "allocations", "total_bytes", "peak_bytes", "leaked_bytes", "leaks"):
            self.assertIn(key, seg)
        for key in ("size", "peak_percent", "largest_free", "fragmentation_permille"):
            self.assertIn(key, doc["heap"])
        inp = doc["inputs"][0]
        for key in ("path", "format", "complete", "stopped_at", "lost_events"):
            self.assertIn(key, inp)

    def test_frame_fields(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            w = helpers.TraceWriter()
            w.process()
            w.stack(1, [0x1234])
            w.alloc(0x10, 1, stack=1)
            w.end(0)
            path = w.write(os.path.join(tmp, "t.htr"))
            doc = json.loads(run_heaptrail(["report", "--format", "json", path]).stdout)
            frame = doc["leaks"][0]["stack"][0]
            self.assertEqual(set(frame), {"addr", "function", "file", "line", "module"})
            self.assertEqual(frame["addr"], "0x1234")


class IndentedJson(unittest.TestCase):
    """render_ci.dumps_indented writes what json.dumps(doc, indent=2) does:
    the JSON report's bytes are the contract."""

    def test_same_bytes_as_json_dumps(self) -> None:
        from heaptrail.render_ci import dumps_indented

        class Count(int):
            pass

        docs: list[object] = [
            {}, [], (), {"a": {}, "b": [], "c": [{}], "d": [[]]},
            {"s": "plain", "u": "caf\u00e9 \u2603 \U0001f600", "c": "tab\tnl\nquote\"bs\\ \x00\x1f\x7f",
             "n": None, "t": True, "f": False, "i": -12, "big": 1 << 70, "x": 1.5, "e": 1e300, "z": -0.0,
             "nan": float("nan"), "inf": float("inf"), "ninf": float("-inf"), "\u00e9key": 1},
            [1, "two", None, [3, (4, 5)], {"k": [True, False, {"deep": [[], {}]}]}],
            ("tuple", "top"),
            # Left to json.dumps: keys that are not strings, an int subclass.
            {1: "int key", "a": 2}, {None: 1, True: 2, 2.5: 3}, {"c": Count(7)}, [Count(3)],
            "a scalar", 5, None,
        ]
        for doc in docs:
            with self.subTest(doc=doc):
                self.assertEqual(dumps_indented(doc), json.dumps(doc, indent=2))
        with self.assertRaises(TypeError):
            dumps_indented({"bad": {1, 2}})  # json.dumps's own error

    def test_json_and_sarif_reports_are_as_json_dumps_writes_them(self) -> None:
        for fmt in ("json", "sarif"):
            proc = run_heaptrail(["report", "--format", fmt, "--no-symbols", LOG])
            self.assertEqual(proc.stdout, json.dumps(json.loads(proc.stdout), indent=2) + "\n", fmt)


class JsonRead(unittest.TestCase):
    """jsonread.loads reads the engine's output and the symbol cache as
    json.loads does: the same values, and json's own error otherwise."""

    def same(self, a: object, b: object) -> bool:
        # NaN is not equal to itself: compared by repr, with the types.
        return type(a) is type(b) and repr(a) == repr(b)

    def test_values_as_json_loads_reads_them(self) -> None:
        from heaptrail.jsonread import loads

        texts = [
            '{}', '[]', ' \t\n\r{"a": 1}\n\n', '[1, -2, 3.5, 1e400, -0.0, 12345678901234567890123]',
            '{"s": "caf\\u00e9 \\ud83d\\ude00 \\n\\"", "raw": "\u00e9\u2603", "n": null, "t": true, "f": false}',
            '[NaN, Infinity, -Infinity]', '{"a": {"a": [{"a": []}]}, "a2": 1}', '{"dup": 1, "dup": 2}',
            '"top"', '7', 'null', '"\\ud800"',
        ]
        for text in texts:
            for data in (text, text.encode("utf-8", "surrogatepass")):
                with self.subTest(data=data):
                    self.assertTrue(self.same(loads(data), json.loads(data)), data)

    def test_errors_are_json_loads_errors(self) -> None:
        from heaptrail.jsonread import loads

        bad = ['', ' ', '{', '{"a": 1} x', '[1,]', '{"a" 1}', "{'a': 1}", '"tab\there"', '\ufeff{}', '[1] [2]']
        for text in bad:
            # (In bytes, json.loads reads past a byte order mark.)
            for data in (text, *([] if text.startswith("\ufeff") else [text.encode("utf-8")])):
                with self.subTest(data=data):
                    with self.assertRaises(ValueError) as expected:
                        json.loads(data)
                    with self.assertRaises(ValueError) as got:
                        loads(data)
                    self.assertEqual((type(got.exception), str(got.exception)),
                                     (type(expected.exception), str(expected.exception)))
        # Other encodings json.loads detects in bytes are left to it.
        for data in ('{"a": [1]}'.encode("utf-16-le"), '{"a": 1}'.encode("utf-8-sig")):
            with self.subTest(data=data):
                self.assertEqual(loads(data), json.loads(data))


class JUnit(unittest.TestCase):
    def test_failures_per_test(self) -> None:
        proc = run_heaptrail(["report", "--format", "junit", "--no-symbols", LOG])
        self.assertEqual(proc.returncode, 1)
        root = ET.fromstring(proc.stdout)
        self.assertEqual(root.tag, "testsuites")
        suite = root.find("testsuite")
        assert suite is not None
        cases = suite.findall("testcase")
        self.assertEqual(int(suite.get("tests", "0")), len(cases))
        names = [c.get("name") for c in cases]
        self.assertIn("tests/test_sign.py::test_reject[nanox]", names)
        self.assertEqual(len(names), len(set(names)))  # the two heaps of test_sign_tx are one test case
        failed = {c.get("name"): c.find("failure") for c in cases}
        sign = failed["tests/test_sign.py::test_sign_tx[nanox]"]
        reject = failed["tests/test_sign.py::test_reject[nanox]"]
        clean = failed["tests/test_sign.py::test_clean[nanox]"]
        assert sign is not None and reject is not None and clean is not None
        self.assertIn("96 bytes in 2 blocks", sign.get("message", ""))
        self.assertIn("9000 bytes in 1 blocks", sign.get("message", ""))
        self.assertIn("double-free", reject.get("message", ""))
        self.assertIn("src/keep.c:2", clean.get("message", ""))
        self.assertEqual(sign.get("type"), "leak")
        self.assertIn("src/parser.c:100", sign.text or "")
        self.assertEqual(int(suite.get("failures", "0")), 3)
        for case in cases:
            self.assertTrue(case.get("classname"))

    def test_clean_run_has_no_failure(self) -> None:
        proc = run_heaptrail(["report", "--format", "junit", CLEAN])
        self.assertEqual(proc.returncode, 0)
        root = ET.fromstring(proc.stdout)
        self.assertEqual(root.findall(".//failure"), [])
        self.assertEqual(len(root.findall(".//testcase")), 1)


class Sarif(unittest.TestCase):
    def test_fields(self) -> None:
        proc = run_heaptrail(["report", "--format", "sarif", "--no-symbols", LOG])
        doc = json.loads(proc.stdout)
        self.assertEqual(doc["version"], "2.1.0")
        run = doc["runs"][0]
        self.assertEqual(run["tool"]["driver"]["name"], "heaptrail")
        results = run["results"]
        self.assertEqual(sorted(r["ruleId"] for r in results), ["double-free", "invalid-free", "leak", "leak", "leak"])
        for r in results:
            self.assertEqual(r["level"], "error")
            self.assertTrue(r["message"]["text"])
            loc = r["locations"][0]["physicalLocation"]
            self.assertTrue(loc["artifactLocation"]["uri"])
            self.assertIsInstance(loc["region"]["startLine"], int)
        leak = [r for r in results if r["ruleId"] == "leak" and "parser.c" in r["message"]["text"]][0]
        self.assertEqual(leak["locations"][0]["physicalLocation"]["artifactLocation"]["uri"], "src/parser.c")
        self.assertEqual(leak["locations"][0]["physicalLocation"]["region"]["startLine"], 100)

    def test_golden(self) -> None:
        proc = run_heaptrail(["report", "--format", "sarif", "--no-symbols", LOG])
        golden(self, "valground_tests.sarif", proc.stdout)


class TextOptions(unittest.TestCase):
    def test_quiet_has_errors_and_summary_only(self) -> None:
        full = run_heaptrail(["report", "--no-symbols", LOG]).stdout
        quiet = run_heaptrail(["report", "-q", "--no-symbols", LOG]).stdout
        for word in ("HEAP SUMMARY", "FREE ERRORS", "LEAKS", "RESULT: FAIL"):
            self.assertIn(word, quiet)
        for word in ("SEGMENTS", "PEAK", "PERSISTENT", "MOST ALLOCATED"):
            self.assertIn(word, full)
            self.assertNotIn(word, quiet)

    def test_no_colour_unless_asked(self) -> None:
        plain = run_heaptrail(["report", LOG]).stdout  # a pipe, not a terminal
        self.assertNotIn("\033[", plain)
        forced = run_heaptrail(["report", "--color", "always", LOG]).stdout
        self.assertIn("\033[", forced)
        nocolor = run_heaptrail(["report", LOG], env={"NO_COLOR": "1"}).stdout
        self.assertNotIn("\033[", nocolor)

    def test_colour_on_terminal_but_not_with_no_color(self) -> None:
        import pty
        import subprocess

        for env_extra, want in (({}, True), ({"NO_COLOR": "1"}, False)):
            master, slave = pty.openpty()
            env = dict(os.environ, **env_extra)
            if not env_extra:
                env.pop("NO_COLOR", None)
            proc = subprocess.Popen([helpers.HEAPTRAIL, "report", "-q", LOG], stdout=slave,
                                    stderr=subprocess.DEVNULL, env=env)
            os.close(slave)
            chunks = []
            while True:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    break
                if not data:
                    break
                chunks.append(data)
            proc.wait()
            os.close(master)
            self.assertEqual(b"\033[" in b"".join(chunks), want, env_extra)

    def test_output_file(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "r.json")
            proc = run_heaptrail(["report", "--format", "json", "-o", out, LOG])
            self.assertEqual(proc.stdout, "")
            self.assertEqual(proc.returncode, 1)
            with open(out, encoding="utf-8") as handle:
                self.assertEqual(json.load(handle)["summary"]["leaked_bytes"], 9000 + 96 + 8)


if __name__ == "__main__":
    os.chdir(helpers.HERE)
    unittest.main()
