"""Runs htr-engine and parses its JSON (docs/analyser.md, "Engine output")."""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing costs start-up and annotations are never evaluated
if TYPE_CHECKING:
    from typing import Any, Sequence

from . import spawn
from .errors import InputError, ToolError


def start_early(engine: str, inputs: Sequence[str], fmt: str) -> None:
    """spawn.start_early with this process's environment."""
    spawn.start_early(engine, inputs, fmt, os.environ)


cancel_early = spawn.cancel_early


def run_engine(engine: str, inputs: Sequence[str], fmt: str = "auto") -> dict[str, Any]:
    """Analyses inputs in one engine process; raises InputError for inputs
    the engine refuses or finds corrupt."""
    if not engine or not os.path.exists(engine):
        raise ToolError(f"the analysis engine is missing ({engine or 'not built'})")
    for path in inputs:
        # Fail early with the OS's words, before the engine says the same.
        if not os.path.isfile(path):
            if os.path.isdir(path):
                raise InputError(f"{path}: is a directory")
            if os.path.exists(path):
                raise InputError(f"{path}: not a regular file (a trace or log file is needed)")
            raise InputError(f"{path}: no such file")
        if not os.access(path, os.R_OK):
            raise InputError(f"{path}: permission denied")
    cmd = spawn.command(engine, inputs, fmt)
    run = spawn.take_early()
    if run is not None and run.cmd != cmd:
        run.close()
        run = None
    try:
        if run is None:
            run = spawn.Run(cmd, os.environ)
        status, out, err = run.finish()
    except OSError as error:
        raise ToolError(f"cannot run {engine}: {error.strerror}") from None
    message = err.decode("utf-8", "replace").strip()
    if status == 2:
        raise InputError(message.splitlines()[-1] if message else "unreadable input")
    if status != 0:
        raise ToolError(f"htr-engine failed (status {status}): {message}")
    from .jsonread import loads  # after the spawn: the engine need not wait for it

    try:
        data: dict[str, Any] = loads(out)
    except ValueError as error:
        raise ToolError(f"htr-engine wrote malformed JSON: {error}") from None
    for item in data.get("inputs", []):
        bad = item.get("bad_input")
        if bad:
            extra = f" ({bad['count']} corrupt places)" if bad["count"] > 1 else ""
            raise InputError(f"{item['path']}: corrupt data at offset {bad['offset']}: {bad['reason']}{extra}")
    return data
