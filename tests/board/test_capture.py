"""Unit tests for `heaptrail capture` (tools/heaptrail/capture_*.py): real
TCP servers and a fake gdbstub on 127.0.0.1, a pseudo-terminal for the
serial source, ELF symbol lookup, packet framing and RTT ring arithmetic.
The real gdbstub (QEMU) is exercised by test_e2e_qemu.py."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import threading
import time
import unittest
from typing import Dict, List, Optional

LAUNCHER = os.environ["HTR_LAUNCHER"]
FW_RTT = os.environ.get("HTR_FW_BIN_RTT", "")
NM = os.environ.get("HTR_ARM_NM", "")
sys.path.insert(0, os.environ["HTR_TOOLS"])

from heaptrail import capture_elf, capture_rsp, capture_rtt  # noqa: E402
from heaptrail.errors import InputError  # noqa: E402

PAYLOAD = bytes(range(256)) * 40 + b"==MP alloc;16;0x20000100;a.c:1;seq=0;pc=0x10\n"


def capture(*args: str, stdin: Optional[bytes] = None, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([LAUNCHER, "capture", *args], input=stdin, capture_output=True,
                          timeout=timeout)


class Server(threading.Thread):
    """Accepts one client and sends it `chunks`, then closes (or holds the
    connection open for `hold` seconds)."""

    def __init__(self, chunks: List[bytes], hold: float = 0.0) -> None:
        super().__init__(daemon=True)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.chunks = chunks
        self.hold = hold

    def run(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            for chunk in self.chunks:
                conn.sendall(chunk)
                time.sleep(0.01)
            time.sleep(self.hold)
        self.sock.close()


class TempDirCase(unittest.TestCase):
    def setUp(self) -> None:
        import tempfile

        self.tmp = tempfile.mkdtemp(prefix="htr-capture-")
        self.out = os.path.join(self.tmp, "out.cap")

    def tearDown(self) -> None:
        import shutil

        shutil.rmtree(self.tmp, ignore_errors=True)

    def read_out(self) -> bytes:
        with open(self.out, "rb") as f:
            return f.read()

    def assert_one_line_error(self, r: subprocess.CompletedProcess, message: str) -> None:
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertEqual(r.stderr.decode(), f"heaptrail capture: {message}\n")


class TcpSource(TempDirCase):
    def test_bytes_until_the_server_closes(self) -> None:
        server = Server([PAYLOAD[i:i + 1000] for i in range(0, len(PAYLOAD), 1000)])
        server.start()
        r = capture("--tcp", f"127.0.0.1:{server.port}", "-o", self.out)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.read_out(), PAYLOAD)
        self.assertEqual(r.stderr.decode(), f"heaptrail capture: {len(PAYLOAD)} bytes to {self.out}\n")

    def test_idle_timeout_ends_an_open_stream(self) -> None:
        server = Server([PAYLOAD[:500]], hold=5.0)
        server.start()
        start = time.monotonic()
        r = capture("--tcp", str(server.port), "-o", self.out, "--idle", "0.3", "--quiet")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertLess(time.monotonic() - start, 4.0)
        self.assertEqual(self.read_out(), PAYLOAD[:500])

    def test_refused(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        r = capture("--tcp", f"127.0.0.1:{port}", "-o", self.out, "--connect-timeout", "0.3")
        self.assert_one_line_error(r, f"connection refused by 127.0.0.1:{port}")
        self.assertFalse(os.path.exists(self.out), "a failed capture leaves no file")

    def test_bad_address(self) -> None:
        r = capture("--tcp", "localhost:http", "-o", self.out)
        self.assert_one_line_error(r, "--tcp wants HOST:PORT or PORT, not 'localhost:http'")


class FileAndStdin(TempDirCase):
    def test_file(self) -> None:
        src = os.path.join(self.tmp, "in.bin")
        with open(src, "wb") as f:
            f.write(PAYLOAD)
        r = capture("--file", src, "-o", self.out, "--quiet")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.read_out(), PAYLOAD)

    def test_missing_file(self) -> None:
        r = capture("--file", os.path.join(self.tmp, "nope"), "-o", self.out)
        self.assert_one_line_error(r, f"{os.path.join(self.tmp, 'nope')}: no such file")

    def test_stdin_to_stdout(self) -> None:
        r = capture("--stdin", "-o", "-", "--quiet", stdin=PAYLOAD)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, PAYLOAD)

    def test_to_a_closed_stdout(self) -> None:
        r = subprocess.run([LAUNCHER, "capture", "--stdin", "-o", "-", "--quiet"], input=PAYLOAD,
                           stdout=None, stderr=subprocess.PIPE, timeout=30, preexec_fn=lambda: os.close(1))
        self.assert_one_line_error(r, "-o -: standard output is closed")


class SerialSource(TempDirCase):
    def test_pty_in_raw_mode(self) -> None:
        master, slave = os.openpty()
        name = os.ttyname(slave)
        proc = subprocess.Popen([LAUNCHER, "capture", "--serial", name, "--baud", "921600",
                                 "-o", self.out, "--idle", "1.0", "--quiet"], stderr=subprocess.PIPE)
        time.sleep(0.5)  # let it open and configure the port
        # Bytes a cooked tty would change: CR, NL, ^C, ^D, DEL, 0xff.
        data = b"\r\n\x03\x04\x7f\xff\x00" + PAYLOAD[:2000]
        os.write(master, data)
        _, err = proc.communicate(timeout=20)
        os.close(master)
        os.close(slave)
        self.assertEqual(proc.returncode, 0, err)
        self.assertEqual(self.read_out(), data)

    def test_missing_device(self) -> None:
        r = capture("--serial", "/dev/ttyHTRnothere", "-o", self.out)
        self.assert_one_line_error(r, "/dev/ttyHTRnothere: no such device")

    def test_not_a_tty(self) -> None:
        r = capture("--serial", "/dev/null", "-o", self.out)
        self.assert_one_line_error(r, "/dev/null: not a serial device")

    def test_bad_baud(self) -> None:
        r = capture("--serial", "/dev/null", "--baud", "12345", "-o", self.out)
        self.assertEqual(r.returncode, 2)
        self.assertTrue(r.stderr.decode().startswith("heaptrail capture: unsupported baud rate 12345"))


def elf32(symbols: Dict[str, int]) -> bytes:
    """A minimal little-endian ELF32 with a .symtab, .strtab, .shstrtab."""
    strtab = b"\0"
    syms = struct.pack("<IIIBBH", 0, 0, 0, 0, 0, 0)
    for name, value in symbols.items():
        syms += struct.pack("<IIIBBH", len(strtab), value, 4, 0x11, 0, 1)
        strtab += name.encode() + b"\0"
    shstrtab = b"\0.symtab\0.strtab\0.shstrtab\0"
    body_off = 52
    sym_off = body_off
    str_off = sym_off + len(syms)
    shs_off = str_off + len(strtab)
    sh_off = (shs_off + len(shstrtab) + 3) & ~3
    header = b"\x7fELF" + bytes((1, 1, 1)) + bytes(9)
    header += struct.pack("<HHIIIIIHHHHHH", 2, 40, 1, 0, 0, sh_off, 0, 52, 0, 0, 40, 4, 3)
    data = bytearray(header)
    data += syms + strtab + shstrtab
    data += bytes(sh_off - len(data))
    data += bytes(40)  # null section
    data += struct.pack("<IIIIIIIIII", 1, 2, 0, 0, sym_off, len(syms), 2, 1, 4, 16)
    data += struct.pack("<IIIIIIIIII", 9, 3, 0, 0, str_off, len(strtab), 0, 0, 1, 0)
    data += struct.pack("<IIIIIIIIII", 17, 3, 0, 0, shs_off, len(shstrtab), 0, 0, 1, 0)
    return bytes(data)


class Elf(unittest.TestCase):
    def test_synthetic_elf32(self) -> None:
        image = elf32({"main": 0x101, "_SEGGER_RTT": 0x20000408})
        self.assertEqual(capture_elf.find_symbol(image, "_SEGGER_RTT"),
                         capture_elf.Symbol("_SEGGER_RTT", 0x20000408, 4))
        self.assertIsNone(capture_elf.find_symbol(image, "_SEGGER"))

    def test_garbage_and_truncated(self) -> None:
        with self.assertRaisesRegex(InputError, "bad magic"):
            capture_elf.find_symbol(b"hello world" * 10, "x", "f")
        image = elf32({"a": 1})
        with self.assertRaisesRegex(InputError, "not a usable ELF"):
            capture_elf.find_symbol(image[:60], "a", "f")

    @unittest.skipUnless(FW_RTT and NM, "firmware not built")
    def test_firmware_symbol_matches_nm(self) -> None:
        out = subprocess.run([NM, FW_RTT], capture_output=True, check=True).stdout.decode()
        want = next(int(l.split()[0], 16) for l in out.splitlines() if l.endswith(" _SEGGER_RTT"))
        self.assertEqual(capture_elf.read_symbol(FW_RTT, "_SEGGER_RTT").address, want)

    def test_cli_errors(self) -> None:
        import tempfile

        with tempfile.NamedTemporaryFile(suffix=".elf") as f:
            f.write(b"not an elf at all, just text" * 4)
            f.flush()
            r = capture("--gdb", "127.0.0.1:1", "--elf", f.name, "-o", os.devnull)
            self.assertEqual(r.returncode, 2)
            self.assertEqual(r.stderr.decode(), f"heaptrail capture: {f.name}: not a usable ELF file: bad magic\n")
        r = capture("--gdb", "127.0.0.1:1", "--elf", "/bin/sh", "-o", os.devnull)
        self.assertEqual(r.stderr.decode(),
                         "heaptrail capture: /bin/sh: no symbol _SEGGER_RTT "
                         "(is the firmware built with the RTT transport?)\n")
        r = capture("--gdb", "127.0.0.1:1", "-o", os.devnull)
        self.assertEqual(r.stderr.decode(),
                         "heaptrail capture: --gdb needs --elf FIRMWARE or --scan START:LENGTH to find the RTT block\n")


class Rsp(unittest.TestCase):
    def test_packets(self) -> None:
        self.assertEqual(capture_rsp.encode_packet(b"m20000000,4"), b"$m20000000,4#4f")
        self.assertEqual(capture_rsp.encode_packet(b"a$b"), b"$a}\x04b#%02x" % ((0x61 + 0x7D + 0x04 + 0x62) & 0xFF))
        p = capture_rsp.PacketParser()
        events = p.feed(b"+$OK#9a-$T05#b9$E01#00")
        self.assertEqual(events, [("ack", b""), ("packet", b"OK"), ("nak", b""), ("packet", b"T05"),
                                  ("bad", b"E01")])
        self.assertEqual(p.feed(b"$00"), [])  # incomplete: waits
        self.assertEqual(p.feed(b"*\"#%02x" % ((0x30 + 0x30 + 0x2A + 0x22) & 0xFF)), [("packet", b"0000000")])  # "0" then 5 more

    def test_exit_replies(self) -> None:
        self.assertTrue(capture_rsp.is_exit_reply(b"W00"))
        self.assertTrue(capture_rsp.is_exit_reply(b"X09"))
        self.assertFalse(capture_rsp.is_exit_reply(b"T05"))


class FakeMemory:
    def __init__(self, base: int, size: int) -> None:
        self.base = base
        self.mem = bytearray(size)
        self.writes: List[tuple] = []

    def read_memory(self, address: int, length: int) -> bytes:
        off = address - self.base
        return bytes(self.mem[off:off + length])

    def write_memory(self, address: int, data: bytes) -> None:
        self.writes.append((address, data))
        off = address - self.base
        self.mem[off:off + len(data)] = data


def rtt_block(mem: FakeMemory, cb: int, buf: int, size: int, wr: int, rd: int, with_id: bool = True) -> None:
    off = cb - mem.base
    if with_id:
        mem.mem[off:off + 16] = b"SEGGER RTT\0\0\0\0\0\0"
    struct.pack_into("<ii", mem.mem, off + 16, 1, 1)
    struct.pack_into("<IIIIII", mem.mem, off + 24, 0, buf, size, wr, rd, 0)


class Rtt(unittest.TestCase):
    def test_pieces(self) -> None:
        self.assertEqual(capture_rtt.pending_pieces(16, 5, 5), [])
        self.assertEqual(capture_rtt.pending_pieces(16, 9, 5), [(5, 4)])
        self.assertEqual(capture_rtt.pending_pieces(16, 3, 12), [(12, 4), (0, 3)])
        self.assertEqual(capture_rtt.pending_pieces(16, 0, 12), [(12, 4)])

    def test_drain_wrapped_and_release(self) -> None:
        mem = FakeMemory(0x20000000, 0x1000)
        cb, buf = 0x20000100, 0x20000800
        data = bytes(range(100, 132))
        # 20 bytes at the end of a 64-byte ring, 12 at its start.
        mem.mem[0x800 + 44:0x800 + 64] = data[:20]
        mem.mem[0x800:0x800 + 12] = data[20:]
        rtt_block(mem, cb, buf, 64, wr=12, rd=44)
        self.assertEqual(capture_rtt.drain(mem, cb, 0), data)
        # RdOff (desc + 16) now equals WrOff; WrOff never written.
        self.assertEqual(mem.writes, [(cb + 24 + 16, struct.pack("<I", 12))])
        self.assertEqual(capture_rtt.drain(mem, cb, 0), b"")

    def test_not_ready_and_corrupt(self) -> None:
        mem = FakeMemory(0x20000000, 0x1000)
        rtt_block(mem, 0x20000100, 0x20000800, 64, 3, 0, with_id=False)
        self.assertEqual(capture_rtt.drain(mem, 0x20000100, 0), b"")
        rtt_block(mem, 0x20000100, 0x20000800, 64, 70, 0)
        with self.assertRaisesRegex(InputError, "corrupt"):
            capture_rtt.drain(mem, 0x20000100, 0)
        self.assertEqual(capture_rtt.find_id(bytes(mem.mem), mem.base), 0x20000100)
        rtt_block(mem, 0x20000100, 0x20000800, 64, 3, 0)
        with self.assertRaisesRegex(InputError, "1 up channel"):
            capture_rtt.drain(mem, 0x20000100, 1)


class FakeStub(threading.Thread):
    """A gdbstub over a FakeMemory: the 'target' appends one chunk to the
    RTT ring each time it is continued, then exits (W00)."""

    def __init__(self, chunks: List[bytes], silent: bool = False) -> None:
        super().__init__(daemon=True)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.mem = FakeMemory(0x20000000, 0x2000)
        self.cb, self.buf, self.size = 0x20000200, 0x20001000, 256
        self.chunks = list(chunks)
        self.silent = silent
        self.running = False
        self.detached = False

    def target_step(self) -> None:
        if not self.chunks:
            return
        if self.chunks and self.mem.mem[self.cb - self.mem.base] == 0:
            rtt_block(self.mem, self.cb, self.buf, self.size, 0, 0)
        off = self.cb - self.mem.base + 24
        _, _, size, wr, rd, _ = struct.unpack_from("<IIIIII", self.mem.mem, off)
        chunk = self.chunks.pop(0)
        for b in chunk:
            assert (wr + 1) % size != rd, "fake target overran the ring"
            self.mem.mem[self.buf - self.mem.base + wr] = b
            wr = (wr + 1) % size
        struct.pack_into("<I", self.mem.mem, off + 12, wr)

    def run(self) -> None:
        try:
            self.serve()
        finally:
            self.sock.close()

    def serve(self) -> None:
        conn, _ = self.sock.accept()
        parser = capture_rsp.PacketParser()
        with conn:
            if self.silent:
                time.sleep(3)
                return
            while True:
                data = conn.recv(4096)
                if not data:
                    return
                if b"\x03" in data:
                    data = data.replace(b"\x03", b"")
                    if self.running:
                        self.running = False
                        self.target_step()
                        if not self.chunks and self.drained():
                            conn.sendall(capture_rsp.encode_packet(b"W00"))
                            return
                        conn.sendall(capture_rsp.encode_packet(b"T05"))
                for kind, payload in parser.feed(data):
                    if kind != "packet":
                        continue
                    conn.sendall(b"+")
                    reply = self.answer(payload)
                    if reply is not None:
                        conn.sendall(capture_rsp.encode_packet(reply))

    def drained(self) -> bool:
        off = self.cb - self.mem.base + 24
        _, _, _, wr, rd, _ = struct.unpack_from("<IIIIII", self.mem.mem, off)
        return wr == rd

    def answer(self, payload: bytes) -> Optional[bytes]:
        if payload == b"?":
            return b"S05"
        if payload == b"c":
            self.running = True
            return None
        if payload.startswith(b"m"):
            addr, length = (int(x, 16) for x in payload[1:].split(b","))
            return self.mem.read_memory(addr, length).hex().encode()
        if payload == b"D":
            self.detached = True
            return b"OK"
        if payload.startswith(b"M"):
            head, data = payload[1:].split(b":")
            addr, _ = (int(x, 16) for x in head.split(b","))
            self.mem.write_memory(addr, bytes.fromhex(data.decode()))
            return b"OK"
        return b""


class GdbSource(TempDirCase):
    def test_scan_and_drain_until_exit(self) -> None:
        chunks = [PAYLOAD[i:i + 200] for i in range(0, 3000, 200)]
        stub = FakeStub(chunks)
        stub.start()
        r = capture("--gdb", f"127.0.0.1:{stub.port}", "--scan", "0x20000000:0x2000", "--poll", "0.001",
                    "-o", self.out, "--quiet")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.read_out(), b"".join(chunks))

    def test_timeout_detaches_and_keeps_what_it_read(self) -> None:
        chunks = [bytes((i % 251,)) * 10 for i in range(100000)]
        stub = FakeStub(chunks)
        stub.start()
        start = time.monotonic()
        r = capture("--gdb", f"127.0.0.1:{stub.port}", "--scan", "0x20000000:0x2000", "--poll", "0.001",
                    "--timeout", "1.0", "-o", self.out, "--quiet")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertLess(time.monotonic() - start, 8.0)
        stub.join(5)
        self.assertTrue(stub.detached, "the target was left halted")
        got = self.read_out()
        self.assertGreater(len(got), 0)
        self.assertEqual(got, b"".join(chunks)[:len(got)])

    def test_stub_that_never_answers(self) -> None:
        stub = FakeStub([], silent=True)
        stub.start()
        r = capture("--gdb", f"127.0.0.1:{stub.port}", "--scan", "0x20000000:0x100", "-o", self.out,
                    "--connect-timeout", "0.5")
        self.assert_one_line_error(r, f"timed out waiting for gdbstub at 127.0.0.1:{stub.port}")

    def test_refused(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        r = capture("--gdb", str(port), "--scan", "0x20000000:0x100", "-o", self.out, "--connect-timeout", "0.3")
        self.assert_one_line_error(r, f"connection refused by gdbstub at 127.0.0.1:{port}")


if __name__ == "__main__":
    unittest.main(verbosity=2)
