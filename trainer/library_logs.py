"""Keep the training libraries' own output out of ours: their progress bars, warnings
and, for DeepSpeed, logs printed to stdout (which would corrupt ``--json`` output)."""

from __future__ import annotations

import sys


def quiet_libraries() -> None:
    """Our own progress bars say what is happening; hide the libraries' per-call bars.

    Every command that loads a model calls this first. What only TRL training needs
    quieted is :func:`quiet_training_libraries`, called where TRL is imported.
    """
    import os
    import warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()


def quiet_training_libraries() -> None:
    """Before TRL is imported: datasets' bars and logs, and DeepSpeed's logs to stderr.

    Not in :func:`quiet_libraries`: importing datasets and DeepSpeed takes ~2.3 s (2-core
    AMD EPYC) that rollouts, probes and the batched backend never otherwise pay.
    """
    import datasets

    datasets.disable_progress_bars()
    datasets.utils.logging.set_verbosity_error()
    deepspeed_logs_to_stderr()


def deepspeed_logs_to_stderr() -> None:
    """DeepSpeed, when installed, is imported by the training libraries and logs to
    stdout (its handler holds the stdout of the moment it is imported), which would
    corrupt ``--json`` output. Import it first, drop what importing it prints (on a CPU
    machine, a warning that it found no GPU) and point its handlers at stderr."""
    import contextlib
    import importlib.util
    import io
    import logging

    if "deepspeed" in sys.modules or importlib.util.find_spec("deepspeed") is None:
        return
    with contextlib.redirect_stdout(io.StringIO()):
        import deepspeed  # noqa: F401
    for handler in logging.getLogger("DeepSpeed").handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(sys.stderr)
