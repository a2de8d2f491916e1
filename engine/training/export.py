"""Exporting a trained model: a ``.keras`` file, a zipped TensorFlow SavedModel, or TFLite.

Every export takes raw uint8 images of the training size (the model rescales them
itself) and gives class probabilities; ``labels.json`` beside it is the JSON list of
class names in output order (``labels[i]`` is output ``i``). A ``.keras`` file holds
built-in layers only, so :func:`load_model` opens it with ``safe_mode=True`` and no
custom objects. SavedModel and TFLite need TensorFlow (with any Keras backend that can
export to it); where it is missing, :func:`export` says so in a :class:`SproutError`.

Files are written under temporary names and renamed into place, so a reader never sees
half a model. :func:`run_exported` runs any of the three on uint8 images, which is how
the tests check that an export predicts what the model in memory does.

>>> export(model, "tflite", Path("out"), ["cat", "dog"])  # doctest: +SKIP
PosixPath('out/model.tflite')
"""

from __future__ import annotations

import os
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np

from engine.errors import SproutError
from engine.files import write_labels

FORMATS = {"keras": ".keras", "savedmodel": ".zip", "tflite": ".tflite"}


def load_model(path: str | os.PathLike):
    """A ``.keras`` file as a Keras model (``safe_mode=True``: no code is deserialised)."""
    import keras

    path = Path(path)
    if not path.is_file():
        raise SproutError(f"there is no model file at {path}")
    return keras.models.load_model(path, safe_mode=True)


def _target(out: Path, fmt: str) -> Path:
    """``out`` itself when it ends with the format's suffix, else ``out/model<suffix>``."""
    out = Path(out)
    return out if out.suffix == FORMATS[fmt] else out / f"model{FORMATS[fmt]}"


def _tensorflow(fmt: str):
    try:
        import tensorflow as tf
    except ImportError as e:
        raise SproutError(f"exporting as {fmt} needs TensorFlow, which is not installed here; "
                          f"export as keras instead") from e
    return tf


def _saved_model(model, folder: Path, fmt: str) -> None:
    import keras

    _tensorflow(fmt)
    try:
        model.export(str(folder), format="tf_saved_model", verbose=False)
    except Exception as e:
        if keras.backend.backend() == "tensorflow":
            raise
        first = str(e).splitlines()[0] if str(e) else ""
        raise SproutError(f"the {keras.backend.backend()} backend could not export a SavedModel "
                          f"({type(e).__name__}: {first}); export as keras instead") from e


def _zip_folder(folder: Path, zip_path: Path, root_name: str) -> None:
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                zf.write(file, Path(root_name) / file.relative_to(folder))


def export(model_path_or_model, fmt: str, out: str | os.PathLike, labels: list[str]) -> Path:
    """Write the model in ``fmt`` ("keras", "savedmodel" or "tflite") and ``labels.json``.

    ``out`` is the file to write when it has the format's suffix (``.keras``, ``.zip``,
    ``.tflite``), otherwise a folder that gets ``model<suffix>``. A SavedModel is zipped,
    with the SavedModel folder named after the file inside. Returns the model file's path.
    """
    if fmt not in FORMATS:
        raise SproutError(f"expected an export format among {', '.join(FORMATS)}, received {fmt!r}")
    model = model_path_or_model
    if isinstance(model, (str, os.PathLike)):
        model = load_model(model)
    n_out = int(model.outputs[0].shape[-1])
    if len(labels) != n_out:
        raise SproutError(f"expected {n_out} class names for a model with {n_out} outputs, received {len(labels)}")
    target = _target(Path(out), fmt)
    target.parent.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix=".export-", dir=target.parent) as work:
        work = Path(work)
        if fmt == "keras":
            tmp = work / "model.keras"
            model.save(tmp)
        else:
            saved = work / target.stem
            _saved_model(model, saved, fmt)
            if fmt == "savedmodel":
                tmp = work / "model.zip"
                _zip_folder(saved, tmp, target.stem)
            else:
                tf = _tensorflow(fmt)
                converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
                tmp = work / "model.tflite"
                tmp.write_bytes(converter.convert())
        os.replace(tmp, target)
    write_labels(target.parent, labels)
    return target


# ----- running exports ------------------------------------------------------------------
def _interpreter(path: Path):
    try:
        from ai_edge_litert.interpreter import Interpreter  # TFLite's new home, when installed
    except ImportError:
        tf = _tensorflow("tflite")
        Interpreter = tf.lite.Interpreter
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
        return Interpreter(model_path=str(path))


def run_tflite(path: str | os.PathLike, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Class probabilities from a ``.tflite`` export for uint8 images ``(n, h, w, c)``."""
    interpreter = _interpreter(Path(path))
    inp = interpreter.get_input_details()[0]
    if inp["dtype"] != np.uint8:
        raise SproutError(f"expected a TFLite model taking uint8 images, this one takes {np.dtype(inp['dtype']).name}")
    out_index = interpreter.get_output_details()[0]["index"]
    results, current = [], None
    for start in range(0, len(images), batch_size):
        batch = np.ascontiguousarray(images[start:start + batch_size], dtype=np.uint8)
        if current != batch.shape:
            interpreter.resize_tensor_input(inp["index"], batch.shape)
            interpreter.allocate_tensors()
            current = batch.shape
        interpreter.set_tensor(inp["index"], batch)
        interpreter.invoke()
        results.append(np.array(interpreter.get_tensor(out_index), dtype=np.float32))
    return np.concatenate(results) if results else np.zeros((0, 0), np.float32)


def run_savedmodel(path: str | os.PathLike, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Class probabilities from a SavedModel (its zip as exported, or the folder)."""
    tf = _tensorflow("savedmodel")
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="sprout-savedmodel-") as work:
        folder = path
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as zf:
                zf.extractall(work)
            folder = next(p.parent for p in Path(work).rglob("saved_model.pb"))
        loaded = tf.saved_model.load(str(folder))
        results = [np.asarray(loaded.serve(tf.constant(images[start:start + batch_size], dtype=tf.uint8)), np.float32)
                   for start in range(0, len(images), batch_size)]
    return np.concatenate(results) if results else np.zeros((0, 0), np.float32)


def run_exported(path: str | os.PathLike, images: np.ndarray) -> np.ndarray:
    """Class probabilities from any export (by its suffix) for uint8 images."""
    path = Path(path)
    if path.suffix == ".keras":
        from engine.training.evaluation import predict

        return predict(load_model(path), images)
    if path.suffix == ".tflite":
        return run_tflite(path, images)
    if path.suffix == ".zip" or (path / "saved_model.pb").exists():
        return run_savedmodel(path, images)
    raise SproutError(f"expected a .keras, .zip (SavedModel) or .tflite file, received {path.name}")
