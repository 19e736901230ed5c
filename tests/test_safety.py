"""Safety: weights load from safetensors only, no remote code, YAML loaded safely, no credential written.

Four claims, each checked so that it could fail (two of them in another file):

- **No pickle for weights.** Tiny runs (both distillation backends, two generations so
  that generation 1 loads generation 0's adapters), ``probe``, ``release`` and ``report``
  run in a fresh process in which ``torch.load``, ``torch.serialization.load``,
  ``pickle.load``, ``pickle.loads`` and ``pickle.Unpickler`` raise; no file in the run,
  the releases or the model cache is a pickle; a model directory (or adapter folder)
  holding only pickled weights is refused before anything is loaded.
- **No remote code, no unsafe YAML, no pickle, eval or exec** in the source, and
  **YAML tags never run**: tests/test_safety_static.py.
- **No credential is written**: with ``WANDB_API_KEY``, ``HF_TOKEN`` and
  ``HUGGING_FACE_HUB_TOKEN`` set to sentinels, no byte of any file the session wrote
  (run directories with the W&B offline run, releases, W&B's and Hugging Face's home
  directories, the temp directory, the working directory) nor of its output holds one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import QUICKSTART, tiny_overrides

REPO = Path(__file__).parents[1]
BACKENDS = ("trl", "batched")

# Distinctive values no code would produce by chance. The W&B key has the 40 characters
# of a real one, so wandb treats it as a key rather than rejecting it.
SECRETS = {
    "WANDB_API_KEY": "folkwayssentinelwandbkey0123456789abcdef",
    "HF_TOKEN": "hf_FolkwaysSentinelHfToken0123456789abcd",
    "HUGGING_FACE_HUB_TOKEN": "hf_FolkwaysSentinelHubToken987654321zyx",
}
# Files that are (or usually are) pickles: torch checkpoints, Trainer's training_args.bin,
# optimizer/RNG states, plain pickles.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


# ----- the guarded session (runs in a child process) -------------------------------------
class UnpicklingForbidden(RuntimeError):
    """Raised by the patched loaders: something tried to unpickle during a run."""


def _forbid_unpickling(calls: list[str]) -> None:
    """Make every pickle entry point record its caller and raise.

    Module attributes are patched, so a caller that bound ``load`` before the patch
    would slip past: the patch is installed first thing in a fresh process, before
    torch's users (transformers, PEFT, TRL, datasets) are imported, and the file scan in
    :func:`test_no_pickle_file_in_runs_releases_or_model_cache` backs it up. Nothing
    needed narrowing: with all five patched the whole session passes (datasets hashes
    with dill *dumps*, never loads; ``dataset_num_proc=None`` keeps multiprocessing,
    which unpickles, out; wandb talks protobuf to its own service process). Calls are
    also recorded, in case a library catches the exception and falls back silently.
    """
    import pickle

    import torch
    import torch.serialization

    def refusing(name: str):
        def refuse(*args, **kwargs):
            stack = "".join(traceback.format_stack(limit=10)[:-1])
            calls.append(f"{name}({args[:1]!r}) called from\n{stack}")
            raise UnpicklingForbidden(f"{name} called on {args[:1]!r}")

        return refuse

    class RefusingUnpickler(pickle.Unpickler):
        def __init__(self, *args, **kwargs):
            refusing("pickle.Unpickler")(*args, **kwargs)

    torch.load = refusing("torch.load")
    torch.serialization.load = refusing("torch.serialization.load")
    pickle.load = refusing("pickle.load")
    pickle.loads = refusing("pickle.loads")
    pickle.Unpickler = RefusingUnpickler


def _session_overrides(root: Path, backend: str) -> list[str]:
    # 2 agents, 2 names: both generations have successes to distil with either backend,
    # so generation 1 starts from adapters trained (not merely copied) in generation 0.
    return tiny_overrides(
        root / "runs",
        **{
            "run.name": backend,
            "distill.backend": backend,
            "tracking.wandb": "offline",
            "tracking.project": "folkways-test",
            "population.size": 2,
            "game.pairs_per_round": 1,
            "game.num_names": 2,
        },
    )


def _guarded_session(root: str) -> int:
    """Child process: run, probe, release and report each backend with unpickling forbidden."""
    root = Path(root)
    calls: list[str] = []
    _forbid_unpickling(calls)
    import trainer
    from trainer.cli import main

    exit_codes = {}
    for backend in BACKENDS:
        run_dir = str(root / "runs" / backend)
        commands = {
            "run": ["run", str(QUICKSTART), *_session_overrides(root, backend), "--no-progress"],
            "probe": ["probe", run_dir],
            "release": ["release", run_dir, "--agent", "agent_01"]
            + ["--out", str(root / "releases" / backend)],
            "report": ["report", run_dir],
        }
        for name, argv in commands.items():
            exit_codes[f"{name} {backend}"] = main(argv)
    record = {"exit_codes": exit_codes, "unpickle_calls": calls, "trainer": trainer.__file__}
    (root / "session.json").write_text(json.dumps(record, indent=2))
    return 0


@dataclass(frozen=True)
class GuardedSession:
    root: Path
    output: bytes  # the child's stdout + stderr
    exit_codes: dict[str, int]
    unpickle_calls: list[str]

    def run_dir(self, backend: str) -> Path:
        return self.root / "runs" / backend

    def release_dir(self, backend: str) -> Path:
        return self.root / "releases" / backend


@pytest.fixture(scope="module")
def guarded(tiny_model_path, tmp_path_factory) -> GuardedSession:
    """One session shared by the pickle and credential checks.

    A child process, because wandb reads its settings (the API key among them) once per
    process and the patched loaders must be in place before torch's users are imported;
    its output is captured whole, including what libraries print from their own
    handlers. HOME, TMPDIR and the working directory point into ``root`` so that
    everything wandb, Hugging Face or a temp file leaves behind is scanned too.
    """
    root = tmp_path_factory.mktemp("guarded")
    for sub in ("home", "tmp", "cwd"):
        (root / sub).mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("WANDB_", "HF_", "HUGGING_FACE_", "XDG_"))
    }
    env.update(SECRETS)
    env.update(
        WANDB_MODE="offline",  # belt and braces: tracking.wandb=offline is passed too
        HOME=str(root / "home"),
        TMPDIR=str(root / "tmp"),
        FOLKWAYS_CACHE=str(Path(tiny_model_path).parent),  # the prepared model cache
        # matplotlib's font cache is ours to reuse (and takes seconds to rebuild)
        MPLCONFIGDIR=os.environ.get("MPLCONFIGDIR", str(Path.home() / ".config/matplotlib")),
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
        TOKENIZERS_PARALLELISM="false",
    )
    code = (
        "import sys; from tests.test_safety import _guarded_session as s; sys.exit(s(sys.argv[1]))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(root)],
        cwd=root / "cwd",
        env=env,
        capture_output=True,
        timeout=900,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output.decode(errors="replace")[-4000:]
    record = json.loads((root / "session.json").read_text())
    assert Path(record["trainer"]).is_relative_to(REPO), record["trainer"]  # this checkout's code
    return GuardedSession(root, output, record["exit_codes"], record["unpickle_calls"])


# ----- 1. no pickle for weights ------------------------------------------------------------
def test_runs_probe_release_report_load_nothing_with_pickle(guarded):
    assert guarded.exit_codes == {
        f"{cmd} {b}": 0 for b in BACKENDS for cmd in ("run", "probe", "release", "report")
    }
    assert guarded.unpickle_calls == [], "\n\n".join(guarded.unpickle_calls)
    for backend in BACKENDS:
        run_dir = guarded.run_dir(backend)
        for generation in (0, 1):
            trained = [
                json.loads(p.read_text())
                for p in sorted(
                    run_dir.glob(f"generation_{generation:03d}/adapters/*/training.json")
                )
            ]
            assert len(trained) == 2
            # Both generations trained: generation 1 loaded generation 0's trained adapters.
            assert {t["operation"] for t in trained} == {"sft"}, (backend, generation, trained)
        assert (guarded.release_dir(backend) / "adapter_model.safetensors").is_file()
        assert (run_dir / "report.png").is_file()


def _files(*roots: Path) -> list[Path]:
    return [p for root in roots for p in sorted(root.rglob("*")) if p.is_file()]


def _looks_pickled(head: bytes) -> bool:
    # Pickle protocols 2-5 start with PROTO (0x80) and the protocol number; torch.save
    # writes a zip archive (whose data.pkl holds the pickle).
    return (len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5) or head.startswith(
        b"PK\x03\x04"
    )


def test_no_pickle_file_in_runs_releases_or_model_cache(guarded, tiny_model_path):
    from safetensors import safe_open

    session = _files(guarded.root / "runs", guarded.root / "releases")
    model_cache = _files(Path(tiny_model_path).parent)  # the tiny and the embedded model
    offences = [
        str(p)
        for p in session + model_cache
        if p.suffix in PICKLE_SUFFIXES
        or p.name == "training_args.bin"
        # (a safetensors header length may start like a pickle; safe_open checks those)
        or (p.suffix != ".safetensors" and _looks_pickled(p.read_bytes()[:4]))
    ]
    assert not offences, "pickle files:\n" + "\n".join(offences)
    weights = [p for p in session + model_cache if p.suffix == ".safetensors"]
    # per backend: 2 initial + 2 x 2 generations adapters + 1 release; the tiny model
    assert len([p for p in session if p.suffix == ".safetensors"]) == 2 * (2 + 4 + 1)
    assert Path(tiny_model_path, "model.safetensors") in weights
    for path in weights:
        with safe_open(str(path), framework="pt") as f:  # a real safetensors file
            assert list(f.keys())


def test_adapter_folders_hold_only_safetensors_and_json(guarded):
    folders = [
        folder
        for backend in BACKENDS
        for folder in (
            *guarded.run_dir(backend).glob("initial_adapters/*"),
            *guarded.run_dir(backend).glob("generation_*/adapters/*"),
        )
    ]
    assert len(folders) == 2 * 3 * 2
    for folder in folders:
        names = {p.name for p in folder.iterdir()}
        assert "adapter_model.safetensors" in names and "adapter_config.json" in names
        # README.md: the model card PEFT's save_pretrained writes (TRL backend); text.
        others = {n for n in names if not n.endswith((".safetensors", ".json"))}
        assert others <= {"README.md"}, (folder, others)
    for backend in BACKENDS:
        release = guarded.release_dir(backend)
        assert {p.name for p in release.iterdir()} == {
            "adapter_model.safetensors",
            "adapter_config.json",
            "training.json",
            "lineage.json",
            "README.md",
        }


def _pickled_model_dir(tiny_model_path: str, out: Path) -> Path:
    """The tiny model as ``config.json`` + tokenizer + ``pytorch_model.bin`` (a pickle)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    out.mkdir()
    model.config.save_pretrained(out)
    for f in Path(tiny_model_path).iterdir():
        if f.name.startswith(("tokenizer", "chat_template")):
            shutil.copy2(f, out / f.name)
    torch.save(model.state_dict(), out / "pytorch_model.bin")
    return out


def _refuse_torch_load(monkeypatch) -> None:
    import torch

    def refuse(*args, **kwargs):
        raise AssertionError(f"torch.load called on {args[:1]!r}: pickled weights were loaded")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(torch.serialization, "load", refuse)


def test_model_directory_with_only_pickled_weights_is_refused(
    tiny_model_path, tmp_path, monkeypatch, capsys
):
    from societies.population import LoraSpec, PopulationModel
    from trainer.cli import main

    model_dir = _pickled_model_dir(tiny_model_path, tmp_path / "pickled_model")
    _refuse_torch_load(monkeypatch)
    capsys.readouterr()  # drop the loading bar of building the directory
    code = main(
        [
            "run",
            str(QUICKSTART),
            *tiny_overrides(tmp_path / "runs", **{"model.name_or_path": model_dir}),
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("folkways: error: model.name_or_path=")
    assert "holds no safetensors weights (found pytorch_model.bin)" in err
    assert not list((tmp_path / "runs").rglob("*.safetensors"))
    # The library refuses too (use_safetensors=True), without reaching torch.load.
    with pytest.raises(OSError, match="no file named model.safetensors"):
        PopulationModel(str(model_dir), ["a"], LoraSpec(), engine="peft")


def test_adapter_folder_with_only_pickled_weights_is_refused(
    tiny_model_path, tmp_path, monkeypatch
):
    import torch
    from safetensors.torch import load_file

    from societies.population import LoraSpec, PopulationModel
    from trainer.distill_sft import SftSettings, distill_adapter

    folder = PopulationModel(tiny_model_path, ["a"], LoraSpec(), engine="peft").save_adapter(
        "a", tmp_path / "a"
    )
    weights = folder / "adapter_model.safetensors"
    torch.save(load_file(str(weights)), folder / "adapter_model.bin")  # what PEFT falls back to
    weights.unlink()
    _refuse_torch_load(monkeypatch)
    for engine in ("peft", "multi_lora"):
        with pytest.raises(FileNotFoundError, match="adapter_model.safetensors"):
            PopulationModel(
                tiny_model_path, ["a"], LoraSpec(), adapter_dirs={"a": folder}, engine=engine
            )
    example = {
        "prompt": [{"role": "user", "content": "Pick A or B."}],
        "completion": [{"role": "assistant", "content": "A"}],
    }
    with pytest.raises(FileNotFoundError, match="only from safetensors"):
        distill_adapter(
            agent="a",
            model_path=tiny_model_path,
            start_adapter=folder,
            examples=[example],
            out_dir=tmp_path / "out",
            settings=SftSettings(),
            seed=0,
        )
    assert not (tmp_path / "out").exists()


# ----- 3. no credential written anywhere ---------------------------------------------------
def test_no_credential_in_any_file_or_output(guarded):
    files = _files(guarded.root)
    wandb_logs = [p for p in files if p.suffix == ".wandb"]
    # one offline W&B run per step (rollout, distill, probe), generation (2) and backend
    # was scanned
    assert len(wandb_logs) == 3 * 2 * len(BACKENDS)
    # Strings are stored literally in the binary W&B log, so a byte search sees them;
    # the probe step's runs hold the adapter artifacts.
    assert sum(b"lora-adapter" in p.read_bytes() for p in wandb_logs) == 2 * len(BACKENDS)
    assert list((guarded.root / "home").rglob("core-debug-*.log"))  # wandb's own logs too
    assert b"run directory:" in guarded.output  # the captured output is the real one
    # Plain bytes only: JSON, YAML, the W&B protobuf log and text logs all store strings
    # as they are; an encoded (base64/hex) copy would need code that encodes on purpose.
    hits = [
        f"{name} in {path}"
        for path in files
        for name, secret in SECRETS.items()
        if secret.encode() in path.read_bytes()
    ]
    hits += [f"{name} in the output" for name, s in SECRETS.items() if s.encode() in guarded.output]
    assert not hits, "\n".join(hits)
    for backend in BACKENDS:
        config = (guarded.run_dir(backend) / "config.yaml").read_text()
        assert not any(secret in config for secret in SECRETS.values())
        assert "token" not in config.lower() and "api_key" not in config.lower()


def test_auto_wandb_mode_follows_wandb_mode_even_with_a_key(monkeypatch):
    from trainer.wandb_settings import resolve_mode

    monkeypatch.setenv("WANDB_API_KEY", SECRETS["WANDB_API_KEY"])
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert resolve_mode("auto") == "offline"  # was "online": the key won over WANDB_MODE
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_mode("auto") == "disabled"
    assert resolve_mode("offline") == "offline"
    monkeypatch.delenv("WANDB_MODE")
    assert resolve_mode("auto") == "online"  # documented: a key means online under auto
