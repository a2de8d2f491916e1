"""What a search is asked to do: :class:`SearchConfig`, saved in state.json and reused on resume."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from engine.errors import SproutError

SEARCHERS = ("bayesian", "random", "bfs")


@dataclass
class SearchConfig:
    """What to search: the contract's fields, plus optional extras (defaults keep the contract)."""

    budget_s: float
    searcher: str = "bayesian"
    seed: int = 0
    image_size: int | None = None
    max_epochs: int | None = None
    max_trials: int | None = None      # stop proposing after this many trials (None: budget only)
    batch_size: int | None = None      # None: the recipe's (chosen from the data and device)
    recipe: dict | None = None         # overrides of the chosen recipe, e.g. {"flip": False}
    pretrained: str = "auto"           # "auto" | "none" | a weights file (engine.search.pretrained)
    levers: dict | None = None         # issue 14's search options, e.g. {"score": "kept"} (engine.nas.levers)
    workers: int | None = None         # trials at once (None: one per GPU, else 1; engine.search.executor)
    executor: str = "local"            # "local" (worker processes) | "ray" (Ray tasks)
    ray_address: str | None = None     # a Ray cluster's address (None: a local Ray instance)
    step: bool = False                 # step mode: wait before each proposed trial until told to go on
    race: str | None = None            # the race id shared by the two runs of a race (engine.search.race)
    fidelities: list[float] | None = None  # shares of the training images (None: chosen; engine.search.fidelity)

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "SearchConfig":
        names = {f.name for f in fields(SearchConfig)}
        return SearchConfig(**{k: v for k, v in d.items() if k in names})

    def check(self) -> None:
        """Raise SproutError naming the first field that is out of range (by its field name:
        the CLI translates field names into its flags, the app never shows flags)."""
        if not (isinstance(self.budget_s, (int, float)) and math.isfinite(self.budget_s) and self.budget_s > 0):
            raise SproutError("budget_s (the time budget) must be a positive number of seconds; "
                              f"received {self.budget_s!r}")
        if self.searcher not in SEARCHERS:
            raise SproutError(f"unknown searcher {self.searcher!r}; expected bayesian, random or bfs")
        if self.max_epochs is not None and self.max_epochs < 1:
            raise SproutError(f"max_epochs must be at least 1; received {self.max_epochs}")
        if self.image_size is not None and not 8 <= self.image_size <= 512:
            raise SproutError(f"image_size must be between 8 and 512 pixels; received {self.image_size}")
        if self.max_trials is not None and self.max_trials < 1:
            raise SproutError(f"max_trials must be at least 1; received {self.max_trials}")
        if self.workers is not None and (not isinstance(self.workers, int) or self.workers < 1):
            raise SproutError(f"workers must be at least 1; received {self.workers!r}")
        if self.executor not in ("local", "ray"):
            raise SproutError(f"executor must be local or ray; received {self.executor!r}")
        if not isinstance(self.pretrained, str) or not self.pretrained.strip():
            raise SproutError(f"pretrained must be auto, none or the path of a weights file; "
                              f"received {self.pretrained!r}")
        if self.pretrained not in ("auto", "none"):
            from engine.training.trunk import check_weights_file

            check_weights_file(self.pretrained)
        if self.fidelities is not None:
            from engine.search.fidelity import check_fidelities

            try:
                check_fidelities(self.fidelities)
            except (TypeError, ValueError) as exc:
                raise SproutError(str(exc)) from None
        if self.levers:
            from engine.nas.levers import Levers

            try:
                Levers.from_dict(self.levers)
            except ValueError as exc:
                raise SproutError(str(exc)) from None
        if self.recipe:
            from engine.training.recipe import check_overrides

            try:
                check_overrides(self.recipe)
            except ValueError as exc:
                raise SproutError(str(exc)) from None
