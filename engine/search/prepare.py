"""Getting a search ready: its data, its split, its training recipe, and a resumed run's trials.

:class:`Preparation` holds the methods of the search (``engine.search.loop._Search``) that load
the labelled images (and check, on resume, that they did not change), split them into
training, validation and test parts once (the split is saved in dataset.json and reused on
resume), choose the training recipe from the data and the device (``engine.training.recipe``), and
put back the finished trials of a run that is resumed after a crash.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from engine.search.budget import CostModel
from engine.errors import SproutError
from engine.search.folder import DATASET, atomic_write_json

log = logging.getLogger("engine.search.loop")

TEST_FRACTION = 0.15
VAL_FRACTION = 0.15


class Preparation:
    """Mixin of ``engine.search.loop._Search``: data, split, recipe and resume (see the module docstring)."""

    def _load_data(self, resuming: bool) -> None:
        from engine.data import ingest as data

        t = time.monotonic()
        info = self.folder.read_dataset() if resuming else None
        if resuming and info is None:
            raise SproutError(f"{self.folder.root} has no dataset.json; the run cannot be resumed")
        size = info["image_size"] if info else self.config.image_size
        channels = info["channels"] if info else "auto"
        source = self.source if self.source is not None else (info or {}).get("source")
        ds = data.load(source, image_size=size, channels=channels)
        if len(ds.class_names) < 2:
            raise SproutError("the data has fewer than two classes; a classifier needs at least two")
        if info is not None:
            same_hash = (info.get("report") or {}).get("content_hash") in (None, ds.report.content_hash)
            if info["class_names"] != list(ds.class_names) or info["n_images"] != len(ds.labels) or not same_hash:
                raise SproutError("the data changed since this run started (different classes or number of "
                                  "images); start a new run instead of resuming")
            split = {k: np.asarray(info["split"][k], dtype=np.int64) for k in ("train", "val", "test")}
        else:
            s = ds.split(test=TEST_FRACTION, val=VAL_FRACTION, seed=self.config.seed)
            split = {"train": s.train, "val": s.val, "test": s.test}
        if len(split["train"]) == 0 or len(split["val"]) == 0 or len(split["test"]) == 0:
            raise SproutError(f"too few images to split into training, validation and test sets "
                              f"({len(ds.labels)} images); each class needs at least 3")
        self.dataset, self.split = ds, split
        self.class_names = list(ds.class_names)
        self.image_size, self.channels = int(ds.images.shape[1]), int(ds.images.shape[3])
        labels = np.asarray(ds.labels, dtype=np.int32)
        self.x_train, self.y_train = ds.images[split["train"]], labels[split["train"]]
        self.x_val, self.y_val = ds.images[split["val"]], labels[split["val"]]
        self.x_test, self.y_test = ds.images[split["test"]], labels[split["test"]]
        self.cost = CostModel(len(self.y_train))
        if info is None:
            self.folder.create()
            self.folder.write_state(self.state)
            report = ds.report.to_dict()
            atomic_write_json(self.folder.root / DATASET, {
                "source": str(self.source), "report": report, "class_names": self.class_names,
                "image_size": self.image_size, "channels": self.channels, "n_images": int(len(ds.labels)),
                "split_seed": self.config.seed, "fractions": {"test": TEST_FRACTION, "val": VAL_FRACTION},
                "split": {k: v.tolist() for k, v in split.items()}})
        self.timings.add("io_s", time.monotonic() - t)
        self.say(f"data: {len(ds.labels)} images, {len(self.class_names)} classes, "
                 f"{self.image_size}x{self.image_size}x{self.channels}; split {len(self.y_train)} train / "
                 f"{len(self.y_val)} validation / {len(self.y_test)} test")

    def _recipe(self):
        """The training recipe: the one this run chose before (on resume), else chosen now
        from the training and validation data and the device, with the config's overrides."""
        from engine.training.recipe import Recipe, choose_recipe, with_overrides

        if self.state.get("recipe"):
            return Recipe.from_dict(self.state["recipe"])
        with self.timings.timed("proposal_s"):
            recipe = choose_recipe(self.x_train, self.y_train, self.x_val, self.y_val, device=self.device,
                                   seed=self.config.seed)
        if self.config.batch_size:
            recipe = with_overrides(recipe, {"batch_size": int(self.config.batch_size)})
        return with_overrides(recipe, self.config.recipe or {})

    def _device(self) -> str:
        try:
            from engine.training.device import device_name

            return str(device_name())
        except Exception:  # noqa: BLE001
            return "unknown"

    def _restore(self, saved: dict) -> None:
        self.folder.repair_trials()
        records = self.folder.read_trials()
        removed = self.folder.remove_uncommitted(r["id"] for r in records)
        if saved.get("searcher"):
            try:
                self.searcher.load_state_dict(saved["searcher"])
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("searcher state not restored: %s", exc)
        if saved.get("rng"):
            self.rng.bit_generator.state = saved["rng"]
        for record in records:
            try:
                arch = self.folder.load_architecture(record["id"], weights=False)
            except (OSError, ValueError, KeyError):
                arch = None
            self._add_trial(record, arch, restored=True)
        self.next_id = max((int(r["id"]) for r in records), default=-1) + 1
        in_flight = saved.get("in_flight")
        self.say(f"resumed: {len(records)} finished trials kept"
                 + (f"; trial {in_flight['trial_id']} was in flight and is redone" if in_flight else "")
                 + (f" (removed unfinished {', '.join(removed)})" if removed and not in_flight else ""))
