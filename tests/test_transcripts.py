"""Transcripts survive kills: torn lines and partial rounds are dropped, nothing duplicated."""

from __future__ import annotations

import json

from societies.transcripts import (
    append_decisions,
    read_complete_rounds,
    read_decisions,
    truncate_to,
)
from tests.test_metrics import pair


def test_complete_rounds_survive_a_torn_line_and_a_partial_round(tmp_path):
    path = tmp_path / "t.jsonl"
    r0 = pair(0, 0, "A", "A") + pair(0, 1, "B", "C", "u", "v")
    r1 = pair(1, 0, "A", "B") + pair(1, 1, "C", "C", "u", "v")
    append_decisions(path, r0)
    append_decisions(path, r1)
    good_size = path.stat().st_size
    assert read_decisions(path) == r0 + r1
    # a kill mid-write of round 2: one whole line and half of the next
    r2 = pair(2, 0, "A", "A")
    with open(path, "a") as handle:
        handle.write(json.dumps(r2[0].to_dict()) + "\n" + json.dumps(r2[1].to_dict())[:40])
    kept, size = read_complete_rounds(path, decisions_per_round=4)
    assert kept == r0 + r1 and size == good_size
    truncate_to(path, size)
    append_decisions(path, pair(2, 0, "A", "A") + pair(2, 1, "B", "B", "u", "v"))
    assert [d.round for d in read_decisions(path)] == [0] * 4 + [1] * 4 + [2] * 4


def test_missing_file_is_empty(tmp_path):
    assert read_complete_rounds(tmp_path / "none.jsonl", 2) == ([], 0)


def test_atomic_directory_appears_whole_or_not_at_all(tmp_path):
    import pytest

    from societies.atomic import atomic_directory

    final = tmp_path / "adapter"
    with pytest.raises(RuntimeError), atomic_directory(final) as tmp:
        (tmp / "half.bin").write_bytes(b"x")
        raise RuntimeError("killed mid-write")
    assert not final.exists() and list(tmp_path.iterdir()) == []
    with atomic_directory(final) as tmp:
        (tmp / "a").write_text("first")
    with atomic_directory(final, replace=False) as tmp:
        (tmp / "a").write_text("second")
    assert (final / "a").read_text() == "first"  # replace=False keeps the existing one
    with atomic_directory(final) as tmp:
        (tmp / "a").write_text("third")
    assert (final / "a").read_text() == "third" and len(list(tmp_path.iterdir())) == 1
