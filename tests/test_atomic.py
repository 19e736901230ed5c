"""societies.atomic: whole-or-nothing writes keep the modes a plain write would give."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from societies import atomic
from societies.atomic import atomic_directory, atomic_write_json, atomic_write_text


@pytest.fixture
def umask():
    """Set the process umask for one test; the previous one is restored after."""
    previous = os.umask(0o022)
    os.umask(previous)
    yield os.umask
    os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(
    ("mask", "file_mode", "dir_mode"),
    [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700), (0o002, 0o664, 0o775)],
)
def test_final_modes_follow_the_umask(umask, tmp_path, mask, file_mode, dir_mode):
    umask(mask)
    text, data = tmp_path / "summary.txt", tmp_path / "summary.json"
    atomic_write_text(text, "x\n")
    atomic_write_json(data, {"value": 1})
    with atomic_directory(tmp_path / "adapter") as tmp:
        (tmp / "adapter_config.json").write_text("{}")
    assert (_mode(text), _mode(data)) == (file_mode, file_mode)
    assert _mode(tmp_path / "adapter") == dir_mode
    assert _mode(tmp_path / "adapter" / "adapter_config.json") == file_mode
    # and a plain write under the same umask agrees
    (tmp_path / "plain").write_text("x")
    (tmp_path / "plain_dir").mkdir()
    assert (_mode(tmp_path / "plain"), _mode(tmp_path / "plain_dir")) == (file_mode, dir_mode)


def test_a_replaced_file_takes_the_current_umask(umask, tmp_path):
    path = tmp_path / "lineage.json"
    umask(0o077)
    atomic_write_text(path, "old")
    umask(0o022)
    atomic_write_text(path, "new")
    assert path.read_text() == "new" and _mode(path) == 0o644


def test_the_umask_is_read_without_changing_it(umask, monkeypatch):
    umask(0o027)
    assert atomic.process_umask() == 0o027
    assert os.umask(0o027) == 0o027  # still set

    # without /proc (e.g. macOS): set to 0o022 and back, once, then remembered
    def no_proc(*args, **kwargs):
        raise FileNotFoundError("/proc/self/status")

    monkeypatch.setattr(atomic, "open", no_proc, raising=False)
    atomic._umask_read_once.cache_clear()
    try:
        assert atomic.process_umask() == 0o027
        assert os.umask(0o027) == 0o027
    finally:
        atomic._umask_read_once.cache_clear()
