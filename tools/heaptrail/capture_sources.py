"""Byte sources for ``heaptrail capture``: serial device, TCP, file, stdin,
and RTT over a GDB stub. Each yields chunks of bytes until its stream ends.
"""

from __future__ import annotations

import os
import select
import socket
import sys
import time
from typing import Iterator, Optional

from . import capture_elf, capture_rsp, capture_rtt
from .errors import HeaptrailError, InputError, UsageError

CHUNK = 65536

BAUD_RATES = (9600, 19200, 38400, 57600, 115200, 230400, 460800, 500000, 576000,
              921600, 1000000, 1152000, 1500000, 2000000, 3000000)


def parse_host_port(text: str, what: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", text
    try:
        number = int(port)
    except ValueError:
        raise UsageError(f"{what} wants HOST:PORT or PORT, not '{text}'") from None
    if not 0 < number < 65536:
        raise UsageError(f"{what}: port {number} out of range")
    return host or "127.0.0.1", number


def _read_fd(fd: int, deadline: Optional[float], idle: Optional[float]) -> Iterator[bytes]:
    """Chunks from a file descriptor until EOF, the deadline or idle time."""
    last = time.monotonic()
    while True:
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            return
        if idle is not None and now - last >= idle:
            return
        waits = [0.2]
        if deadline is not None:
            waits.append(deadline - now)
        if idle is not None:
            waits.append(idle - (now - last))
        ready, _, _ = select.select([fd], [], [], max(0.0, min(waits)))
        if not ready:
            continue
        data = os.read(fd, CHUNK)
        if not data:
            return
        last = time.monotonic()
        yield data


def from_file(path: str) -> Iterator[bytes]:
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    with f:
        while True:
            data = f.read(CHUNK)
            if not data:
                return
            yield data


def from_stdin(deadline: Optional[float], idle: Optional[float]) -> Iterator[bytes]:
    yield from _read_fd(sys.stdin.fileno(), deadline, idle)


def from_tcp(address: str, deadline: Optional[float], idle: Optional[float],
             connect_timeout: float) -> Iterator[bytes]:
    host, port = parse_host_port(address, "--tcp")
    # QEMU's `-serial tcp::PORT,server=on` may not listen yet: retry until
    # the connect timeout.
    give_up = time.monotonic() + connect_timeout
    while True:
        try:
            sock = socket.create_connection((host, port), timeout=connect_timeout)
            break
        except ConnectionRefusedError:
            if time.monotonic() >= give_up:
                raise HeaptrailError(f"connection refused by {host}:{port}") from None
            time.sleep(0.05)
        except socket.timeout:
            raise HeaptrailError(f"timed out connecting to {host}:{port}") from None
        except OSError as error:
            raise HeaptrailError(f"cannot connect to {host}:{port}: {error.strerror}") from None
    with sock:
        sock.setblocking(True)
        try:
            yield from _read_fd(sock.fileno(), deadline, idle)
        except ConnectionResetError:
            return


def from_serial(device: str, baud: int, deadline: Optional[float], idle: Optional[float]) -> Iterator[bytes]:
    import termios  # POSIX only: imported where needed

    if baud not in BAUD_RATES:
        raise UsageError(f"unsupported baud rate {baud} (one of {', '.join(map(str, BAUD_RATES))})")
    speed = getattr(termios, f"B{baud}", None)
    if speed is None:
        raise UsageError(f"baud rate {baud} is not available on this system")
    try:
        fd = os.open(device, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise InputError(f"{device}: no such device") from None
    except PermissionError:
        raise InputError(f"{device}: permission denied (add yourself to the dialout group?)") from None
    try:
        try:
            attrs = termios.tcgetattr(fd)
        except termios.error:
            raise InputError(f"{device}: not a serial device") from None
        # Raw mode, 8N1, no flow control: every byte as the board sent it.
        attrs[0] = 0  # iflag
        attrs[1] = 0  # oflag
        attrs[2] = termios.CS8 | termios.CREAD | termios.CLOCAL
        attrs[3] = 0  # lflag
        attrs[4] = speed
        attrs[5] = speed
        attrs[6][termios.VMIN] = 0
        attrs[6][termios.VTIME] = 0
        termios.tcsetattr(fd, termios.TCSANOW, attrs)
        termios.tcflush(fd, termios.TCIFLUSH)
        yield from _read_fd(fd, deadline, idle)
    finally:
        os.close(fd)


def from_gdb(address: str, elf: Optional[str], scan: Optional[str], channel: int,
             deadline: Optional[float], poll: float, timeout: float) -> Iterator[bytes]:
    host, port = parse_host_port(address, "--gdb")
    cb_address: Optional[int] = None
    if elf is not None:
        cb_address = capture_elf.read_symbol(elf, "_SEGGER_RTT").address
    scan_range = parse_scan(scan) if scan is not None else None
    if cb_address is None and scan_range is None:
        raise UsageError("--gdb needs --elf FIRMWARE or --scan START:LENGTH to find the RTT block")
    client = capture_rsp.GdbClient(host, port, timeout)
    found_by = time.monotonic() + timeout
    exited = False
    try:
        client.halt_reason()  # also tells us the stub is alive
        while True:
            if cb_address is None and scan_range is not None:
                cb_address = capture_rtt.find_id(client.read_memory(*scan_range), scan_range[0])
            data = b""
            if cb_address is not None:
                data = capture_rtt.drain(client, cb_address, channel)
                if not data and capture_rtt.parse_header(client.read_memory(cb_address, 24)) is None:
                    if time.monotonic() >= found_by and deadline is None:
                        raise HeaptrailError(f"timed out waiting for the RTT control block at {cb_address:#x}")
            elif time.monotonic() >= found_by and deadline is None:
                raise HeaptrailError("timed out scanning RAM for the RTT control block")
            if data:
                yield data
            if deadline is not None and time.monotonic() >= deadline:
                return
            client.cont()
            time.sleep(poll)
            client.interrupt()
    except capture_rsp.TargetExited:
        exited = True
        return
    finally:
        # Stopped by --timeout, an error or ^C: leave the target running.
        if not exited:
            client.detach()
        client.close()


def parse_scan(text: str) -> tuple[int, int]:
    start, sep, length = text.partition(":")
    try:
        if not sep:
            raise ValueError
        return int(start, 0), int(length, 0)
    except ValueError:
        raise UsageError(f"--scan wants START:LENGTH (e.g. 0x20000000:0x10000), not '{text}'") from None
