"""Turns recorded addresses into function, file:line and inlined frames.

Host stacks are return addresses in the traced process; the module map in
the trace (path, base, start, end, build-id) says which file each belongs to,
and addr - 1 - base is looked up there (the call, not the instruction after
it). Board stacks are Thumb caller PCs: (pc & ~1) - 1 in the firmware ELF.
Addresses are batched per file, one addr2line process each, and cached.
Missing files or debug info give "module+0xOFFSET", never an error.
"""

from __future__ import annotations

import os
import zlib

TYPE_CHECKING = False  # typing costs start-up and annotations are never evaluated
if TYPE_CHECKING:
    from typing import Any, Iterable, Optional, Sequence

from .jsonread import loads as json_loads
from .records import record

BATCH = 2000  # addresses per addr2line command line


@record(frozen=True)
class Frame:
    addr: str
    function: Optional[str] = None
    file: Optional[str] = None
    line: Optional[int] = None
    module: Optional[str] = None
    inlined: bool = False

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "addr": self.addr,
            "function": self.function,
            "file": self.file,
            "line": self.line,
            "module": self.module,
        }
        if self.inlined:
            out["inlined"] = True
        return out

    def describe(self) -> str:
        where = ""
        if self.file:
            where = f" ({self.file}:{self.line})" if self.line else f" ({self.file})"
        elif self.module:
            where = f" ({self.module})"
        name = self.function or "???"
        return f"{name}{where}"


@record()
class Module:
    path: str
    base: int
    start: int
    end: int
    build_id: str


# Part of every cache key: bump it when what a cached lookup holds changes
# (2: file paths normalised; 3: named by CRC, holding their key), so old
# entries are not served.
CACHE_FORMAT = 3
CACHE_KEY = "key"  # the entry holding the file's key; lookups are "0x..." entries


def _find_tool(names: Sequence[str]) -> Optional[str]:
    import shutil  # only when there is something to look up

    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


def parse_addr2line(text: str) -> dict[int, list[tuple[Optional[str], Optional[str], Optional[int]]]]:
    """Parses `addr2line -a -f -i` output (binutils or elfutils): an address
    line, then function and file:line pairs, innermost (inlined) first."""
    result: dict[int, list[tuple[Optional[str], Optional[str], Optional[int]]]] = {}
    current: Optional[int] = None
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("0x") and " " not in line.strip():
            try:
                current = int(line.strip(), 16)
                result[current] = []
                i += 1
                continue
            except ValueError:
                pass
        if current is None or i + 1 >= len(lines):
            i += 1
            continue
        func = line.strip().split(" inlined at ", 1)[0]
        loc = lines[i + 1].strip()
        i += 2
        fname: Optional[str] = None
        lineno: Optional[int] = None
        if loc and not loc.startswith("??"):
            parts = loc.split(" (discriminator", 1)[0].split(":")
            # file:line or file:line:column (elfutils)
            nums = []
            while len(parts) > 1 and parts[-1].isdigit():
                nums.insert(0, int(parts.pop()))
            # Debug info often holds build-dir-relative paths
            # ("/src/build/../lib/x.c"): show the file, not the route to it.
            fname = os.path.normpath(":".join(parts))
            lineno = nums[0] if nums else None
            if lineno == 0:
                lineno = None
        result[current].append((None if func in ("??", "") else func, fname, lineno))
    return result


class Symbolizer:
    def __init__(
        self,
        sysroot: str = "",
        debug_dirs: Sequence[str] = (),
        elf: Optional[str] = None,
        cache_dir: Optional[str] = None,
        enabled: bool = True,
    ) -> None:
        self.sysroot = sysroot
        self.debug_dirs = list(debug_dirs) + ["/usr/lib/debug"]
        self.elf = elf
        self.enabled = enabled
        self._tools: dict[bool, Optional[str]] = {}
        if cache_dir is None:
            base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
            cache_dir = os.path.join(base, "heaptrail", "symbols")
        self.cache_dir = cache_dir if os.environ.get("HTR_NO_SYMBOL_CACHE") is None else None
        self._memo: dict[tuple[str, int], list[tuple[Optional[str], Optional[str], Optional[int]]]] = {}

    def addr2line(self, arm: bool = False) -> Optional[str]:
        """The addr2line to run (PATH is searched once, when first needed)."""
        if arm not in self._tools:
            names = ["eu-addr2line", "arm-none-eabi-addr2line", "addr2line"] if arm else ["eu-addr2line", "addr2line"]
            self._tools[arm] = _find_tool(names)
        return self._tools[arm]

    # -- file lookup ---------------------------------------------------
    def _debug_file(self, build_id: str) -> Optional[str]:
        if len(build_id) < 4:
            return None
        for d in self.debug_dirs:
            candidate = os.path.join(d, ".build-id", build_id[:2], build_id[2:] + ".debug")
            if os.path.isfile(candidate):
                return candidate
        return None

    def module_file(self, module: Module, exe: Optional[str]) -> Optional[str]:
        """The file to read symbols from: separate debug info by build id,
        else the module itself (under the sysroot when given)."""
        dbg = self._debug_file(module.build_id)
        if dbg:
            return dbg
        path = module.path or (exe or "")
        if not path:
            return None
        for candidate in ((self.sysroot + path) if self.sysroot else path, path):
            if os.path.isfile(candidate):
                return candidate
        for d in self.debug_dirs:
            candidate = os.path.join(d, os.path.basename(path))
            if os.path.isfile(candidate):
                return candidate
        return None

    # -- lookups -------------------------------------------------------
    def _cache_entry(self, path: str) -> Optional[tuple[str, str]]:
        """The cache file for path and the key it must hold. Named by two
        checksums of the key (zlib: hashlib's OpenSSL costs more start-up
        than a whole cached lookup); the key inside settles a clash."""
        if not self.cache_dir:
            return None
        try:
            st = os.stat(path)
        except OSError:
            return None
        key = f"{CACHE_FORMAT}\0{os.path.abspath(path)}\0{st.st_size}\0{st.st_mtime_ns}"
        raw = key.encode("utf-8", "surrogateescape")
        name = f"{zlib.crc32(raw):08x}{zlib.adler32(raw):08x}{len(raw):04x}.json"
        return os.path.join(self.cache_dir, name), key

    def lookup(self, path: str, offsets: Iterable[int], arm: bool = False) -> None:
        """Resolves offsets in path into the memo, one process per batch."""
        wanted = sorted({o for o in offsets if (path, o) not in self._memo})
        if not wanted:
            return
        entry = self._cache_entry(path)
        cache_file = entry[0] if entry else None
        cached: dict[str, Any] = {}
        if entry and os.path.isfile(entry[0]):
            try:
                with open(entry[0], encoding="utf-8") as handle:
                    cached = json_loads(handle.read())  # json.load
            except (OSError, ValueError):
                cached = {}
            if not isinstance(cached, dict) or cached.get(CACHE_KEY) != entry[1]:
                cached = {}  # another file's lookups under the same name
        if entry:
            cached[CACHE_KEY] = entry[1]
        missing = []
        for off in wanted:
            hit = cached.get(hex(off))
            if hit is not None:
                self._memo[(path, off)] = [(f, fi, ln) for f, fi, ln in hit]  # type: ignore[misc]
            else:
                missing.append(off)
        tool = self.addr2line(arm) if missing else None
        if missing and tool:
            import subprocess  # only when addr2line must run: kept off start-up

            for i in range(0, len(missing), BATCH):
                chunk = missing[i : i + BATCH]
                try:
                    proc = subprocess.run(
                        [tool, "-a", "-f", "-i", "-C", "-e", path, *(hex(o) for o in chunk)],
                        stdout=subprocess.PIPE,
                        stderr=subprocess.DEVNULL,
                        check=False,
                        timeout=300,
                    )
                except (OSError, subprocess.TimeoutExpired):
                    break
                parsed = parse_addr2line(proc.stdout.decode("utf-8", "replace"))
                for off in chunk:
                    entries = parsed.get(off, [])
                    self._memo[(path, off)] = entries
                    cached[hex(off)] = [list(e) for e in entries]
            if cache_file:
                import json  # only to write a lookup: jsonread reads them

                try:
                    os.makedirs(os.path.dirname(cache_file), exist_ok=True)
                    tmp = cache_file + f".{os.getpid()}"
                    with open(tmp, "w", encoding="utf-8") as handle:
                        json.dump(cached, handle)
                    os.replace(tmp, cache_file)
                except OSError:
                    pass
        for off in missing:
            self._memo.setdefault((path, off), [])

    def resolved(self, path: Optional[str], off: int) -> list[tuple[Optional[str], Optional[str], Optional[int]]]:
        if path is None:
            return []
        return self._memo.get((path, off), [])


def _find_module(modules: Sequence[Module], addr: int) -> Optional[Module]:
    for m in modules:
        if m.start <= addr < m.end:
            return m
    return None


class ProcessSymbols:
    """Symbolises every stack of one process in one batch per module."""

    def __init__(self, sym: Symbolizer, process: dict[str, object], parent: Optional[dict[str, object]] = None) -> None:
        self.sym = sym
        self.origin = str(process.get("origin", "text"))
        self.exe = process.get("exe") if isinstance(process.get("exe"), str) else None
        self.modules = [
            Module(str(m["path"]), int(m["base"], 16), int(m["start"], 16), int(m["end"], 16), str(m["build_id"]))
            for m in process.get("modules", [])  # type: ignore[union-attr]
        ]
        if not self.modules and parent is not None:
            # A fork child that did not repeat its inherited module map.
            self.modules = ProcessSymbols(sym, parent).modules
            if self.exe is None and isinstance(parent.get("exe"), str):
                self.exe = str(parent.get("exe"))
        self._files: dict[int, Optional[str]] = {}

    def _where(self, addr: int) -> tuple[Optional[Module], Optional[str], int, bool]:
        """(module, file to read, offset to look up, is ARM)."""
        if self.origin == "board":
            return None, self.sym.elf, (addr & ~1) - 1, True
        if self.origin == "text":
            return None, self.sym.elf, addr, False
        m = _find_module(self.modules, addr)
        if m is None:
            return None, None, addr, False
        key = id(m)
        if key not in self._files:
            self._files[key] = self.sym.module_file(m, self.exe)
        # Return addresses: the call is the byte before.
        return m, self._files[key], addr - 1 - m.base, False

    def prepare(self, stacks: Iterable[Sequence[str]]) -> None:
        if not self.sym.enabled:
            return
        per_file: dict[tuple[str, bool], set[int]] = {}
        for stack in stacks:
            for a in stack:
                _, path, off, arm = self._where(int(a, 16))
                if path:
                    per_file.setdefault((path, arm), set()).add(off)
        for (path, arm), offs in per_file.items():
            self.sym.lookup(path, offs, arm)

    def frames(self, stack: Sequence[str]) -> list[Frame]:
        out: list[Frame] = []
        for a in stack:
            addr = int(a, 16)
            m, path, off, _ = self._where(addr)
            modname = None
            if m is not None:
                modname = os.path.basename(m.path or (self.exe or "")) or "?"
            elif self.origin != "text" and self.sym.elf:
                modname = os.path.basename(self.sym.elf)
            entries = self.sym.resolved(path, off) if self.sym.enabled else []
            if not entries:
                fn = f"{modname}+{hex(addr - m.base)}" if m is not None else None
                out.append(Frame(addr=a, function=fn, module=modname))
                continue
            for i, (fn, fi, ln) in enumerate(entries):
                if fn is None and m is not None:
                    fn = f"{modname}+{hex(addr - m.base)}"
                out.append(Frame(addr=a, function=fn, file=fi, line=ln, module=modname, inlined=i < len(entries) - 1))
        return out
