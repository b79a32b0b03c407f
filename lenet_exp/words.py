"""How lenet_exp words what it reports: an error or a text on one line, cut at a word; a count with its noun."""

from __future__ import annotations

import os


def one_line(error: BaseException | str, limit: int | None = None) -> str:
    """The text (an error's message, else its kind) on one line, a file error as `<file>: <reason>`; past `limit`
    characters it is cut at a word and ends in ` ...`."""
    if isinstance(error, OSError) and error.filename and error.strerror:
        text = f"{os.fsdecode(error.filename)}: {error.strerror}"  # a path given as bytes, shown as text
    else:
        text = " ".join(str(error).split()) or type(error).__name__
    if limit is not None and len(text) > limit:
        text = text[:limit].rsplit(" ", 1)[0] + " ..."
    return text


def plural(n: int, word: str) -> str:
    """`1 epoch`, `3 epochs`."""
    return f"{n} {word}{'' if n == 1 else 's'}"
