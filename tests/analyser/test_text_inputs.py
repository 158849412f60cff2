"""The board's ==MP/==HT superset and glibc mtrace logs."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import unittest

import helpers
from helpers import golden, report_json, run_heaptrail

BOARD = os.path.join("golden", "board_text.log")
MTRACE = os.path.join("golden", "mtrace.log")


class BoardText(unittest.TestCase):
    def test_findings(self) -> None:
        status, doc, err = report_json([BOARD])
        self.assertEqual(status, 1, err)
        self.assertEqual(doc["inputs"][0]["format"], "board-text")
        s = doc["summary"]
        self.assertEqual(s["allocations"], 8)  # 7 alloc/persist lines + the realloc's new block
        self.assertEqual(s["failed_allocations"], 1)
        self.assertEqual(s["peak_bytes"], 924)  # 512 + 64 + 300 + 24 + 24
        self.assertEqual(s["persistent_blocks"], 1)
        self.assertEqual(s["lost_events"], 3)  # seq 14..16 missing; the drop record says the same 3
        # refused frees come from the board's err= field
        kinds = {(e["kind"], e["site"]) for e in doc["free_errors"]}
        self.assertEqual(kinds, {("double-free", "app/net.c:31"), ("invalid-free", "app/net.c:32")})
        double = [e for e in doc["free_errors"] if e["kind"] == "double-free"][0]
        self.assertEqual((double["alloc_site"], double["free_site"]), ("app/net.c:21", "app/net.c:30"))
        self.assertEqual(double["stack"][0]["addr"], "0x611")

    def test_checkpoint_resyncs_after_loss(self) -> None:
        """The last check agrees with our live set (4 blocks, 624 bytes), so
        blocks older than the loss are judged again: real leaks."""
        _, doc, _ = report_json([BOARD])
        self.assertEqual(sorted(leak["site"] for leak in doc["leaks"]), ["app/lost.c:5", "app/lost.c:6", "app/net.c:20"])
        self.assertEqual(doc["unknown"], [])

    def test_loss_without_checkpoint_is_unknown_not_leak(self) -> None:
        with open(BOARD, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "cut.log")
            with open(path, "w", encoding="utf-8") as handle:
                handle.write("\n".join(lines[:-1]) + "\n")
            status, doc, _ = report_json([path])
            # Only the block allocated after the gap is a certain leak.
            self.assertEqual([leak["site"] for leak in doc["leaks"]], ["app/lost.c:6"])
            self.assertEqual(sorted(u["site"] for u in doc["unknown"]), ["app/lost.c:5", "app/net.c:20"])
            self.assertEqual(status, 1)
            status2, _, _ = report_json([path], "--fail-on", "lost-data")
            self.assertEqual(status2, 1)
            status3, _, _ = report_json([path], "--fail-on", "double-free")
            self.assertEqual(status3, 1)

    def test_heap_statistics(self) -> None:
        _, doc, _ = report_json([BOARD])
        h = doc["heap"]
        self.assertEqual(h["size"], 16384)
        self.assertEqual(h["largest_free"], 9000)
        self.assertEqual(h["min_free"], 15200)
        self.assertEqual(h["fragmentation_permille"], 1000 - 9000 * 1000 // 15700)
        self.assertEqual(h["peak_percent"], round(924 * 100 / 16384, 2))

    def test_marks_make_segments(self) -> None:
        _, doc, _ = report_json([BOARD])
        self.assertEqual([(s["name"], s["kind"]) for s in doc["segments"]], [("startup", "marker"), ("run", "marker")])
        self.assertEqual(doc["segments"][0]["leaked_bytes"], 64)
        self.assertEqual(doc["segments"][1]["leaked_bytes"], 48)

    def test_golden_text(self) -> None:
        proc = run_heaptrail(["report", "--no-symbols", "--color", "never", BOARD])
        golden(self, "board_text.txt", proc.stdout)

    @unittest.skipUnless(shutil.which("arm-none-eabi-gcc"), "no arm-none-eabi-gcc")
    def test_thumb_pc_symbolised_in_elf(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "fw.c")
            with open(src, "w", encoding="utf-8") as handle:
                handle.write("extern void *take(int);\nvoid *grab(void)\n{\n\treturn take(4);\n}\nvoid *take(int n) { return (void *)n; }\n")
            elf = os.path.join(tmp, "fw.elf")
            subprocess.run(["arm-none-eabi-gcc", "-mthumb", "-mcpu=cortex-m3", "-g", "-O1", "-nostdlib", "-fno-inline",
                            "-Wl,-e,grab", "-o", elf, src], check=True)
            out = subprocess.run(["arm-none-eabi-nm", elf], stdout=subprocess.PIPE, text=True, check=True).stdout
            grab = int([ln for ln in out.splitlines() if ln.endswith(" grab")][0].split()[0], 16)
            # The call to take() is a 4-byte bl; the return address (Thumb bit
            # set) is the PC the board logs.
            dis = subprocess.run(["arm-none-eabi-objdump", "-d", elf], stdout=subprocess.PIPE, text=True, check=True).stdout
            bl = [ln for ln in dis.splitlines() if "\tbl\t" in ln][0]
            pc = (int(bl.split(":")[0].strip(), 16) + 4) | 1
            log = os.path.join(tmp, "b.log")
            with open(log, "w", encoding="utf-8") as handle:
                handle.write(f"==MP alloc;4;0x20000010;fw.c:4;seq=1;pc=0x{pc:x}\n")
            proc = run_heaptrail(["report", "--format", "json", "--elf", elf, log])
            import json
            doc = json.loads(proc.stdout)
            frame = doc["leaks"][0]["stack"][0]
            self.assertEqual(frame["function"], "grab")
            self.assertEqual(frame["line"], 4)
            self.assertTrue(grab <= (pc & ~1) - 1)


EMIT = os.environ.get("HTR_BOARD_EMIT") or os.path.join(helpers.ROOT, "build-analyser", "tests", "analyser", "board_emit")


@unittest.skipUnless(os.path.exists(EMIT), "board_emit not built")
class BoardBinary(unittest.TestCase):
    """One workload on the board backend, sent as text and as binary: the
    engine must find the same things in both."""

    def test_binary_matches_text(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            docs = {}
            for enc in ("text", "binary"):
                path = os.path.join(tmp, enc)
                subprocess.run([EMIT, enc, path], check=True)
                status, doc, err = report_json([path])
                self.assertEqual((status, err), (1, ""))
                docs[enc] = doc
            t, b = docs["text"], docs["binary"]
            self.assertEqual((t["inputs"][0]["format"], b["inputs"][0]["format"]), ("board-text", "board"))
            keys = ("allocations", "frees", "failed_allocations", "total_bytes", "peak_bytes", "leaked_bytes",
                    "leaked_blocks", "persistent_bytes", "free_errors", "lost_events")
            self.assertEqual({k: t["summary"][k] for k in keys}, {k: b["summary"][k] for k in keys})
            self.assertEqual(b["summary"]["leaked_bytes"], 48)
            self.assertEqual(b["summary"]["persistent_bytes"], 256)
            errs = [sorted((e["kind"], e["site"], e["alloc_site"], e["free_site"]) for e in d["free_errors"]) for d in (t, b)]
            self.assertEqual(errs[0], errs[1])
            self.assertEqual([e[0] for e in errs[1]], ["double-free", "invalid-free"])
            self.assertEqual([leak["site"] for leak in b["leaks"]], [leak["site"] for leak in t["leaks"]])
            self.assertTrue(b["leaks"][0]["site"].endswith("board_emit.c:43"))
            seg = [(s["name"], s["leaked_bytes"], s["total_bytes"], s["peak_bytes"]) for s in b["segments"]]
            self.assertEqual(seg, [(s["name"], s["leaked_bytes"], s["total_bytes"], s["peak_bytes"]) for s in t["segments"]])
            self.assertEqual([x[0] for x in seg], ["setup", "work"])
            for key in ("size", "largest_free", "free_blocks", "fragmentation_permille"):
                self.assertEqual(t["heap"][key], b["heap"][key], key)
            self.assertEqual(b["heap"]["size"], 16384)

    def test_cut_binary_log(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "bin")
            subprocess.run([EMIT, "binary", path], check=True)
            with open(path, "rb") as handle:
                data = handle.read()
            cut = os.path.join(tmp, "cut")
            with open(cut, "wb") as handle:
                handle.write(data[: len(data) - 3])
            status, doc, err = report_json([cut], "--input-format", "board")
            self.assertEqual(err, "")
            self.assertFalse(doc["inputs"][0]["complete"])
            self.assertIsNotNone(doc["inputs"][0]["stopped_at"])


class Mtrace(unittest.TestCase):
    def test_findings(self) -> None:
        status, doc, err = report_json([MTRACE])
        self.assertEqual(status, 1, err)
        self.assertEqual(doc["inputs"][0]["format"], "mtrace")
        s = doc["summary"]
        self.assertEqual(s["allocations"], 5)  # 3 "+", the realloc's new block, the failed "+ (nil)"
        self.assertEqual(s["failed_allocations"], 1)
        self.assertEqual(s["frees"], 3)  # "-", the realloc's old block, the libc block
        self.assertEqual(s["reallocs"], 1)
        self.assertEqual(s["peak_bytes"], 0x40 + 0x400)
        self.assertEqual([leak["bytes"] for leak in doc["leaks"]], [0x40])
        self.assertEqual(doc["leaks"][0]["addresses"], ["0x405300"])
        self.assertEqual(doc["leaks"][0]["site"], "./prog:[0x401166]")
        self.assertEqual(doc["leaks"][0]["stack"][0]["addr"], "0x401166")
        self.assertEqual([(e["kind"], e["ptr"]) for e in doc["free_errors"]], [("invalid-free", "0x405999")])

    def test_golden_json(self) -> None:
        proc = run_heaptrail(["report", "--no-symbols", "--format", "json", MTRACE])
        golden(self, "mtrace.json", proc.stdout)


class BadText(unittest.TestCase):
    def test_malformed_mp_line_names_file_and_line(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "bad.log")
            with open(path, "w", encoding="utf-8") as handle:
                handle.write("==MP alloc;8;0x10;a.c:1\n==MP alloc;eight;0x20;a.c:2\n")
            proc = run_heaptrail(["report", path])
            self.assertEqual(proc.returncode, 2)
            self.assertEqual(proc.stderr.strip(), f"heaptrail report: {path}: line 2: malformed ==MP alloc line")
            self.assertNotIn("Traceback", proc.stderr)

    def test_cut_last_line_is_truncation(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "cut.log")
            with open(path, "w", encoding="utf-8") as handle:
                handle.write("==MP alloc;8;0x10;a.c:1\n==MP allo")
            status, doc, err = report_json([path])
            self.assertEqual(err, "")
            self.assertFalse(doc["inputs"][0]["complete"])
            self.assertEqual(doc["inputs"][0]["stopped_at"]["offset"], 24)
            # The one block may have been freed in the lost tail.
            self.assertEqual(doc["leaks"], [])
            self.assertEqual(doc["summary"]["unknown_blocks"], 1)
            self.assertEqual(status, 0)

    def test_binary_garbage_refused(self) -> None:
        """Bytes that are no format: read as a board binary log (they hold
        NULs), whose decoder finds no valid frame: an error naming file and
        offset."""
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "junk.bin")
            with open(path, "wb") as handle:
                handle.write(bytes(range(1, 256)) * 4 + b"\0\0\xff")
            proc = run_heaptrail(["report", path])
            self.assertEqual(proc.returncode, 2)
            self.assertTrue(proc.stderr.startswith(f"heaptrail report: {path}: corrupt data at offset 0:"), proc.stderr)
            self.assertEqual(len(proc.stderr.strip().splitlines()), 1)

    def test_missing_file(self) -> None:
        proc = run_heaptrail(["report", "/nonexistent/x.log"])
        self.assertEqual(proc.returncode, 2)
        self.assertEqual(proc.stderr.strip(), "heaptrail report: /nonexistent/x.log: no such file")


if __name__ == "__main__":
    os.chdir(helpers.HERE)
    unittest.main()
