"""The allocator a ``folkways`` process runs under (trainer/malloc.py).

The decision is tested as a pure function; the re-execution, the CLI's exit codes and
tcmalloc's memory release run in real subprocesses, where the machine has tcmalloc
(Debian: ``apt install libtcmalloc-minimal4``; skipped elsewhere, saying so).
"""

from __future__ import annotations

import ctypes.util
import os
import subprocess
import sys
import textwrap

import pytest

from trainer.malloc import (
    ENV,
    LARGE_ALLOC_ENV,
    TRIED_ENV,
    MallocUnavailable,
    active_malloc,
    find_tcmalloc,
    malloc_mode,
    preload_environment,
)

LIB = "libtcmalloc_minimal.so.4"
TCMALLOC = find_tcmalloc()
needs_tcmalloc = pytest.mark.skipif(
    TCMALLOC is None, reason="no tcmalloc on this machine (apt install libtcmalloc-minimal4)"
)


def test_auto_preloads_the_library_found_before_any_earlier_preload():
    env = preload_environment({"LD_PRELOAD": "libother.so", "HOME": "/h"}, LIB, False)
    assert env == {
        "LD_PRELOAD": f"{LIB} libother.so",
        "HOME": "/h",
        TRIED_ENV: LIB,
        LARGE_ALLOC_ENV: str(2**40),  # no report line per allocation above 1 GiB
    }
    assert preload_environment({}, LIB, False)["LD_PRELOAD"] == LIB
    assert preload_environment({LARGE_ALLOC_ENV: "5"}, LIB, False)[LARGE_ALLOC_ENV] == "5"


@pytest.mark.parametrize(
    ("environ", "library", "loaded"),
    [
        ({}, None, False),  # auto, nothing installed: glibc's malloc
        ({ENV: "system"}, LIB, False),
        ({ENV: "auto"}, LIB, True),  # already running under it
        ({TRIED_ENV: LIB}, LIB, False),  # re-executed once, the loader did not take it
    ],
)
def test_no_reexecution(environ, library, loaded):
    assert preload_environment(environ, library, loaded) is None


def test_an_allocator_the_user_preloaded_is_kept_unless_tcmalloc_is_asked_for():
    jemalloc = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
    assert preload_environment({"LD_PRELOAD": jemalloc}, LIB, False) is None
    asked = preload_environment({"LD_PRELOAD": jemalloc, ENV: "tcmalloc"}, LIB, False)
    assert asked["LD_PRELOAD"] == f"{LIB} {jemalloc}"


def test_the_active_allocator_is_read_from_the_memory_map(tmp_path):
    maps = tmp_path / "maps"
    line = "7f00-7f10 r-xp 00000000 08:01 42 /usr/lib/x86_64-linux-gnu/{}\n"
    maps.write_text(line.format("libc.so.6") + line.format("libjemalloc.so.2"))
    assert active_malloc(maps) == "jemalloc"
    maps.write_text(line.format("libc.so.6"))
    assert active_malloc(maps) == "system"
    assert active_malloc(tmp_path / "absent") == "system"


def test_bad_modes_are_named():
    with pytest.raises(MallocUnavailable, match="FOLKWAYS_MALLOC=tcmalloc.*libtcmalloc-minimal4"):
        preload_environment({ENV: "tcmalloc"}, None, False)
    with pytest.raises(ValueError, match=r"FOLKWAYS_MALLOC='jemalloc'; accepted: auto, system"):
        malloc_mode({ENV: "jemalloc"})
    assert malloc_mode({ENV: " TCMalloc "}) == "tcmalloc"
    assert malloc_mode({}) == "auto"


def test_find_tcmalloc_prefers_the_minimal_build():
    names = {"tcmalloc_minimal": LIB, "tcmalloc": "libtcmalloc.so.4"}
    assert find_tcmalloc(names.get) == LIB
    assert find_tcmalloc({"tcmalloc": "libtcmalloc.so.4"}.get) == "libtcmalloc.so.4"
    assert find_tcmalloc({}.get) is None


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in (ENV, TRIED_ENV, "LD_PRELOAD")}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env={**environ, **env},
        timeout=120,
    )


REEXEC = """
    from trainer.malloc import loaded_tcmalloc, reexec_under_tcmalloc
    print("start", loaded_tcmalloc(), flush=True)
    reexec_under_tcmalloc()
    print("carry on", loaded_tcmalloc())
"""


@needs_tcmalloc
def test_reexecution_runs_the_same_command_under_tcmalloc():
    out = _python(REEXEC)
    assert out.returncode == 0, out.stderr
    # The first process printed, then became the second, which found tcmalloc loaded.
    assert out.stdout.split("\n")[:3] == ["start False", "start True", "carry on True"]
    off = _python(REEXEC, **{ENV: "system"})
    assert off.stdout.split("\n")[:2] == ["start False", "carry on False"]


@needs_tcmalloc
def test_the_cli_keeps_its_exit_code_and_prints_one_error_under_reexecution(tmp_path):
    missing = tmp_path / "missing.yaml"
    code = f"import sys; sys.argv = ['folkways', 'run', {str(missing)!r}]\n" + (
        "from trainer.cli import main; sys.exit(main())"
    )
    out = _python(code)
    assert out.returncode == 2
    assert out.stderr.count("folkways: error:") == 1 and "does not exist" in out.stderr


def test_an_unknown_mode_is_a_cli_error(tmp_path):
    code = f"import sys; sys.argv = ['folkways', 'run', {str(tmp_path / 'x.yaml')!r}]\n" + (
        "from trainer.cli import main; sys.exit(main())"
    )
    out = _python(code, **{ENV: "jemalloc"})
    assert out.returncode == 2
    assert "FOLKWAYS_MALLOC='jemalloc'; accepted: auto, system, tcmalloc" in out.stderr


JEMALLOC = ctypes.util.find_library("jemalloc")


@pytest.mark.skipif(JEMALLOC is None, reason="no jemalloc here (apt install libjemalloc2)")
def test_a_preloaded_jemalloc_is_kept_and_recorded():
    code = REEXEC + "    from trainer.malloc import active_malloc; print(active_malloc())\n"
    out = _python(code, LD_PRELOAD=JEMALLOC)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:3] == ["start False", "carry on False", "jemalloc"]


RELEASE = """
    import re
    from pathlib import Path
    from trainer.distill_memory import release_free_memory

    def rss():
        text = Path("/proc/self/status").read_text()
        return int(re.search(r"VmRSS:\\s+(\\d+)", text).group(1)) // 1024

    before = rss()
    blocks = [bytearray(b"x") * (32 << 20) for _ in range(12)]  # 384 MiB, written
    held = rss()
    del blocks
    freed = rss()
    release_free_memory()
    print(before, held, freed, rss())
"""


@needs_tcmalloc
def test_release_free_memory_returns_what_tcmalloc_keeps():
    out = _python(RELEASE, LD_PRELOAD=TCMALLOC)
    assert out.returncode == 0, out.stderr
    before, held, freed, released = map(int, out.stdout.split())
    assert held - before > 350  # MiB
    # tcmalloc keeps the freed blocks for reuse: the memory budget would count them as
    # spent (trainer/distill_memory.py) unless they are released.
    assert freed - before > 300
    assert released - before < 50
