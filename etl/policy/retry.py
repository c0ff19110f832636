"""Bounded retries with exponential backoff and full jitter.

Pure decision logic: no clock, no I/O. The caller sleeps for what
:meth:`RetryPolicy.delay` says; tests pass a seeded ``random.Random``.

Examples
--------
>>> import random
>>> p = RetryPolicy(max_attempts=4, base_delay=0.5, max_delay=2.0)
>>> [round(p.cap(a), 2) for a in range(4)]
[0.5, 1.0, 2.0, 2.0]
>>> 0 <= p.delay(3, random.Random(1)) <= 2.0
True
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

from etl.errors import ConfigError


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry a transient failure.

    Parameters
    ----------
    max_attempts : int
        Total attempts, the first included (>= 1).
    base_delay : float
        Seconds; the cap of the first backoff.
    max_delay : float
        Seconds; no backoff is ever longer.
    """

    max_attempts: int = 8
    base_delay: float = 0.1
    max_delay: float = 10.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.base_delay < 0 or self.max_delay < self.base_delay:
            raise ConfigError(f"invalid retry policy {self}: need max_attempts >= 1 and "
                              "0 <= base_delay <= max_delay.")

    def cap(self, attempt: int) -> float:
        """The longest wait after failed attempt number ``attempt`` (0-based)."""
        return min(self.max_delay, self.base_delay * (2 ** attempt))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Full jitter: uniform in ``[0, cap(attempt)]``."""
        return (rng or random).uniform(0.0, self.cap(attempt))

    def gives_up_after(self, attempt: int) -> bool:
        """True when attempt ``attempt`` (0-based) was the last allowed."""
        return attempt + 1 >= self.max_attempts

    @classmethod
    def from_env(cls) -> "RetryPolicy":
        """The policy set by ``ETL_RETRY_MAX_ATTEMPTS``, ``ETL_RETRY_BASE_DELAY``, ``ETL_RETRY_MAX_DELAY``."""
        d = cls()
        return cls(int(os.environ.get("ETL_RETRY_MAX_ATTEMPTS", d.max_attempts)),
                   float(os.environ.get("ETL_RETRY_BASE_DELAY", d.base_delay)),
                   float(os.environ.get("ETL_RETRY_MAX_DELAY", d.max_delay)))
