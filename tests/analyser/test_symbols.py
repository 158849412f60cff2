"""Symbolisation: module map + build id, separate debug files, --sysroot,
inlined frames, and module+offset when nothing is found."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import unittest

import helpers
from helpers import TraceWriter, run_heaptrail
from heaptrail.symbols import Symbolizer

SOURCE = """\
#include <stdlib.h>
static inline __attribute__((always_inline)) void *inner(int n)
{
	return malloc(n);
}
__attribute__((noinline)) void *outer(int n)
{
	return inner(n) ;
}
int main(void) { return outer(3) != 0; }
"""


def build(tmp: str) -> tuple[str, int, str]:
    """A PIE with a build id; returns (path, offset of the call's return
    address in outer, build id hex)."""
    src = os.path.join(tmp, "prog.c")
    with open(src, "w", encoding="utf-8") as handle:
        handle.write(SOURCE)
    exe = os.path.join(tmp, "prog")
    subprocess.run(["cc", "-g", "-O2", "-fno-optimize-sibling-calls", "-fPIE", "-pie", "-Wl,--build-id", "-o", exe, src], check=True)
    dis = subprocess.run(["objdump", "-d", "--no-show-raw-insn", exe], stdout=subprocess.PIPE, text=True, check=True).stdout
    lines = dis.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.endswith("<outer>:"))
    ret = None
    for i in range(start + 1, len(lines)):
        if "call" in lines[i]:
            # A return address: the instruction after the call.
            ret = int(lines[i + 1].split(":")[0].strip(), 16)
            break
    assert ret is not None
    notes = subprocess.run(["readelf", "-n", exe], stdout=subprocess.PIPE, text=True, check=True).stdout
    build_id = next(ln.split(":")[1].strip() for ln in notes.splitlines() if "Build ID" in ln)
    return exe, ret, build_id


def trace_for(path: str, module_path: str, ret: int, build_id: str, base: int = 0x555555554000) -> str:
    w = TraceWriter()
    w.process(module_path, ["prog"])
    w.module(module_path, base, base, base + 0x10000, bytes.fromhex(build_id))
    w.stack(1, [base + ret])
    w.alloc(0x10, 3, stack=1)
    w.end(0)
    return w.write(path)


@unittest.skipUnless(shutil.which("cc") and shutil.which("objdump") and shutil.which("readelf"), "no toolchain")
class Symbols(unittest.TestCase):
    def setUp(self) -> None:
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        self.exe, self.ret, self.build_id = build(self.tmp.name)

    def frames(self, trace: str, *extra: str) -> list[dict]:
        proc = run_heaptrail(["report", "--format", "json", *extra, trace])
        self.assertEqual(proc.returncode, 1, proc.stderr)
        return json.loads(proc.stdout)["leaks"][0]["stack"]

    def test_inlined_frames_and_lines(self) -> None:
        trace = trace_for(os.path.join(self.tmp.name, "t.htr"), self.exe, self.ret, self.build_id)
        frames = self.frames(trace)
        self.assertEqual([f["function"] for f in frames], ["inner", "outer"])
        self.assertEqual([f["line"] for f in frames], [4, 8])
        self.assertTrue(frames[0]["inlined"])
        self.assertEqual({f["module"] for f in frames}, {"prog"})
        self.assertTrue(frames[0]["file"].endswith("prog.c"))

    def test_debug_dir_by_build_id(self) -> None:
        """Stripped binary elsewhere; its debug info found by build id."""
        debug_root = os.path.join(self.tmp.name, "dbg")
        target = os.path.join(debug_root, ".build-id", self.build_id[:2], self.build_id[2:] + ".debug")
        os.makedirs(os.path.dirname(target))
        subprocess.run(["objcopy", "--only-keep-debug", self.exe, target], check=True)
        trace = trace_for(os.path.join(self.tmp.name, "t.htr"), "/nonexistent/prog", self.ret, self.build_id)
        self.assertEqual(self.frames(trace, "--debug-dir", debug_root)[-1]["function"], "outer")
        # Without the debug dir: module+offset, no error.
        fallback = self.frames(trace)
        self.assertEqual(fallback[0]["function"], f"prog+{hex(self.ret)}")
        self.assertIsNone(fallback[0]["file"])

    def test_sysroot(self) -> None:
        root = os.path.join(self.tmp.name, "root")
        os.makedirs(os.path.join(root, "opt"))
        shutil.copy(self.exe, os.path.join(root, "opt", "prog"))
        trace = trace_for(os.path.join(self.tmp.name, "t.htr"), "/opt/prog", self.ret, "")
        self.assertEqual(self.frames(trace, "--sysroot", root)[-1]["function"], "outer")

    def test_no_symbols_option(self) -> None:
        trace = trace_for(os.path.join(self.tmp.name, "t.htr"), self.exe, self.ret, self.build_id)
        frames = self.frames(trace, "--no-symbols")
        self.assertEqual(frames[0]["function"], f"prog+{hex(self.ret)}")


@unittest.skipUnless(shutil.which("cc") and shutil.which("objdump") and shutil.which("readelf"), "no toolchain")
class DiskCache(unittest.TestCase):
    """Lookups are kept per file (path, size, mtime) across runs; a cache
    file holding another key (a name clash, an old format) is not served."""

    def setUp(self) -> None:
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        self.exe, self.ret, _ = build(self.tmp.name)
        self.cache = os.path.join(self.tmp.name, "cache")
        # The other tests run with the cache off (HTR_NO_SYMBOL_CACHE).
        saved = os.environ.pop("HTR_NO_SYMBOL_CACHE", None)
        if saved is not None:
            self.addCleanup(os.environ.__setitem__, "HTR_NO_SYMBOL_CACHE", saved)

    def symbolizer(self, with_tool: bool) -> "Symbolizer":
        sym = Symbolizer(cache_dir=self.cache)
        if not with_tool:
            sym._tools[False] = None
        return sym

    def test_second_run_reads_the_cache(self) -> None:
        first = self.symbolizer(True)
        if first.addr2line() is None:
            self.skipTest("no addr2line")
        first.lookup(self.exe, [self.ret - 1])
        looked_up = first.resolved(self.exe, self.ret - 1)
        self.assertIn("outer", [f for f, _, _ in looked_up])
        files = os.listdir(self.cache)
        self.assertEqual(len(files), 1)
        with open(os.path.join(self.cache, files[0]), encoding="utf-8") as handle:
            self.assertIn(os.path.abspath(self.exe), json.load(handle)["key"])
        again = self.symbolizer(False)  # no addr2line: only the cache can answer
        again.lookup(self.exe, [self.ret - 1])
        self.assertEqual(again.resolved(self.exe, self.ret - 1), looked_up)

        # The same name holding another file's key: a miss, not its symbols.
        path = os.path.join(self.cache, files[0])
        with open(path, encoding="utf-8") as handle:
            doc = json.load(handle)
        doc["key"] = "another file"
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(doc, handle)
        clash = self.symbolizer(False)
        clash.lookup(self.exe, [self.ret - 1])
        self.assertEqual(clash.resolved(self.exe, self.ret - 1), [])


class ForkChildModules(unittest.TestCase):
    def test_child_without_module_map_uses_parents(self) -> None:
        from heaptrail.symbols import ProcessSymbols, Symbolizer

        parent = {"origin": "host", "exe": "/bin/p", "modules": [
            {"path": "", "base": "0x1000", "start": "0x1000", "end": "0x2000", "build_id": ""}]}
        child = {"origin": "host", "exe": None, "modules": [], "fork_child": True}
        ps = ProcessSymbols(Symbolizer(enabled=False), child, parent)
        self.assertEqual(ps.frames(["0x1234"])[0].function, "p+0x234")
        alone = ProcessSymbols(Symbolizer(enabled=False), child)
        self.assertIsNone(alone.frames(["0x1234"])[0].function)


class ParseAddr2line(unittest.TestCase):
    def test_elfutils_and_binutils(self) -> None:
        from heaptrail.symbols import parse_addr2line

        eu = ("0x0000000000001150\ninner inlined at /t.c:3:29 in outer\n/t.c:2:74\nouter\n/t.c:3:29\n"
              "0x0000000000009999\n??\n??:0\n")
        got = parse_addr2line(eu)
        self.assertEqual(got[0x1150], [("inner", "/t.c", 2), ("outer", "/t.c", 3)])
        self.assertEqual(got[0x9999], [(None, None, None)])
        bu = "0x0000000000001150\nf\n/a b/x.c:7 (discriminator 2)\n"
        self.assertEqual(parse_addr2line(bu)[0x1150], [("f", "/a b/x.c", 7)])
        # A build-dir-relative path from the debug info is shown as the file it names.
        rel = "0x0000000000001150\nf\n/src/build/../lib/x.c:7\n"
        self.assertEqual(parse_addr2line(rel)[0x1150], [("f", "/src/lib/x.c", 7)])


if __name__ == "__main__":
    os.chdir(helpers.HERE)
    unittest.main()
