"""Reading a SEGGER-RTT up channel through a debugger's memory access.

The layout (32-bit target): a 16-byte ID, MaxNumUpBuffers, MaxNumDownBuffers,
then 24-byte descriptors (name, buffer, size, WrOff, RdOff, flags), up
buffers first. The host reads WrOff/RdOff and the bytes between them and
writes RdOff back; it never writes WrOff.
"""

from __future__ import annotations

import struct
from typing import List, NamedTuple, Optional, Protocol, Tuple

from .errors import InputError

RTT_ID = b"SEGGER RTT\0"
HEADER_SIZE = 24
DESC_SIZE = 24


class Channel(NamedTuple):
    desc_address: int
    buffer: int
    size: int
    wr_off: int
    rd_off: int
    flags: int


class Memory(Protocol):
    def read_memory(self, address: int, length: int) -> bytes: ...

    def write_memory(self, address: int, data: bytes) -> None: ...


def parse_header(block: bytes) -> Optional[Tuple[int, int]]:
    """(max_up, max_down) when block starts with a complete control block
    header, None while the target has not written the ID yet."""
    if len(block) < HEADER_SIZE or not block.startswith(RTT_ID):
        return None
    max_up, max_down = struct.unpack_from("<ii", block, 16)
    if not (0 < max_up <= 32 and 0 <= max_down <= 32):
        raise InputError("RTT control block has implausible buffer counts")
    return max_up, max_down


def parse_channel(cb_address: int, block: bytes, index: int) -> Channel:
    """Up channel ``index`` from the bytes of the control block."""
    off = HEADER_SIZE + index * DESC_SIZE
    if len(block) < off + DESC_SIZE:
        raise InputError(f"RTT control block too short for up channel {index}")
    _, buffer, size, wr, rd, flags = struct.unpack_from("<IIIIII", block, off)
    if size == 0 or wr >= size or rd >= size:
        raise InputError(f"RTT up channel {index} is corrupt (size {size}, WrOff {wr}, RdOff {rd})")
    return Channel(cb_address + off, buffer, size, wr, rd, flags)


def pending_pieces(size: int, wr: int, rd: int) -> List[Tuple[int, int]]:
    """(offset, length) pieces to read, in order: one, or two if wrapped."""
    if wr == rd:
        return []
    if wr > rd:
        return [(rd, wr - rd)]
    pieces = [(rd, size - rd)]
    if wr:
        pieces.append((0, wr))
    return pieces


def find_id(memory: bytes, base: int) -> Optional[int]:
    at = memory.find(RTT_ID)
    return None if at < 0 else base + at


def drain(mem: Memory, cb_address: int, index: int) -> bytes:
    """Reads what channel ``index`` holds and releases it to the target."""
    header = mem.read_memory(cb_address, HEADER_SIZE + (index + 1) * DESC_SIZE)
    counts = parse_header(header)
    if counts is None:
        return b""
    if index >= counts[0]:
        raise InputError(f"the RTT block has {counts[0]} up channel(s): no channel {index}")
    ch = parse_channel(cb_address, header, index)
    data = bytearray()
    for off, length in pending_pieces(ch.size, ch.wr_off, ch.rd_off):
        data += mem.read_memory(ch.buffer + off, length)
    if data:
        mem.write_memory(ch.desc_address + 16, struct.pack("<I", ch.wr_off))
    return bytes(data)
