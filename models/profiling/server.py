"""The limits of one simulated deployment, shared by the simulator and the analytic model."""

from __future__ import annotations

import math
from dataclasses import dataclass

# vLLM defaults: max_num_seqs, and the share of KV blocks kept free when admitting
MAX_BATCH = 256
WATERMARK = 0.01


@dataclass(frozen=True)
class ServerConfig:
    """KV-cache tokens, prompt tokens per iteration (token budget), requests per batch."""

    kv_tokens: int
    token_budget: int
    max_batch: int = MAX_BATCH
    watermark: float = WATERMARK

    @property
    def admission_kv_tokens(self) -> int:
        """KV tokens admissions may fill; decode steps may use the rest."""
        return math.floor(self.kv_tokens * (1 - self.watermark))
