"""``folkways release``: a PEFT folder that loads without folkways, with lineage and prior,
the prior shift on a full-precision base, and ``--push`` that fails cleanly offline. What
the release says about the embedded base's weights: tests/test_base_weights.py."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from societies.probes import prior_probe
from tests.float32 import PROB_ATOL_OTHER_BATCH, assert_close
from trainer.generation_loop import Experiment
from trainer.release import (
    RELEASE_FILES,
    PushError,
    push_release,
    release_adapter,
)
from trainer.run_dir import RunLayout


def sha256_of(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_release_is_a_loadable_peft_folder_with_card(reference, tmp_path, tiny_model_path):
    layout = RunLayout(reference.run_dir)
    out = tmp_path / "agent_01"
    release = release_adapter(reference.run_dir, "agent_01", out)
    assert release.generation == 1 and release.base_model == "tiny-random"
    assert (out / "adapter_model.safetensors").read_bytes() == (
        layout.adapter(1, "agent_01") / "adapter_model.safetensors"
    ).read_bytes()
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "tiny-random"  # not the local cache path
    assert [(e.generation, e.operation) for e in release.lineage][0] == (-1, "init")
    assert [e.generation for e in release.lineage] == [-1, 0, 1]
    card = (out / "README.md").read_text()
    assert card.startswith("---\nbase_model: tiny-random\nlibrary_name: peft")
    assert "`generation_000/adapters/agent_01`" in card and "`initial_adapters/agent_01`" in card

    # what it was trained on: the tiny model's own file, hashed
    weights = Path(tiny_model_path) / "model.safetensors"
    block = config["folkways"]
    assert (block["agent"], block["generation"], block["run"]) == ("agent_01", 1, "t")
    assert block["base_weights"]["kind"] == "tiny-random"
    assert block["base_weights"]["path"] == tiny_model_path
    assert block["base_weights"]["weights"] == [
        {"name": "model.safetensors", "bytes": weights.stat().st_size, "sha256": sha256_of(weights)}
    ]
    assert block["full_precision_prior_shift"]["measured"] is False
    # where its generations ran: this machine, both generations, the card's table too
    with open("/proc/cpuinfo") as f:
        cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    [environment] = block["environments"]
    assert environment["work"] == ["run generation 0", "run generation 1"]
    assert (environment["cpu"], environment["cpus"]) == (cpu, os.cpu_count())
    assert "## Ran on" in card and f"\n| 2 | {cpu} | {os.cpu_count()} |" in card
    assert (
        f"`{sha256_of(weights)}`" in card and "## Base weights this adapter was trained on" in card
    )
    assert "Prior on the full-precision base" not in card  # not a quantised stand-in

    # plain PEFT loads it (warning, as PEFT 0.21 does, that it ignores the folkways key),
    # and it has exactly the prior the run recorded
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    with pytest.warns(UserWarning, match=r"Unexpected keyword arguments \['folkways'\]"):
        PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_path), str(out))
    experiment = Experiment.from_run_dir(reference.run_dir, progress=False)
    population = experiment.population(
        {a: (out if a == "agent_01" else p) for a, p in experiment.start_adapters(2).items()}
    )
    probed = prior_probe(population, experiment.game, ["agent_01"], experiment.probe_orders)[
        "agent_01"
    ]
    recorded = json.loads(layout.probes(1).read_text())["after"]["agent_01"]["probs"]
    # Probed here in a batch of one agent, recorded in a batch of all: other GEMM shapes.
    assert_close(probed.probs, recorded, PROB_ATOL_OTHER_BATCH, "re-probed prior of the release")


def test_the_card_names_the_environments_of_the_adapters_generations_only(reference, tmp_path):
    """Generation 1 resumed on another machine: its release names both machines and warns;
    generation 0's release names only the one that made it."""
    run_dir = tmp_path / "run"
    shutil.copytree(reference.run_dir, run_dir)
    log = RunLayout(run_dir).environment
    records = [json.loads(line) for line in log.read_text().splitlines()]
    elsewhere = {**records[1], "cpu": "Intel(R) Xeon(R) Platinum 8488C", "cpus": 4}
    log.write_text("".join(json.dumps(r) + "\n" for r in (records[0], elsewhere)))

    first = tmp_path / "first"
    release_adapter(run_dir, "agent_01", first, generation=0)
    [environment] = json.loads((first / "adapter_config.json").read_text())["folkways"][
        "environments"
    ]
    assert environment["work"] == ["run generation 0"] and environment["cpu"] == records[0]["cpu"]
    assert "environments" not in (first / "README.md").read_text().split("## Ran on")[1]

    last = tmp_path / "last"
    release_adapter(run_dir, "agent_01", last)
    block = json.loads((last / "adapter_config.json").read_text())["folkways"]
    assert [(e["cpu"], e["cpus"], e["work"]) for e in block["environments"]] == [
        (records[0]["cpu"], records[0]["cpus"], ["run generation 0"]),
        ("Intel(R) Xeon(R) Platinum 8488C", 4, ["run generation 1"]),
    ]
    card = (last / "README.md").read_text()
    assert "| 1 | Intel(R) Xeon(R) Platinum 8488C | 4 |" in card
    assert "The work behind this adapter was done in 2 environments" in card


def test_release_errors_name_what_exists(reference, tmp_path):
    with pytest.raises(
        FileNotFoundError, match="agents: \\['agent_00', 'agent_01', 'agent_02', 'agent_03'\\]"
    ):
        release_adapter(reference.run_dir, "agent_99", tmp_path / "x")
    with pytest.raises(FileNotFoundError, match="complete generations: \\[0, 1\\]"):
        release_adapter(reference.run_dir, "agent_00", tmp_path / "x", generation=5)
    assert not (tmp_path / "x").exists()


# ----- the full-precision base -------------------------------------------------------
def _perturbed_copy(tiny_model_path: str, out: Path, scale: float = 0.05) -> Path:
    """The tiny model with noise added to every weight: a stand-in for "the same model at
    another precision" (quantisation error is such a perturbation)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=generator))
    model.save_pretrained(out, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (Path(tiny_model_path) / name).is_file():
            shutil.copy2(Path(tiny_model_path) / name, out / name)
    return out


def test_prior_shift_on_a_full_precision_base(reference, tmp_path, tiny_model_path):
    from societies.population import PopulationModel

    full = _perturbed_copy(tiny_model_path, tmp_path / "full")
    out = tmp_path / "rel"
    release = release_adapter(reference.run_dir, "agent_01", out, full_precision_base=full)
    shift = release.prior_shift
    layout = RunLayout(reference.run_dir)

    recorded = json.loads(layout.probes(1).read_text())["after"]["agent_01"]["probs"]
    assert_close(shift.trained_on.probs, recorded, PROB_ATOL_OTHER_BATCH, "trained-on prior")
    # the full-precision prior is exactly what the same probe gives on that base
    experiment = Experiment.from_run_dir(reference.run_dir, progress=False)
    population = PopulationModel(
        str(full),
        ["agent_01"],
        experiment.lora,
        adapter_dirs={"agent_01": layout.adapter(1, "agent_01")},
        batch_size=experiment.config.model.batch_size,
        engine=experiment.config.model.engine,
    )
    direct = prior_probe(population, experiment.game, ["agent_01"], experiment.probe_orders)
    assert shift.on_full_precision.probs == direct["agent_01"].probs
    a, b = shift.trained_on.probs, shift.on_full_precision.probs
    assert shift.total_variation == pytest.approx(0.5 * sum(abs(a[k] - b[k]) for k in a))
    assert shift.total_variation > 1e-3  # the noise moved it

    block = json.loads((out / "adapter_config.json").read_text())["folkways"]
    recorded_shift = block["full_precision_prior_shift"]
    assert recorded_shift["measured"] is True
    assert recorded_shift["total_variation"] == shift.total_variation
    assert recorded_shift["full_precision_base"]["weights"][0]["sha256"] == sha256_of(
        full / "model.safetensors"
    )
    card = (out / "README.md").read_text()
    assert f"Total variation distance **{shift.total_variation:.3f}**" in card
    top = max(a, key=a.get)
    assert f"| {top} | {a[top]:.3f} | {b[top]:.3f} | {b[top] - a[top]:+.3f} |" in card


def test_prior_shift_on_the_same_weights_is_zero(reference, tmp_path, tiny_model_path):
    release = release_adapter(
        reference.run_dir, "agent_00", tmp_path / "rel", full_precision_base=tiny_model_path
    )
    # same weights, same code path, same process: bitwise the same prior
    assert release.prior_shift.trained_on.probs == release.prior_shift.on_full_precision.probs
    assert release.prior_shift.total_variation == 0.0


def test_full_precision_base_of_another_architecture_is_refused(
    reference, tmp_path, tiny_model_path
):
    other = tmp_path / "other"
    shutil.copytree(tiny_model_path, other)
    config = json.loads((other / "config.json").read_text())
    config["hidden_size"] = 128
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"hidden_size: 128 \(trained on 64\)"):
        release_adapter(reference.run_dir, "agent_00", tmp_path / "x", full_precision_base=other)
    assert not (tmp_path / "x").exists()


# ----- --push ------------------------------------------------------------------------
# huggingface_hub offers no local stand-in of the hub API: its only other endpoint is the
# remote staging hub (HUGGINGFACE_CO_STAGING -> hub-ci.huggingface.co); _webhooks_server
# receives webhooks and _sandbox runs remote compute. So only the failure path is tested
# here; a real upload (create_repo + upload_folder) was not exercised.
def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_push_without_network_fails_with_the_folder_and_command(reference, tmp_path):
    """The CLI with a token but an unreachable hub (HF_ENDPOINT on a closed loopback port):
    exit 69, the message names the finished folder and the `hf upload` command, and the
    folder is the complete release. No local hub stand-in exists (see above)."""
    out = tmp_path / "rel"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE"))}
    env.update(
        HF_ENDPOINT=f"http://127.0.0.1:{_closed_port()}",
        HF_TOKEN="hf_not_a_real_token",
        HF_HOME=str(tmp_path / "hf_home"),
        HF_HUB_DISABLE_TELEMETRY="1",
    )
    command = [sys.executable, "-m", "trainer.cli", "release", str(reference.run_dir)]
    command += ["--agent", "agent_01", "--out", str(out), "--push", "me/agent-01", "--private"]
    repo = Path(__file__).parents[1]
    done = subprocess.run(command, env=env, cwd=repo, capture_output=True, text=True, timeout=300)
    assert done.returncode == 69, done.stderr
    assert f"released agent_01 (generation 1, base tiny-random) to {out}" in done.stdout
    err = " ".join(done.stderr.split())
    assert f"upload of {out} to me/agent-01 at http://127.0.0.1:" in err
    assert "ConnectError" in err
    assert f"`hf upload me/agent-01 {out} . --repo-type model --private`" in err
    names = {p.name for p in out.iterdir()}
    assert {"README.md", "adapter_config.json", "adapter_model.safetensors"} <= names
    assert names <= RELEASE_FILES
    layout = RunLayout(reference.run_dir)
    assert (out / "adapter_model.safetensors").read_bytes() == (
        layout.adapter(1, "agent_01") / "adapter_model.safetensors"
    ).read_bytes()


def test_push_without_token_or_offline_names_the_reason(reference, tmp_path, monkeypatch):
    from huggingface_hub import constants

    out = tmp_path / "rel"
    release_adapter(reference.run_dir, "agent_03", out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    for key in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token-file"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(PushError, match="no Hugging Face token") as caught:
        push_release(out, "me/x")
    assert f"`hf upload me/x {out.resolve()} . --repo-type model`" in str(caught.value)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(PushError, match="HF_HUB_OFFLINE is set"):
        push_release(out, "me/x")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_bad_repo_id_is_refused_before_releasing(reference, tmp_path, capsys):
    from trainer.cli import main

    out = tmp_path / "rel"
    code = main(
        ["release", str(reference.run_dir), "--agent", "agent_00", "--out", str(out)]
        + ["--push", "not a repo/../x"]
    )
    assert code == 2
    assert "--push 'not a repo/../x' is not a valid repo id" in capsys.readouterr().err
    assert not out.exists()


def test_cli_release_flags(reference, tmp_path, tiny_model_path, capsys):
    from trainer.cli import main

    args = ["release", str(reference.run_dir), "--agent", "agent_00", "--out"]
    assert main([*args, str(tmp_path / "a"), "--private"]) == 2
    assert "--private applies to --push REPO_ID" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()

    code = main([*args, str(tmp_path / "b"), "--full-precision-base", tiny_model_path, "--json"])
    assert code == 0
    record = json.loads(capsys.readouterr().out)
    shift = record["full_precision_prior_shift"]
    assert shift["measured"] is True and shift["total_variation"] == 0.0  # the same weights
    assert record["base_weights"]["kind"] == "tiny-random" and "pushed" not in record


def _folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_out_inside_a_run_directory_is_refused_and_its_adapter_kept(reference, tmp_path, capsys):
    """Releasing into a run's own adapter folder (it holds only release file names) used
    to exit 0 and overwrite that agent's trained weights."""
    from trainer.cli import main

    run = tmp_path / "run"
    shutil.copytree(reference.run_dir, run)
    target = RunLayout(run).adapter(1, "agent_00")
    before = _folder_bytes(target)
    assert "adapter_model.safetensors" in before and "adapter_config.json" in before

    argv = ["release", str(run), "--agent", "agent_03", "--generation", "0", "--out"]
    assert main([*argv, str(target)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert f"--out {target} is inside the run directory {run.resolve()}" in err
    assert _folder_bytes(target) == before

    # a new folder under a generation is refused too: nothing is written there
    assert main([*argv, str(run / "generation_000" / "released")]) == 2
    assert not (run / "generation_000" / "released").exists()


def test_only_a_previous_release_is_replaced(reference, tmp_path):
    """A copy of a run's adapter outside the run is not a release (no `folkways` block in
    its adapter_config.json): refused; a folder a release wrote is replaced."""
    adapter_copy = tmp_path / "copy"
    shutil.copytree(RunLayout(reference.run_dir).adapter(1, "agent_00"), adapter_copy)
    before = _folder_bytes(adapter_copy)
    with pytest.raises(ValueError, match=f"--out {adapter_copy} is not empty and not a folkways"):
        release_adapter(reference.run_dir, "agent_03", adapter_copy, generation=0)
    assert _folder_bytes(adapter_copy) == before

    out = tmp_path / "rel"
    release_adapter(reference.run_dir, "agent_03", out, generation=0)
    first = json.loads((out / "adapter_config.json").read_text())["folkways"]
    assert (first["agent"], first["generation"]) == ("agent_03", 0)
    release_adapter(reference.run_dir, "agent_01", out, generation=1)
    again = json.loads((out / "adapter_config.json").read_text())["folkways"]
    assert (again["agent"], again["generation"]) == ("agent_01", 1)
    source = RunLayout(reference.run_dir).adapter(1, "agent_01")
    assert sha256_of(out / "adapter_model.safetensors") == sha256_of(
        source / "adapter_model.safetensors"
    )
