"""Runs htr-engine and parses its JSON (docs/analyser.md, "Engine output")."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any, Sequence

from .errors import InputError, ToolError

FORMATS = ("auto", "host", "valground", "board-text", "mtrace", "board")


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
    cmd = [engine, "--format", fmt, "--", *inputs]
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    except OSError as error:
        raise ToolError(f"cannot run {engine}: {error.strerror}") from None
    message = proc.stderr.decode("utf-8", "replace").strip()
    if proc.returncode == 2:
        raise InputError(message.splitlines()[-1] if message else "unreadable input")
    if proc.returncode != 0:
        raise ToolError(f"htr-engine failed (status {proc.returncode}): {message}")
    try:
        data: dict[str, Any] = json.loads(proc.stdout)
    except ValueError as error:
        raise ToolError(f"htr-engine wrote malformed JSON: {error}") from None
    for item in data.get("inputs", []):
        bad = item.get("bad_input")
        if bad:
            extra = f" ({bad['count']} corrupt places)" if bad["count"] > 1 else ""
            raise InputError(f"{item['path']}: corrupt data at offset {bad['offset']}: {bad['reason']}{extra}")
    return data
