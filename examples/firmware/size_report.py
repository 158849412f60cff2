#!/usr/bin/env python3
"""Flash and RAM the board backend costs in the example firmware, per object,
at -Os for Cortex-M3: compiles each file on its own, links each variant with
--gc-sections and reads the linker map (only what is linked counts).

    size_report.py ARM_GCC SOURCE_ROOT    (meson: ninja board-size)
"""

from __future__ import annotations

import collections
import os
import re
import subprocess
import sys
import tempfile
from typing import Dict, List, Tuple

FLAGS = ["-mcpu=cortex-m3", "-mthumb", "-ffreestanding", "-Os", "-std=c11", "-ffunction-sections", "-fdata-sections"]
BOARD = ["api.c", "enc.c", "enc_bin.c", "enc_text.c", "heap.c", "heap_check.c", "heap_stats.c", "rtt.c", "uart.c",
         "wire_codec.c", "port_cortexm.c"]
VARIANTS = {
    "text over UART (blocking)": ["-DFW_ENCODING=HTR_BOARD_TEXT", "-DFW_TRANSPORT=FW_UART_BLOCKING",
                                  "-DHTR_BOARD_WITH_BINARY=0"],
    "binary over UART (TX ring + ISR)": ["-DFW_ENCODING=HTR_BOARD_BINARY", "-DFW_TRANSPORT=FW_UART_RING",
                                         "-DHTR_BOARD_WITH_TEXT=0"],
    "binary into RTT (2 KiB up buffer)": ["-DFW_ENCODING=HTR_BOARD_BINARY", "-DFW_TRANSPORT=FW_RTT",
                                          "-DHTR_RTT_UP_SIZE=2048u", "-DHTR_BOARD_WITH_TEXT=0"],
}
SECTION = re.compile(r"^ (\.[\w.]+|COMMON)(?:\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+(\S+))?$")
CONT = re.compile(r"^\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+(\S+)$")


def parse_map(text: str) -> Dict[Tuple[str, str], int]:
    """(object, 'flash'|'ram') -> bytes, for sections kept in the image."""
    text = text[text.index("Linker script and memory map"):]
    sizes: Dict[Tuple[str, str], int] = collections.Counter()
    pending = None
    for line in text.splitlines():
        m = SECTION.match(line)
        if m and m.group(2) is None:
            pending = m.group(1)
            continue
        if m:
            section, size, obj = m.group(1), int(m.group(3), 16), m.group(4)
        elif pending and (c := CONT.match(line)):
            section, size, obj = pending, int(c.group(2), 16), c.group(3)
        else:
            pending = None
            continue
        pending = None
        name = os.path.basename(obj)
        if section.startswith((".text", ".rodata")):
            sizes[(name, "flash")] += size
        elif section.startswith(".data"):
            sizes[(name, "flash")] += size
            sizes[(name, "ram")] += size
        elif section.startswith((".bss", "COMMON")):
            sizes[(name, "ram")] += size
    return sizes


def main(argv: List[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    cc, root = argv[1], argv[2]
    board_dir = os.path.join(root, "lib", "board")
    fw_dir = os.path.join(root, "examples", "firmware")
    inc = ["-I" + os.path.join(root, "include"), "-I" + board_dir, "-I" + fw_dir]
    with tempfile.TemporaryDirectory() as tmp:
        for title, defs in VARIANTS.items():
            objs = []
            for src in [os.path.join(board_dir, f) for f in BOARD] + \
                       [os.path.join(fw_dir, f) for f in ("startup.c", "main.c")]:
                obj = os.path.join(tmp, os.path.basename(src)[:-2] + ".o")
                subprocess.run([cc, *FLAGS, *inc, *defs, "-c", src, "-o", obj], check=True)
                objs.append(obj)
            elf = os.path.join(tmp, "fw.elf")
            subprocess.run([cc, *FLAGS, "-nostartfiles", "--specs=nano.specs", "-T", os.path.join(fw_dir, "link.ld"),
                            "-Wl,--gc-sections", "-Wl,-Map=" + elf + ".map", *objs, "-o", elf], check=True)
            with open(elf + ".map", encoding="utf-8") as f:
                sizes = parse_map(f.read())
            print(f"\n{title}\n\n| object | flash | RAM |\n|---|---:|---:|")
            flash = ram = 0
            for name in [b[:-2] + ".o" for b in BOARD]:
                fl, rm = sizes.get((name, "flash"), 0), sizes.get((name, "ram"), 0)
                if fl or rm:
                    print(f"| {name} | {fl} | {rm} |")
                    flash += fl
                    ram += rm
            libc = sum(v for (n, k), v in sizes.items() if k == "flash" and n.startswith(("libg", "libc", "libgcc")))
            print(f"| **backend total** | **{flash}** | **{ram}** |")
            print(f"| (libc/libgcc pulled in: memcpy, memset, strlen...) | {libc} | 0 |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
