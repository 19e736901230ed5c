"""Wording shared by error messages."""

from __future__ import annotations

from collections.abc import Sequence


def listing(names: Sequence[str], shown: int = 3) -> str:
    """``a, b, c, ... (7 in all)``: a list for a message, its first ``shown`` names and,
    when there are more, how many in all."""
    names = [str(n) for n in names]
    if len(names) <= shown:
        return ", ".join(names)
    return f"{', '.join(names[:shown])}, ... ({len(names)} in all)"
