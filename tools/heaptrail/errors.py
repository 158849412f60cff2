"""Errors that end a command with one line on stderr, never a traceback."""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing costs start-up
if TYPE_CHECKING:
    from typing import Callable, NoReturn


class HeaptrailError(Exception):
    """A failure the user can act on. str(error) is the whole message."""

    exit_code = 2


class UsageError(HeaptrailError):
    """Bad options or arguments."""


class InputError(HeaptrailError):
    """Unreadable, corrupt or unsupported input: names the file and where."""


class ToolError(HeaptrailError):
    """A helper program (engine, compiler, emulator) failed."""


def run_guarded(command: str, action: Callable[[], int]) -> int:
    """action()'s exit status, or the status of what ended it, said in one
    line on stderr under `heaptrail COMMAND:`."""
    try:
        return int(action())
    except HeaptrailError as error:
        print(f"heaptrail {command}: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): not an error worth a message.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except OSError as error:
        where = f"{error.filename}: " if error.filename else ""
        print(f"heaptrail {command}: {where}{error.strerror}", file=sys.stderr)
        return 2


def leave(status: int) -> NoReturn:
    """Exits without the interpreter's teardown (2-5 ms of freeing modules),
    which nothing needs once the output is flushed: every file heaptrail
    writes is closed by then, every helper waited for. For `run` and
    `report`, the commands whose time users (and the benchmark) watch."""
    for stream in (sys.stdout, sys.stderr):
        if stream is None:
            continue  # the descriptor was closed when Python started
        try:
            stream.flush()
        except (OSError, ValueError):
            pass  # a closed pipe: as the interpreter's own exit would
    os._exit(status)
