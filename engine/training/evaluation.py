"""Scoring a trained model: class probabilities, accuracy, per-class numbers, confusion.

>>> import numpy as np
>>> scores(np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]), np.array([0, 1, 1]), ["a", "b"])["confusion"]
[[1, 0], [1, 1]]
"""

from __future__ import annotations

import numpy as np

from engine.training.batches import Batches


def predict(model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Class probabilities ``(n, n_classes)`` for the uint8 images ``x``, in batches."""
    if len(x) == 0:
        return np.zeros((0, int(model.outputs[0].shape[-1])), np.float32)
    return np.asarray(model.predict(Batches(x, None, batch_size), verbose=0), dtype=np.float32)


def evaluate(model, x: np.ndarray, y: np.ndarray, class_names: list[str], batch_size: int = 256) -> dict:
    """Accuracy, per-class numbers and the confusion matrix of ``model`` on ``(x, y)``;
    see :func:`scores`."""
    k = len(class_names)
    probs = predict(model, x, batch_size) if len(x) else np.zeros((0, k), np.float32)
    return scores(probs, y, class_names)


def scores(probs: np.ndarray, y: np.ndarray, class_names: list[str]) -> dict:
    """Accuracy, per-class numbers and the confusion matrix of the predicted probabilities
    ``probs`` ``(n, n_classes)`` against the labels ``y``.

    ``confusion[i][j]`` counts images of class ``i`` predicted as ``j``. Per class:
    ``precision`` (of the images predicted as the class, the fraction that are),
    ``recall`` (of the images of the class, the fraction found), ``accuracy`` (the
    fraction of the class's images classified correctly; equal to recall, named for the
    UI) and ``n`` (images of the class). A ratio with nothing to divide is 0.0.
    """
    k = len(class_names)
    y = np.asarray(y).astype(np.int64)
    pred = np.argmax(probs, axis=1) if len(y) else np.zeros(0, np.int64)
    confusion = np.zeros((k, k), np.int64)
    np.add.at(confusion, (y, pred), 1)
    per_class = {}
    for i, name in enumerate(class_names):
        tp, n, predicted = int(confusion[i, i]), int(confusion[i].sum()), int(confusion[:, i].sum())
        recall = tp / n if n else 0.0
        per_class[str(name)] = {"precision": tp / predicted if predicted else 0.0, "recall": recall,
                                "accuracy": recall, "n": n}
    return {"accuracy": float(np.mean(pred == y)) if len(y) else 0.0, "n": int(len(y)), "per_class": per_class,
            "confusion": confusion.tolist()}
