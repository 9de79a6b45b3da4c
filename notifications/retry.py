"""The one backoff schedule of the notifications layer (digests, webhooks, the admin alert)."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

from tenacity import wait_exponential


def backoff(attempt: int, first_s: float, max_s: float) -> timedelta:
    """Tenacity's exponential schedule (first, 2·first, 4·first … capped at ``max_s``).

    Returned as a duration, not slept: a digest's next try is a time in the (possibly simulated)
    future that the next pass compares with its ``now``; only the admin alert sleeps it.
    """
    wait = wait_exponential(multiplier=first_s, min=first_s, max=max_s, exp_base=2)
    return timedelta(seconds=float(wait(SimpleNamespace(attempt_number=max(1, attempt)))))
