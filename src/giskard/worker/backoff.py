"""Capped exponential backoff with jitter."""

from __future__ import annotations

import random


class Backoff:
    """Delays of initial, 2x, 4x... up to `max_s`, each jittered to [50%, 100%].

    Jitter keeps a fleet of workers from reconnecting in lockstep after a hub restart; the
    50% floor keeps a single worker from hammering the hub.
    """

    def __init__(self, initial_s: float, max_s: float, rng: random.Random | None = None) -> None:
        self.initial_s = initial_s
        self.max_s = max_s
        self._rng = rng or random.Random()
        self._attempt = 0

    def next_delay_s(self) -> float:
        ceiling = min(self.max_s, self.initial_s * 2**self._attempt)
        self._attempt = min(self._attempt + 1, 32)
        return self._rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self._attempt = 0
