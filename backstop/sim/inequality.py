"""How unevenly a policy spreads its haircuts over the winners: the inequality measures (`gini`,
`largest_share`) of the ADL policy study (backstop/sim/policy_study.py), exact on integers.
"""

from __future__ import annotations

from fractions import Fraction


def gini(values: list[int] | list[float]) -> float:
    """Gini coefficient of non-negative amounts, normalised by n (the population Gini):
    Σ_i Σ_j |x_i - x_j| / (2 n Σ x). 0 when everyone pays the same; (n - 1) / n when one pays all,
    so [0, 0, 0, 1] gives 0.75. Empty or all-zero input gives 0. Exact on integers (the sum is
    computed as a fraction and rounded once)."""
    if any(value < 0 for value in values):
        raise ValueError("gini needs non-negative amounts (haircuts); got a negative one.")
    ordered = sorted(Fraction(value) for value in values)
    n, total = len(ordered), sum(ordered)
    if total == 0:
        return 0.0
    # with x sorted ascending and i from 1: G = (2 Σ i x_i - (n + 1) Σ x) / (n Σ x)
    weighted = sum(rank * value for rank, value in enumerate(ordered, start=1))
    return float((2 * weighted - (n + 1) * total) / (n * total))


def largest_share(values: list[int] | list[float]) -> float:
    """The largest amount as a share of the total: 1 when one pays all, 1/n when all pay alike.
    Empty or all-zero input gives 0."""
    total = sum(values)
    return float(Fraction(max(values)) / Fraction(total)) if total else 0.0
