"""Named random streams split from one root seed (DESIGN.md, decision 7).

Every source of randomness draws from its own stream, keyed by name and by where
in the run it is used (generation, round, ...). Changing one stream — an
intervention, a different pairing rule — leaves every other draw as it was, and a
redone round draws exactly what it drew the first time.
"""

from __future__ import annotations

import hashlib
from enum import Enum

import numpy as np


class Stream(str, Enum):
    """The closed set of random streams."""

    PAIRING = "pairing"
    SAMPLING = "sampling"
    OPTIONS = "options"  # option order shown in a prompt
    NAMES = "names"  # which names a naming game uses
    ADAPTER_INIT = "adapter_init"
    PROBE = "probe"
    TRAINING = "training"
    MUTATION = "mutation"
    SELECTION = "selection"  # tie-breaks and parents in evolution between generations
    ANCHOR = "anchor"  # which generation-0 rows an anchored data policy draws
    INTERVENTION = "intervention"
    GRAPH = "graph"  # the interaction graph's draw


def stream_seed(root_seed: int, stream: Stream, *keys: int | str) -> int:
    """A 63-bit seed for ``stream`` at position ``keys``, stable across Python versions."""
    text = ":".join([str(root_seed), Stream(stream).value, *map(str, keys)])
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def rng(root_seed: int, stream: Stream, *keys: int | str) -> np.random.Generator:
    """A numpy generator for ``stream`` at position ``keys``."""
    return np.random.default_rng(stream_seed(root_seed, stream, *keys))
