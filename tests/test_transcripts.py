"""Transcripts survive kills: torn lines and partial rounds are dropped, nothing duplicated;
any other damage is an error naming file:line."""

from __future__ import annotations

import json

import pytest

from societies.transcripts import (
    TranscriptError,
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


# ----- transcripts: what a kill leaves is cut, other damage is an error ----------------


def _three_rounds(path):
    for r in range(3):
        append_decisions(path, pair(r, 0, "A", "A") + pair(r, 1, "B", "C", "u", "v"))
    return path.read_bytes().splitlines(keepends=True)


@pytest.mark.parametrize(
    ("damage", "line", "fragments"),
    [
        ("not-json", 6, ["not JSON", "6 complete line(s) follow it", "delete line 6"]),
        ("older-schema", 1, ["schema_version=0", "reads schema_version 1"]),
        ("missing-field", 9, ["lacks required fields ['action']"]),
        ("line-deleted", 4, ["round 1 starts while round 0 has 3 of its 4", "delete line 1"]),
        ("round-repeated", 5, ["round 0 where round 1 is next", "delete line 5"]),
    ],
    ids=["not-json", "older-schema", "missing-field", "line-deleted", "round-repeated"],
)
def test_transcript_damage_mid_file_is_an_error_not_a_cut(tmp_path, damage, line, fragments):
    """A kill tears at most the last line; damage with complete lines after it is an error
    naming file:line (cutting there would silently drop every later round)."""
    path = tmp_path / "transcripts.jsonl"
    lines = _three_rounds(path)
    record = json.loads(lines[line - 1])
    if damage == "not-json":
        lines[line - 1] = b'{"agent": "x", "act\n'
    elif damage == "older-schema":
        lines[line - 1] = json.dumps({**record, "schema_version": 0}).encode() + b"\n"
    elif damage == "missing-field":
        del record["action"]
        lines[line - 1] = json.dumps(record).encode() + b"\n"
    elif damage == "line-deleted":
        del lines[3]  # round 0 keeps 3 of its 4 decisions; line 4 is now round 1's first
    elif damage == "round-repeated":
        lines[4:8] = lines[0:4]
    path.write_bytes(b"".join(lines))
    before = path.read_bytes()
    with pytest.raises(TranscriptError) as err:
        read_complete_rounds(path, decisions_per_round=4)
    message = str(err.value)
    assert message.startswith(f"{path}:{line}: ") and "\n" not in message
    for fragment in fragments:
        assert fragment in message
    assert path.read_bytes() == before
    if damage not in ("line-deleted", "round-repeated"):  # read_decisions reads lines only
        with pytest.raises(TranscriptError, match=f"^{path}:"):
            read_decisions(path)


@pytest.mark.parametrize(
    "tail",
    [b'{"agent": "x", "act', b'{"agent": "x", "act\n', b"\x00\x00\x00", b"\xff\xfe\n"],
    ids=["torn", "torn-with-newline", "zeros", "not-utf8"],
)
def test_an_unreadable_last_line_is_a_torn_tail_and_is_cut(tmp_path, tail):
    path = tmp_path / "transcripts.jsonl"
    lines = _three_rounds(path)
    path.write_bytes(b"".join(lines[:10]) + tail)  # round 2 partial, then a torn line
    kept, size = read_complete_rounds(path, decisions_per_round=4)
    assert [d.round for d in kept] == [0] * 4 + [1] * 4
    assert size == len(b"".join(lines[:8]))


def test_a_whole_last_line_without_its_newline_is_cut_with_its_round(tmp_path):
    path = tmp_path / "transcripts.jsonl"
    lines = _three_rounds(path)
    path.write_bytes(b"".join(lines)[:-1])  # the kill came just before the final newline
    kept, size = read_complete_rounds(path, decisions_per_round=4)
    assert len(kept) == 8 and size == len(b"".join(lines[:8]))
