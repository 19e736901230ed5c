"""How a folkways run maps onto W&B's settings: the mode, the config, artifact names.

Modes: ``disabled`` (default; nothing imported, nothing written), ``offline``,
``online``, and ``auto`` = online when credentials exist (``WANDB_API_KEY`` or a netrc
entry), else offline; ``auto`` follows ``WANDB_MODE=offline``/``disabled`` when it is
set, so a key in the environment never turns a run its user made offline into an
upload. The key itself is left to wandb, which reads it from the environment:
folkways never passes or writes it. The tracker is :mod:`trainer.wandb_tracking`.
"""

from __future__ import annotations

import netrc
import os
import zlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

_ARTIFACT_NAME_MAX = 128  # wandb.sdk.artifacts._validators.NAME_MAXLEN


def wandb_host() -> str:
    """The W&B server's host name: ``WANDB_BASE_URL``'s, else ``api.wandb.ai``."""
    return urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname or ""


def has_wandb_credentials() -> bool:
    """A key in ``WANDB_API_KEY`` or ``WANDB_IDENTITY_TOKEN_FILE``, or a netrc entry for
    the server's host (what ``wandb login`` writes)."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    try:
        return netrc.netrc().authenticators(wandb_host()) is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def check_online_credentials(mode: str) -> None:
    """Refuse ``tracking.wandb=online`` without credentials before any work is done.

    wandb itself would refuse only at the first tracked step, after the rollout.
    """
    if mode == "online" and not has_wandb_credentials():
        raise ValueError(
            f"tracking.wandb=online but no W&B credentials were found (WANDB_API_KEY, or a "
            f"netrc entry for {wandb_host()} as `wandb login` writes); accepted: set one "
            "of those, or tracking.wandb=offline (upload later with `folkways wandb sync`) "
            "or auto (online when credentials exist)"
        )


def resolve_mode(mode: str) -> str:
    """``auto`` -> ``WANDB_MODE`` if it says offline/disabled, else ``online`` with
    credentials, else ``offline``; other modes unchanged."""
    if mode == "auto":
        # Our explicit mode= overrides WANDB_MODE inside wandb.init, so honour it here.
        env_mode = os.environ.get("WANDB_MODE", "").strip().lower()
        if env_mode in ("offline", "dryrun"):
            return "offline"
        if env_mode == "disabled":
            return "disabled"
        return "online" if has_wandb_credentials() else "offline"
    if mode not in ("disabled", "offline", "online"):
        raise ValueError(f"tracking.wandb={mode!r}; accepted: disabled, offline, online, auto")
    return mode


def quiet_settings(wandb_module: Any) -> Any:
    """``wandb.init``'s settings: silent, unless the user set ``WANDB_SILENT``.

    W&B prints 20-70 console lines a run, one of them advice to upload with
    ``wandb sync``, which next to ``folkways wandb sync`` uploads artifacts twice.
    """
    if "WANDB_SILENT" in os.environ:
        return None
    return wandb_module.Settings(silent=True)


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"run": {"seed": 3}}`` -> ``{"run.seed": 3}``: nested mappings become dotted
    keys; lists (e.g. ``interventions``) stay values."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            flat |= flatten_config(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def adapter_artifact_name(run_name: str, agent: str) -> str:
    """``<run>-<agent>``, shortened with a hash of the full name past W&B's 128
    characters (sweep run names reach 120)."""
    name = f"{run_name}-{agent}"
    if len(name) <= _ARTIFACT_NAME_MAX:
        return name
    digest = f"{zlib.crc32(name.encode()):08x}"
    keep = _ARTIFACT_NAME_MAX - len(agent) - len(digest) - 2
    return f"{run_name[:keep]}-{digest}-{agent}"
