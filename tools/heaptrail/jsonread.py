"""json.loads through the C scanner it uses, without importing json.

The json package imports re, and re imports enum, functools and
collections: about 6 ms of CPU (`python3 -S -c "import json, fnmatch"`
takes 12 ms of task-clock, `-c "import _json"` 6 ms), spent by every
report while the engine, itself using more than one CPU, runs on the same
cores. The scanner here is the one json.loads makes (_json.make_scanner
with json.JSONDecoder()'s settings), so what it returns is the same; any
input it does not take whole goes to json.loads, for json's own error."""

import _json

TYPE_CHECKING = False  # typing costs start-up and annotations are never evaluated
if TYPE_CHECKING:
    from typing import Any

_WHITESPACE = " \t\n\r"  # json.decoder.WHITESPACE


class _Settings:
    """What _json.make_scanner reads from json.JSONDecoder() (strict,
    no hooks, int and float, NaN and the infinities as json reads them)."""

    def __init__(self) -> None:
        self.strict = True
        self.object_hook = None
        self.object_pairs_hook = None
        self.parse_float = float
        self.parse_int = int
        inf = float("inf")
        self.parse_constant = {"-Infinity": -inf, "Infinity": inf, "NaN": float("nan")}.__getitem__


_scan = _json.make_scanner(_Settings())


def loads(data: "bytes | str") -> "Any":
    """json.loads(data)."""
    try:
        if isinstance(data, bytes):
            # json.detect_encoding says UTF-8 for a document opening on an
            # ASCII bracket followed by a byte that is not NUL.
            if data[:1] not in (b"{", b"[") or data[1:2] == b"\0":
                raise ValueError
            text = data.decode("utf-8", "surrogatepass")
        else:
            text = data
        start = len(text) - len(text.lstrip(_WHITESPACE))
        value, end = _scan(text, start)
        if end != len(text) and text[end:].strip(_WHITESPACE):
            raise ValueError  # extra data
        return value
    except Exception:  # noqa: BLE001  (json.loads says what is wrong, in its words)
        import json

        return json.loads(data)
