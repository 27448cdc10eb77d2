"""Reading a file that a user, another program or a crash may have made hostile — one place
that every reader of data files, `--runs` files and events files goes through.

What it guards against, so that no caller has to:
- a path that is a folder, a pipe or a device (named as such, never "no such file");
- a UTF-8 byte-order mark (dropped), text that is not UTF-8 (named with its line);
- JSON Lines split only at "\\n": U+2028, U+2029 and U+0085 are legal inside JSON strings and
  `str.splitlines` would cut a valid row in two;
- JSON nested past any sane depth (the parser would recurse until RecursionError), integers
  longer than any count (Python refuses past 4,300 digits) and lone surrogates such as
  "\\ud800" (valid JSON, but no UTF-8 encoder accepts them later);
- files larger than the caller allows.

Lives in the advisor, the bottom layer, so the advisor, the engine and the TUI all share it.
Every problem is a `BadFile` whose message is one line naming the file (and line); callers
re-raise it as their own one-line error.
"""

from __future__ import annotations

import io
import json
import os
import stat
from pathlib import Path

MAX_DEPTH = 64  # no row, event or config nests deeper than a handful of levels
MAX_INT_DIGITS = 30  # far past any count, far below Python's 4,300-digit refusal
DEFAULT_MAX_BYTES = 4 << 30


class BadFile(ValueError):
    """A file that cannot be read as what it should be; the message is one line naming it."""


def check_regular_file(path: Path, what: str = "file") -> os.stat_result:
    """The file's stat; a missing path, a folder, a pipe or a device is a `BadFile` saying which."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise BadFile(f"{path}: no such {what}") from None
    except OSError as exc:
        raise BadFile(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    if stat.S_ISDIR(info.st_mode):
        raise BadFile(f"{path}: is a folder, not a {what}")
    if not stat.S_ISREG(info.st_mode):
        kind = "a named pipe (FIFO)" if stat.S_ISFIFO(info.st_mode) else "a device or socket"
        raise BadFile(f"{path}: is {kind}, not a regular {what}")
    return info


def read_text(path: str | os.PathLike, what: str = "file", max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    """A regular file's UTF-8 text without its byte-order mark."""
    path = Path(path)
    info = check_regular_file(path, what)
    if info.st_size > max_bytes:
        raise BadFile(f"{path}: the {what} is {info.st_size:,} bytes, over the {max_bytes:,}-byte limit")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadFile(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        start = exc.start + (3 if data.startswith(b"\xef\xbb\xbf") else 0)
        line = data[:start].count(b"\n") + 1
        raise BadFile(f"{path}:{line}: not UTF-8 text (byte 0x{data[start]:02x})") from None


def text_lines(text: str) -> list[str]:
    """Lines of a JSON Lines or CSV text: split at "\\n" (and "\\r\\n") only."""
    return [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]


def csv_stream(text: str) -> io.StringIO:
    """A text stream for `csv` that breaks lines only where CSV does ("\\n", "\\r\\n", "\\r")."""
    return io.StringIO(text, newline="")


def _int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise BadFile(f"an integer of {len(digits.lstrip('-'))} digits is larger than any count")
    return int(digits)


def _check_tree(value: object) -> None:
    """Depth and text checks over a parsed value, without recursion."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise BadFile(f"text holds a lone surrogate ({item[exc.start]!a}), which is not valid Unicode") from None
            continue
        if not isinstance(item, (dict, list)):
            continue
        if depth > MAX_DEPTH:
            raise BadFile(f"nested more than {MAX_DEPTH} levels deep")
        children = item.items() if isinstance(item, dict) else item
        for child in children:
            if isinstance(child, tuple):
                stack.extend((part, depth + 1) for part in child)
            else:
                stack.append((child, depth + 1))


def loads(text: str | bytes) -> object:
    """`json.loads` with the guards above. A `BadFile` (without a file name: the caller knows
    the file and line) for a guard; `json.JSONDecodeError` for malformed JSON, as before."""
    try:
        value = json.loads(text, parse_int=_int)
    except RecursionError:
        raise BadFile(f"nested more than {MAX_DEPTH} levels deep") from None
    except ValueError as exc:
        if isinstance(exc, (json.JSONDecodeError, BadFile)):
            raise
        raise BadFile(str(exc)) from None
    _check_tree(value)
    return value
