"""Symbol lookup in an ELF file (32- or 64-bit, either byte order), enough to
find the RTT control block ``_SEGGER_RTT`` in a firmware image.

``find_symbol`` works on bytes, so it is tested without files; ``read_symbol``
is the I/O wrapper.
"""

from __future__ import annotations

import struct
from typing import NamedTuple, Optional

from .errors import InputError


class Symbol(NamedTuple):
    name: str
    address: int
    size: int


def _fail(path: str, why: str) -> InputError:
    return InputError(f"{path}: not a usable ELF file: {why}")


def find_symbol(data: bytes, name: str, path: str = "ELF") -> Optional[Symbol]:
    """The symbol called ``name`` in the .symtab (or .dynsym), or None."""
    if len(data) < 52 or data[:4] != b"\x7fELF":
        raise _fail(path, "bad magic")
    ei_class, ei_data = data[4], data[5]
    if ei_class not in (1, 2) or ei_data not in (1, 2):
        raise _fail(path, "unknown class or byte order")
    end = "<" if ei_data == 1 else ">"
    wide = ei_class == 2
    try:
        if wide:
            shoff, = struct.unpack_from(end + "Q", data, 0x28)
            shentsize, shnum, shstrndx = struct.unpack_from(end + "HHH", data, 0x3A)
        else:
            shoff, = struct.unpack_from(end + "I", data, 0x20)
            shentsize, shnum, shstrndx = struct.unpack_from(end + "HHH", data, 0x2E)
        sections = []
        for i in range(shnum):
            off = shoff + i * shentsize
            if wide:
                _, sh_type, _, _, sh_offset, sh_size, sh_link, _, _, sh_entsize = struct.unpack_from(
                    end + "IIQQQQIIQQ", data, off)
            else:
                _, sh_type, _, _, sh_offset, sh_size, sh_link, _, _, sh_entsize = struct.unpack_from(
                    end + "IIIIIIIIII", data, off)
            sections.append((sh_type, sh_offset, sh_size, sh_link, sh_entsize))
    except struct.error:
        raise _fail(path, "section headers run past the end") from None
    if shnum == 0 or shstrndx >= shnum:
        raise _fail(path, "no section headers")
    SHT_SYMTAB, SHT_DYNSYM = 2, 11
    wanted = name.encode()
    for kind in (SHT_SYMTAB, SHT_DYNSYM):
        for sh_type, sh_offset, sh_size, sh_link, sh_entsize in sections:
            if sh_type != kind or sh_link >= len(sections):
                continue
            str_off, str_size = sections[sh_link][1], sections[sh_link][2]
            if sh_offset + sh_size > len(data) or str_off + str_size > len(data):
                raise _fail(path, "symbol table runs past the end")
            strtab = data[str_off:str_off + str_size]
            entsize = sh_entsize or (24 if wide else 16)
            for off in range(sh_offset, sh_offset + sh_size - entsize + 1, entsize):
                if wide:
                    st_name, _, _, _, st_value, st_size = struct.unpack_from(end + "IBBHQQ", data, off)
                else:
                    st_name, st_value, st_size, _, _, _ = struct.unpack_from(end + "IIIBBH", data, off)
                stop = strtab.find(b"\0", st_name)
                if stop < 0:
                    continue
                if strtab[st_name:stop] == wanted:
                    return Symbol(name, st_value, st_size)
    return None


def read_symbol(path: str, name: str) -> Symbol:
    """Reads ``path`` and finds ``name``; InputError when either fails."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as error:
        raise InputError(f"{path}: {error.strerror}") from None
    symbol = find_symbol(data, name, path)
    if symbol is None:
        raise InputError(f"{path}: no symbol {name} (is the firmware built with the RTT transport?)")
    return symbol
