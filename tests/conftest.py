"""Shared fixtures and the hypothesis profiles.

Profiles (pick one with BACKSTOP_FUZZ=<name>, default `ci`):
- `ci`: the whole suite well inside the CI budget on 2 cores.
- `deep`: long fuzzing for auditors; hours, not minutes.
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=50,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "deep",
    max_examples=5_000,
    stateful_step_count=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("BACKSTOP_FUZZ", "ci"))
