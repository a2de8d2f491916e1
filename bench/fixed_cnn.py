"""The fixed, hand-designed CNN that a search must beat at equal wall time.

Three conv stages of 32/64/128 filters with batch norm, global average pooling, dropout,
Adam 1e-3, batch 64, trained for the whole budget; the weights of the best validation
epoch are kept (issue "Search quality"). It uses the same data, split and input pipeline
as a search (``engine.data.ingest`` and ``engine.training.batches.Batches``), so only the choice of
architecture and the use of time differ.

    python -m bench.fixed_cnn DATA --budget 270 --seed 0 --out RUN_DIR

writes ``RUN_DIR/best_model.keras``, ``labels.json`` and ``summary.json`` (with the same
``test_accuracy`` / ``wall_s`` / ``history`` keys that ``bench.compare`` reads).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def train_fixed(source, out_dir: Path, budget_s: float, seed: int = 0) -> dict:
    """Train the fixed CNN for ``budget_s`` seconds of wall time (data loading included)
    and return a summary with the internal test split's accuracy."""
    started = time.monotonic()
    import keras

    from engine.data import ingest as data
    from engine.nas.architecture import init_weights, seed_architecture
    from engine.training.model import build_model
    from engine.search.prepare import TEST_FRACTION, VAL_FRACTION
    from engine.training.batches import Batches
    from engine.training.evaluation import evaluate
    from engine.files import write_labels

    ds = data.load(source)
    split = ds.split(test=TEST_FRACTION, val=VAL_FRACTION, seed=seed)
    labels = np.asarray(ds.labels, np.int32)
    x_tr, y_tr = ds.images[split.train], labels[split.train]
    x_va, y_va = ds.images[split.val], labels[split.val]
    x_te, y_te = ds.images[split.test], labels[split.test]

    keras.utils.set_random_seed(seed)
    arch = seed_architecture(ds.images.shape[1:], len(ds.class_names), filters=(32, 64, 128), dense_units=128,
                             dropout=0.3)
    model = build_model(init_weights(arch, seed))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    deadline = started + budget_s
    # Reserve time for the closing evaluation and save: about one validation pass.
    reserve = 3.0

    class _Budget(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.best, self.best_weights, self.history = -1.0, None, []

        def on_train_batch_end(self, batch, logs=None):
            if time.monotonic() > deadline - reserve:
                self.model.stop_training = True

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            self.history.append({k: float(v) for k, v in logs.items()} | {"t": time.monotonic() - started})
            if "val_accuracy" in logs and logs["val_accuracy"] > self.best:
                self.best, self.best_weights = float(logs["val_accuracy"]), self.model.get_weights()

    budget = _Budget()
    model.fit(Batches(x_tr, y_tr, 64, shuffle=True, seed=seed), validation_data=Batches(x_va, y_va, 128),
              epochs=10_000, verbose=0, callbacks=[budget])
    if budget.best_weights is not None:
        model.set_weights(budget.best_weights)
    result = evaluate(model, x_te, y_te, list(ds.class_names))
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save(out_dir / "best_model.keras")
    write_labels(out_dir, list(ds.class_names))  # a plain list, as `engine evaluate` reads it
    summary = {"method": "fixed", "seed": seed, "budget_s": budget_s, "wall_s": time.monotonic() - started,
               "test_accuracy": float(result["accuracy"]), "best_val_accuracy": budget.best,
               "epochs": len(budget.history), "history": budget.history, "n_params": int(model.count_params())}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.fixed_cnn")
    p.add_argument("data")
    p.add_argument("--budget", type=float, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    s = train_fixed(a.data, a.out, a.budget, a.seed)
    print(f"fixed CNN: test {s['test_accuracy']:.4f}, {s['epochs']} epochs, {s['wall_s']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
