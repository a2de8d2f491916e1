"""A finished trial as the searchers and the final phase see it.

Its own module so that the loop, the trial runner and the final phase can all name it
without importing one another.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.nas.architecture import Architecture


@dataclass
class Trial:
    """A finished trial: ``architecture`` is unweighted, with ``id`` set; ``score`` is the
    validation accuracy of an ``ok`` trial (None otherwise); ``record`` is its trials.jsonl line."""

    id: str
    architecture: Architecture
    score: float | None
    record: dict = field(default_factory=dict)
