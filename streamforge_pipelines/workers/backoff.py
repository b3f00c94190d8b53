"""The retry policy shared by the exchange's REST client and the archive client."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Up to ``max_attempts`` tries; before try ``n + 1`` wait uniform(0, min(cap, base · 2^(n-1))).

    Capped exponential backoff with full jitter: concurrent clients that failed together do not
    retry together.
    """

    max_attempts: int = 6
    base_s: float = 0.2
    cap_s: float = 10.0
    rng: random.Random = field(default_factory=random.Random)

    def gives_up(self, attempt: int) -> bool:
        """Whether ``attempt`` (1-based) was the last one allowed."""
        return attempt >= self.max_attempts

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed ``attempt`` (1-based)."""
        return self.rng.uniform(0, min(self.cap_s, self.base_s * 2 ** (attempt - 1)))
