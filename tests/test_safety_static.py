"""Safety claims checked without running anything: the source scan and YAML tags.

- **No remote code, no unsafe YAML, no pickle, eval or exec** in the source of
  ``societies/``, ``trainer/`` and ``scripts/`` (an AST walk that prints file:line).
- **YAML tags never run**: ``!!python/object/apply:os.system`` in a config file or an
  override is refused with exit code 2 and the command it names never runs.

The claims that need a run (no pickle for weights, no credential written) are in
tests/test_safety.py.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import QUICKSTART

REPO = Path(__file__).parents[1]
SCANNED_SOURCE = ("societies", "trainer", "scripts")
# ----- the source: no remote code, unsafe YAML, pickle, eval or exec ---------------------
UNSAFE_YAML = {"load", "load_all", "unsafe_load", "unsafe_load_all", "full_load", "full_load_all"}
UNSAFE_YAML |= {"Loader", "UnsafeLoader", "FullLoader", "UnsafeConstructor", "FullConstructor"}
# Modules whose loading runs code: pickle and its wrappers, shelve (pickle), marshal.
PICKLING_MODULES = {"pickle", "_pickle", "cPickle", "dill", "cloudpickle", "joblib", "shelve"}
PICKLING_MODULES |= {"marshal"}
UNSAFE_ATTRIBUTES = {"torch.load", "torch.serialization.load"} | {f"yaml.{n}" for n in UNSAFE_YAML}
# Keyword arguments allowed only with their safe literal value.
SAFE_KEYWORDS = {"trust_remote_code": False, "weights_only": True, "allow_pickle": False}


def _dotted(node: ast.AST) -> str:
    """``a.b.c`` for a Name/Attribute chain, else ''."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def unsafe_constructs(source: str, filename: str) -> list[str]:
    """Each unsafe construct in ``source`` as ``file:line: what``."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        line = getattr(node, "lineno", 0)

        def offence(what: str, line: int = line) -> None:
            found.append(f"{filename}:{line}: {what}")

        if isinstance(node, ast.keyword) and node.arg in SAFE_KEYWORDS:
            safe = SAFE_KEYWORDS[node.arg]
            if not (isinstance(node.value, ast.Constant) and node.value.value is safe):
                offence(f"{node.arg}={ast.unparse(node.value)}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if "trust_remote_code" in node.value:
                offence("the string 'trust_remote_code'")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in PICKLING_MODULES:
                    offence(f"import {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            names = {a.name for a in node.names}
            if module.split(".")[0] in PICKLING_MODULES:
                offence(f"from {module} import {', '.join(sorted(names))}")
            elif module == "yaml" and names & UNSAFE_YAML:
                offence(f"from yaml import {', '.join(sorted(names & UNSAFE_YAML))}")
            elif module in ("torch", "torch.serialization") and "load" in names:
                offence(f"from {module} import load")
        elif isinstance(node, ast.Attribute) and _dotted(node) in UNSAFE_ATTRIBUTES:
            offence(_dotted(node))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("eval", "exec")
        ):
            offence(f"{node.func.id}(...)")
    return found


def test_source_has_no_remote_code_unsafe_yaml_pickle_or_eval():
    files = sorted(p for d in SCANNED_SOURCE for p in (REPO / d).rglob("*.py"))
    assert len(files) > 30
    offences = [
        o for p in files for o in unsafe_constructs(p.read_text(), str(p.relative_to(REPO)))
    ]
    print("\n".join(offences))
    assert not offences, "unsafe constructs:\n" + "\n".join(offences)


def test_source_scan_finds_each_unsafe_construct():
    bad = """\
import pickle
import dill as d
from yaml import load, FullLoader
from torch import load as tl
m = AutoModel.from_pretrained(p, trust_remote_code=True)
m = AutoModel.from_pretrained(p, trust_remote_code=flag)
kwargs = {"trust_remote_code": True}
yaml.load(text, Loader=yaml.Loader)
yaml.unsafe_load(text)
yaml.full_load(text)
state = torch.load(path, weights_only=False)
arr = numpy.load(path, allow_pickle=True)
eval("1 + 1")
exec("x = 1")
"""
    found = unsafe_constructs(bad, "bad.py")
    lines = sorted({int(o.split(":")[1]) for o in found})
    assert lines == list(range(1, 15)), "\n".join(found)
    assert "bad.py:8: yaml.Loader" in found and "bad.py:11: weights_only=False" in found
    clean = """\
import yaml
from yaml import safe_load
m = AutoModel.from_pretrained(p, trust_remote_code=False, use_safetensors=True)
model.eval()
data = yaml.safe_load(text)
state = torch_load_is_not_torch_load(path, weights_only=True)
"""
    assert unsafe_constructs(clean, "clean.py") == []


# ----- YAML tags never run -----------------------------------------------------------------
def _tag(pwned: Path) -> str:
    return f'!!python/object/apply:os.system ["touch {pwned}"]'


def _tagged_run_argv(where: str, tmp_path: Path, pwned: Path) -> list[str]:
    """``folkways run`` with the tag in a config file or in an override."""
    if where == "config file":
        config = tmp_path / "evil.yaml"
        config.write_text(f"run: {_tag(pwned)}\n")
        return ["run", str(config)]
    return ["run", str(QUICKSTART), f"run.name={_tag(pwned)}"]


@pytest.mark.parametrize("where", ["config file", "override"])
def test_python_yaml_tags_are_refused_and_never_run(where, tmp_path, monkeypatch, capsys):
    from trainer.cli import main

    monkeypatch.chdir(tmp_path)  # where a wrongly accepted config would put runs/
    pwned = tmp_path / "pwned"
    assert main(_tagged_run_argv(where, tmp_path, pwned) + ["--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("folkways: error: ") and "python/object/apply:os.system" in err
    assert not pwned.exists()
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("where", ["config file", "override"])
def test_yaml_errors_are_one_line(where, tmp_path, capsys):
    from trainer.cli import main

    assert main(_tagged_run_argv(where, tmp_path, tmp_path / "pwned")) == 2
    assert capsys.readouterr().err.count("\n") == 1
