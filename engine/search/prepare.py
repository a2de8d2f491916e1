"""Getting a search ready: its data, its split and its training recipe, as plain data.

:func:`prepare_data` loads the labelled images (and checks, on resume, that they did not
change), splits them into training, validation and test parts once (the split is saved in
dataset.json and reused on resume) and returns a :class:`PreparedData`; :func:`run_recipe`
chooses the training recipe from the data and the device (``engine.training.recipe``), or
takes back the one a resumed run chose. No TensorFlow here.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from engine.errors import SproutError
from engine.search.budget import Timings
from engine.search.config import SearchConfig
from engine.search.folder import RunFolder

TEST_FRACTION = 0.15
VAL_FRACTION = 0.15


@dataclass
class PreparedData:
    """The run's images split three ways; ``dataset`` is the loaded data set (its ``paths``
    name the misclassified test images) and ``split`` its indices per part."""

    dataset: Any
    split: dict[str, np.ndarray]
    class_names: list[str]
    image_size: int
    channels: int
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    def describe(self) -> str:
        """One line for people: images, classes, size and the split."""
        return (f"data: {len(self.dataset.labels)} images, {len(self.class_names)} classes, "
                f"{self.image_size}x{self.image_size}x{self.channels}; split {len(self.y_train)} train / "
                f"{len(self.y_val)} validation / {len(self.y_test)} test")


def load_data(source: Any, config: SearchConfig, info: dict | None, size: int | None = None,
              channels: int | str = "auto") -> PreparedData:
    """The data of ``source`` split for a search; ``info`` is a resumed run's dataset.json
    (its image size, channels and split are reused, and the data must not have changed).
    ``size`` and ``channels`` replace the config's for a new run (a pretrained trunk's input)."""
    from engine.data import ingest as data

    size = info["image_size"] if info else size or config.image_size
    channels = info["channels"] if info else channels
    source = source if source is not None else (info or {}).get("source")
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
        s = ds.split(test=TEST_FRACTION, val=VAL_FRACTION, seed=config.seed)
        split = {"train": s.train, "val": s.val, "test": s.test}
    if len(split["train"]) == 0 or len(split["val"]) == 0 or len(split["test"]) == 0:
        raise SproutError(f"too few images to split into training, validation and test sets "
                          f"({len(ds.labels)} images); each class needs at least 3")
    # One uint8 copy of the images (issue 22): the parts laid out side by side in one array, train,
    # then validation, then test, so each part is a view of it and so is train + validation
    # (the fine-tune's data, :func:`train_and_val`); the decoded array in the data set's own order
    # is dropped. For 60,000 images of 28x28 that is 47 MB, where the copies per part and the
    # fine-tune's concatenation held it two to three times.
    order = np.concatenate([split["train"], split["val"], split["test"]])
    images = ds.images[order]
    labels = np.asarray(ds.labels, dtype=np.int32)[order]
    shape = ds.images.shape
    ds = replace(ds, images=images[:0])
    a, b = len(split["train"]), len(split["train"]) + len(split["val"])
    return PreparedData(
        dataset=ds, split=split, class_names=list(ds.class_names),
        image_size=int(shape[1]), channels=int(shape[3]),
        x_train=images[:a], y_train=labels[:a], x_val=images[a:b], y_val=labels[a:b],
        x_test=images[b:], y_test=labels[b:])


def train_and_val(data: PreparedData) -> tuple[np.ndarray, np.ndarray]:
    """The training and validation parts as one (x, y): a view when they lie side by side in one
    array (as :func:`load_data` lays them out), else a new array."""
    return _joined(data.x_train, data.x_val), _joined(data.y_train, data.y_val)


def _joined(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """``first`` followed by ``second``: a view of their common array when ``second`` starts where
    ``first`` ends in it, else their concatenation."""
    base = first.base
    if (base is not None and second.base is base and isinstance(base, np.ndarray) and base.flags.c_contiguous
            and first.flags.c_contiguous and second.flags.c_contiguous and len(first) and len(second)
            and first.shape[1:] == second.shape[1:] == base.shape[1:] and first.dtype == second.dtype == base.dtype):
        row = first.nbytes // len(first)
        origin = base.__array_interface__["data"][0]
        start, end = first.__array_interface__["data"][0], second.__array_interface__["data"][0]
        if end == start + first.nbytes and (start - origin) % row == 0:
            i = (start - origin) // row
            return base[i:i + len(first) + len(second)]
    return np.concatenate([first, second])


def dataset_info(data: PreparedData, source: Any, seed: int) -> dict:
    """dataset.json of a new run: the data report, classes, image shape and the split."""
    return {"source": str(source), "report": data.dataset.report.to_dict(), "class_names": data.class_names,
            "image_size": data.image_size, "channels": data.channels, "n_images": int(len(data.dataset.labels)),
            "split_seed": seed, "fractions": {"test": TEST_FRACTION, "val": VAL_FRACTION},
            "split": {k: v.tolist() for k, v in data.split.items()}}


def prepare_data(folder: RunFolder, source: Any, config: SearchConfig, state: dict, resuming: bool) -> PreparedData:
    """Load and split the data; for a new run, also create the run folder and write its
    state.json and dataset.json (only now: bad data leaves no half-made run folder)."""
    info = folder.read_dataset() if resuming else None
    if resuming and info is None:
        raise SproutError(f"{folder.root} has no dataset.json; the run cannot be resumed")
    data = load_data(source, config, info)
    if info is None:
        data = _for_start(data, source, config, state)
        folder.create()
        folder.write_state(state)
        folder.write_dataset(dataset_info(data, source, config.seed))
    return data


def _for_start(data: PreparedData, source: Any, config: SearchConfig, state: dict) -> PreparedData:
    """Choose the run's start (``engine.search.pretrained``), note it in ``state`` and, for a
    pretrained start, the data again at the trunk's size in colour."""
    from engine.search.pretrained import choose_start

    start = choose_start(config.pretrained, data.dataset.report, config.image_size)
    state["start"] = start.to_dict()
    if not start.pretrained or (data.image_size == start.image_size and data.channels == 3):
        return data
    return load_data(source, config, None, size=start.image_size, channels=3)


def run_recipe(state: dict, data: PreparedData, config: SearchConfig, device: str, timings: Timings):
    """The training recipe: the one this run chose before (on resume), else chosen now
    from the training and validation data and the device, with the config's overrides."""
    from engine.search.pretrained import Start
    from engine.training.recipe import Recipe, choose_recipe, with_overrides

    if state.get("recipe"):
        return Recipe.from_dict(state["recipe"])
    with timings.timed("proposal_s"):
        recipe = choose_recipe(data.x_train, data.y_train, data.x_val, data.y_val, device=device, seed=config.seed,
                               from_scratch=not Start.from_dict(state.get("start")).pretrained)
    if config.batch_size:
        recipe = with_overrides(recipe, {"batch_size": int(config.batch_size)})
    if state.get("start"):  # which start the run took, and why, is the recipe's first line
        recipe = replace(recipe, reasons=(state["start"]["reason"], *recipe.reasons))
    return with_overrides(recipe, config.recipe or {})


def device_name() -> str:
    """The training device in words ("unknown" when it cannot tell)."""
    from engine.training import device  # TensorFlow: already loaded by the trainer

    try:
        return str(device.device_name())
    except Exception:  # noqa: BLE001
        return "unknown"
