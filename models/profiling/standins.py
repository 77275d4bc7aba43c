"""Which measured table model stands in for each served LLM, and its KV-cache size per token.

The step-time table measured llama-7b/13b/30b/65b. A served model borrows the
step times of the architecturally closest table model (an approximation, stated
in docs/latency.md) and that model's KV-cache footprint: fp16 keys and values
for every layer, 2 x layers x hidden size x 2 bytes per token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

GB = 1e9  # the SPEC's GB (instance field kv_cache_gb)
FP16_BYTES = 2


@dataclass(frozen=True)
class Architecture:
    """The shape that sets a table model's KV-cache size."""

    layers: int
    hidden_size: int

    @property
    def kv_bytes_per_token(self) -> int:
        return 2 * self.layers * self.hidden_size * FP16_BYTES  # keys and values, every layer


# LLaMA-1 shapes (Touvron et al. 2023, table 2).
TABLE_ARCHITECTURES = {
    "llama-7b": Architecture(layers=32, hidden_size=4096),
    "llama-13b": Architecture(layers=40, hidden_size=5120),
    "llama-30b": Architecture(layers=60, hidden_size=6656),
    "llama-65b": Architecture(layers=80, hidden_size=8192),
}

# Served model -> table model (shared data README: architecturally close).
STAND_INS = {
    "mistral-7b": "llama-7b",
    "wizardlm-13b": "llama-13b",
    "yi-34b": "llama-30b",
    "llama-2-70b": "llama-65b",
}


def kv_capacity_tokens(table_model: str, tp: int, kv_cache_gb: float) -> int:
    """Tokens of KV cache in the model's reserve: kv_cache_gb on each of its tp shards."""
    return math.floor(tp * kv_cache_gb * GB / TABLE_ARCHITECTURES[table_model].kv_bytes_per_token)
