"""Writing a run's JSON: the figures as the schema defines them (backstop/sim/result_schema.py),
with each ADL round's per-winner detail left out (at 10,000 traders it is hundreds of thousands of
entries; the report's figures come from the totals per winner, which the result keeps)."""

from __future__ import annotations

import json
from pathlib import Path

# Per-round detail that `write_json` leaves out of a result's "adl_rounds".
ROUND_DETAIL = ("haircut_by_winner", "hedged_winners")


def write_json(path: Path, document: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_compact(document), indent=1))


def _compact(document):
    if isinstance(document, dict):
        return {key: ([_without_detail(r) for r in value] if key == "adl_rounds" and isinstance(value, list) else _compact(value)) for key, value in document.items()}
    if isinstance(document, list):
        return [_compact(item) for item in document]
    return document


def _without_detail(round_: dict) -> dict:
    return {key: value for key, value in round_.items() if key not in ROUND_DETAIL}
