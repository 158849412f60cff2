"""Errors that end a command with one line on stderr, never a traceback."""

from __future__ import annotations


class HeaptrailError(Exception):
    """A failure the user can act on. str(error) is the whole message."""

    exit_code = 2


class UsageError(HeaptrailError):
    """Bad options or arguments."""


class InputError(HeaptrailError):
    """Unreadable, corrupt or unsupported input: names the file and where."""


class ToolError(HeaptrailError):
    """A helper program (engine, compiler, emulator) failed."""
