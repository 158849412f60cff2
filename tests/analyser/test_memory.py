"""Engine memory follows the live set, not the input length: a 10x longer
input with the same live set must not make the engine grow."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import unittest

import helpers
from helpers import ENGINE, TraceWriter

MB = 1024 * 1024


def write_valground(path: str, events: int, live: int) -> None:
    """alloc/free traffic with at most `live` blocks alive at a time."""
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("==MP init;0x10000000;1000000000\n")
        lines = []
        for i in range(events // 2):
            lines.append(f"==MP alloc;{16 + i % 200};0x{0x10000000 + (i % live) * 0x400:x};src/f{i % 37}.c:{i % 101}\n")
            if i >= live - 1:
                j = i - live + 1
                lines.append(f"==MP free;0x{0x10000000 + (j % live) * 0x400:x};src/g.c:1\n")
            if len(lines) > 100000:
                handle.writelines(lines)
                lines = []
        handle.writelines(lines)


def write_host(path: str, events: int, live: int) -> None:
    w = TraceWriter(chunk_size=1 << 20)
    w.process()
    for s in range(1, 33):
        w.stack(s, [0x400000 + s * 16, 0x401000])
    for i in range(events // 2):
        w.alloc(0x10000000 + (i % live) * 0x400, 16 + i % 64, stack=1 + i % 32)
        if i >= live - 1:
            w.free(0x10000000 + ((i - live + 1) % live) * 0x400, stack=1)
    w.end(0)
    w.write(path)


def peak_rss_kb(cmd: list[str]) -> int:
    """Peak RSS of one run, measured in a fresh process so earlier children
    do not count (RUSAGE_CHILDREN keeps the maximum)."""
    code = (
        "import resource, subprocess, sys\n"
        "subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, check=True)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, *cmd], stdout=subprocess.PIPE, text=True, check=True).stdout
    return int(out.strip())


def engine_stats(path: str) -> dict[str, float]:
    proc = subprocess.run([ENGINE, "--stats", path], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=True)
    return json.loads(proc.stderr.strip().splitlines()[-1])


@unittest.skipIf(os.environ.get("HTR_SANITIZED"), "sanitizer allocators do not report mallinfo2")
class Memory(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.tmp = tempfile.TemporaryDirectory()
        d = cls.tmp.name
        cls.small_log = os.path.join(d, "small.log")
        cls.big_log = os.path.join(d, "big.log")
        cls.wide_log = os.path.join(d, "wide.log")
        write_valground(cls.small_log, 200_000, 500)
        write_valground(cls.big_log, 2_000_000, 500)
        write_valground(cls.wide_log, 200_000, 50_000)
        cls.small_htr = os.path.join(d, "small.htr")
        cls.big_htr = os.path.join(d, "big.htr")
        write_host(cls.small_htr, 100_000, 500)
        write_host(cls.big_htr, 1_000_000, 500)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.tmp.cleanup()

    def test_text_peak_rss_flat(self) -> None:
        small = peak_rss_kb([ENGINE, self.small_log])
        big = peak_rss_kb([ENGINE, self.big_log])
        # 10x the events: the whole process may grow by less than 1 MiB.
        self.assertLess(big - small, 1024, f"peak RSS {small} KiB -> {big} KiB")

    def test_text_heap_flat(self) -> None:
        small = engine_stats(self.small_log)
        big = engine_stats(self.big_log)
        self.assertGreater(big["events"], small["events"] * 9)
        self.assertLess(big["heap_bytes"] - small["heap_bytes"], 64 * 1024, (small, big))

    def test_heap_grows_with_live_set(self) -> None:
        """The measure can fail: 100x the live blocks does cost memory."""
        small = engine_stats(self.small_log)
        wide = engine_stats(self.wide_log)
        self.assertGreater(wide["heap_bytes"] - small["heap_bytes"], 1 * MB)

    def test_live_table_cost_per_block(self) -> None:
        """The live table is kept at most a third full (32-byte slots) so
        that lookups seldom go past their home slot: at worst, just after
        it doubled, 192 bytes per live block, and never more."""
        small = engine_stats(self.small_log)
        wide = engine_stats(self.wide_log)
        self.assertLess(wide["heap_bytes"] - small["heap_bytes"], 50_000 * 192, (small, wide))

    def test_host_heap_flat(self) -> None:
        # The reader maps the trace file: those pages are page cache, not
        # the engine's memory, so the engine's own heap is what is compared.
        small = engine_stats(self.small_htr)
        big = engine_stats(self.big_htr)
        self.assertGreater(big["events"], small["events"] * 9)
        self.assertLess(big["heap_bytes"] - small["heap_bytes"], 64 * 1024, (small, big))


if __name__ == "__main__":
    os.chdir(helpers.HERE)
    unittest.main()
