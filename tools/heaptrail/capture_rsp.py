"""The GDB remote serial protocol, as much as RTT capture needs: packets with
acks (QEMU's gdbstub has no no-ack mode), halt with 0x03, read memory with
``m``, write with ``M``, continue with ``c``.

Framing (``encode_packet``, ``PacketParser``) is pure; ``GdbClient`` does the
socket I/O.
"""

from __future__ import annotations

import socket
import time
from typing import List, Optional, Tuple

from .errors import HeaptrailError, InputError


class TargetExited(Exception):
    """The target ended (W or X stop reply, or the stub closed the link)."""


def checksum(payload: bytes) -> int:
    return sum(payload) & 0xFF


def escape(payload: bytes) -> bytes:
    out = bytearray()
    for b in payload:
        if b in b"$#}*":
            out += bytes((0x7D, b ^ 0x20))
        else:
            out.append(b)
    return bytes(out)


def encode_packet(payload: bytes) -> bytes:
    body = escape(payload)
    return b"$" + body + b"#" + b"%02x" % checksum(body)


def unescape(body: bytes) -> bytes:
    out = bytearray()
    i = 0
    while i < len(body):
        b = body[i]
        if b == 0x7D and i + 1 < len(body):
            out.append(body[i + 1] ^ 0x20)
            i += 2
        elif b == 0x2A and out and i + 1 < len(body):
            # Run-length: '*' then a count character (n - 29 repeats).
            out += bytes((out[-1],)) * (body[i + 1] - 29)
            i += 2
        else:
            out.append(b)
            i += 1
    return bytes(out)


class PacketParser:
    """Splits a byte stream from the stub into acks and packets."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> List[Tuple[str, bytes]]:
        """Returns events: ("ack", b""), ("nak", b""), ("packet", payload),
        ("bad", payload) for a checksum mismatch."""
        self._buf += data
        events: List[Tuple[str, bytes]] = []
        while self._buf:
            c = self._buf[0]
            if c == ord("+"):
                events.append(("ack", b""))
                del self._buf[0]
            elif c == ord("-"):
                events.append(("nak", b""))
                del self._buf[0]
            elif c == ord("$"):
                hash_at = self._buf.find(b"#")
                if hash_at < 0 or len(self._buf) < hash_at + 3:
                    break
                body = bytes(self._buf[1:hash_at])
                sent = bytes(self._buf[hash_at + 1:hash_at + 3])
                del self._buf[:hash_at + 3]
                try:
                    ok = int(sent, 16) == checksum(body)
                except ValueError:
                    ok = False
                events.append(("packet" if ok else "bad", unescape(body)))
            else:
                del self._buf[0]  # noise between packets
        return events


def decode_hex(payload: bytes, what: str) -> bytes:
    if payload.startswith(b"E") and len(payload) == 3:
        raise InputError(f"gdbstub refused to {what} (error {payload[1:].decode(errors='replace')})")
    try:
        return bytes.fromhex(payload.decode("ascii"))
    except ValueError:
        raise InputError(f"gdbstub sent a malformed reply to {what}") from None


def is_exit_reply(payload: bytes) -> bool:
    return payload[:1] in (b"W", b"X")


class GdbClient:
    """A GDB remote connection over TCP."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.timeout = timeout
        self.where = f"{host}:{port}"
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.create_connection((host, port), timeout=timeout)
                break
            except ConnectionRefusedError:
                if time.monotonic() >= deadline:
                    raise HeaptrailError(f"connection refused by gdbstub at {self.where}") from None
                time.sleep(0.05)
            except socket.timeout:
                raise HeaptrailError(f"timed out connecting to gdbstub at {self.where}") from None
            except OSError as error:
                raise HeaptrailError(f"cannot connect to gdbstub at {self.where}: {error.strerror}") from None
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.parser = PacketParser()
        self.pending: List[Tuple[str, bytes]] = []

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def _next_event(self, timeout: Optional[float] = None) -> Tuple[str, bytes]:
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        while not self.pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise HeaptrailError(f"timed out waiting for gdbstub at {self.where}")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                raise HeaptrailError(f"timed out waiting for gdbstub at {self.where}") from None
            except ConnectionResetError:
                raise TargetExited() from None
            if not data:
                raise TargetExited()
            self.pending.extend(self.parser.feed(data))
        return self.pending.pop(0)

    def _send(self, payload: bytes) -> None:
        packet = encode_packet(payload)
        for _ in range(5):
            try:
                self.sock.sendall(packet)
            except (BrokenPipeError, ConnectionResetError):
                raise TargetExited() from None
            kind, _ = self._next_event()
            while kind in ("packet", "bad"):
                # A stop reply racing our command: keep it for later.
                self.pending.insert(0, (kind, _))
                kind, _ = self._next_event()
            if kind == "ack":
                return
        raise InputError(f"gdbstub at {self.where} keeps rejecting packets")

    def _ack(self, ok: bool) -> None:
        try:
            self.sock.sendall(b"+" if ok else b"-")
        except (BrokenPipeError, ConnectionResetError):
            # The stub said its last word (an exit reply) and hung up.
            pass

    def _reply(self, timeout: Optional[float] = None) -> bytes:
        while True:
            kind, payload = self._next_event(timeout)
            if kind == "packet":
                self._ack(True)
                return payload
            if kind == "bad":
                self._ack(False)

    def command(self, payload: bytes) -> bytes:
        self._send(payload)
        reply = self._reply()
        if is_exit_reply(reply):
            raise TargetExited()
        return reply

    def halt_reason(self) -> bytes:
        return self.command(b"?")

    def interrupt(self) -> None:
        """Halts the target; returns when it stopped."""
        try:
            self.sock.sendall(b"\x03")
        except (BrokenPipeError, ConnectionResetError):
            raise TargetExited() from None
        while True:
            reply = self._reply()
            if is_exit_reply(reply):
                raise TargetExited()
            if reply[:1] in (b"T", b"S"):
                return

    def cont(self) -> None:
        """Resumes the target; its stop reply comes after interrupt()."""
        self._send(b"c")

    def detach(self) -> None:
        """Lets the target run on without us; quiet if it is gone already."""
        try:
            self._send(b"D")
            self._reply(timeout=1.0)
        except (HeaptrailError, TargetExited, OSError):
            pass

    def read_memory(self, address: int, length: int) -> bytes:
        out = bytearray()
        while length > 0:
            n = min(length, 1024)
            out += decode_hex(self.command(b"m%x,%x" % (address, n)), f"read {n} bytes at {address:#x}")
            address += n
            length -= n
        return bytes(out)

    def write_memory(self, address: int, data: bytes) -> None:
        reply = self.command(b"M%x,%x:" % (address, len(data)) + data.hex().encode())
        if reply != b"OK":
            raise InputError(f"gdbstub refused to write {len(data)} bytes at {address:#x}")
