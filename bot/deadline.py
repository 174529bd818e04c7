"""Deadlines and circuit breakers for the packages that may not import ``knowledge`` (the
adapters): the one implementation is :mod:`knowledge.deadline` and :mod:`knowledge.breaker`,
re-exported here so that there is a single home for each rule."""

from knowledge.breaker import COOL_DOWN, FAILURES, CircuitBreaker, State
from knowledge.deadline import budget, retry_delay, time_left, within

__all__ = [
    "COOL_DOWN", "FAILURES", "CircuitBreaker", "State", "budget", "retry_delay", "time_left",
    "within",
]  # fmt: skip
