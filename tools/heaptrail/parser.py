"""heaptrail's argparse parser: bad usage is one line on stderr, and the
terminal's width is asked only when help is printed."""

from __future__ import annotations

import argparse
import os
import sys

TYPE_CHECKING = False  # typing costs start-up and annotations are never evaluated
if TYPE_CHECKING:
    from typing import Any, NoReturn, Optional


def _terminal_width() -> int:
    """shutil.get_terminal_size's answer (COLUMNS, else stdout's terminal,
    else 80), without importing shutil (and with it bz2, lzma)."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns if sys.__stdout__ else 0
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class _Formatter(argparse.HelpFormatter):
    """argparse makes a formatter for every add_argument (to check the
    metavar); each would import shutil and ask the terminal for its size.
    The width is asked once, when the help is really printed."""

    width: Optional[int] = None

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: Optional[int] = None) -> None:
        super().__init__(prog, indent_increment, max_help_position,
                         width if width is not None else _Formatter.width or 80)


class Parser(argparse.ArgumentParser):
    """Bad usage is one line naming what is wrong, and where to look; the
    full usage text stays behind --help. Subcommand parsers inherit this."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def format_help(self) -> str:
        _Formatter.width = _terminal_width() - 2  # as argparse does: 2 columns of margin
        return super().format_help()

    def format_usage(self) -> str:
        _Formatter.width = _terminal_width() - 2
        return super().format_usage()

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")
