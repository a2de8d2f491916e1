"""Stand-ins for the search worker (engine/search/worker.py), started by a Registry in tests as
``[sys.executable, "-m", "tests.fake_worker", MODE]`` followed by the worker's own arguments.

- ``hold``: no TensorFlow, no search. Sends "started" and "trial_started" for trial 0, then
  waits until the run folder holds a file named ``release`` (then finishes "done") or a
  SIGTERM comes (then finishes "stopped"). Starts in a fraction of a second: for the queue.
- ``deaf``: as ``hold``, but ignores SIGTERM (a worker that does not answer a stop).
- ``parallel``: as ``hold``, with trial 0 finished and trials 1 and 2, grown from it, in
  training at once (parallel trials, issue 17), each one epoch in and with a prediction.
- ``quick``: no TensorFlow, no training: a whole search told in events within a second (three
  networks, a final test), with accuracies that depend on the searcher (:data:`QUICK_ACCURACY`):
  for pages that show finished runs, such as a race.
- ``search``: the real worker with :class:`tests.helpers.FakeTrainer` in place of training
  (``FAKE_EPOCH_S`` seconds per epoch): real run folders, real resume, no real training.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path


def hold(run_dir: Path, deaf: bool = False, parallel: bool = False) -> int:
    from engine.search.worker import EVENTS, EventWriter

    stop = threading.Event()
    signal.signal(signal.SIGTERM, signal.SIG_IGN if deaf else (lambda *_: stop.set()))
    emit = EventWriter(run_dir / EVENTS)
    emit({"type": "started", "searcher": "random", "device": "CPU (fake)", "class_names": ["a", "b"],
          "image_size": 8, "channels": 1, "pid": os.getpid()})
    starts = [("1", "0"), ("2", "0")] if parallel else [("0", None)]
    if parallel:
        emit({"type": "trial_finished", "trial": {"id": "0", "parent_id": None, "status": "ok", "val_accuracy": 0.5}})
    for k, (trial_id, parent_id) in enumerate(starts):
        proposal = {"ancestor_id": parent_id, "operations": [], "mean": 0.6 + 0.1 * k, "sigma": 0.05,
                    "reason": f"the reason for network {trial_id}"} if parent_id else None
        emit({"type": "trial_started", "trial_id": trial_id, "parent_id": parent_id, "max_epochs": 3 if parallel else 1,
              "proposal": proposal})
        if parallel:
            emit({"type": "epoch", "trial_id": trial_id, "epoch": 1, "logs": {}})
    while not stop.is_set() and not (run_dir / "release").exists():
        time.sleep(0.02)
    status = "stopped" if stop.is_set() else "done"
    for trial_id, parent_id in starts:
        emit({"type": "trial_finished", "trial": {"id": trial_id, "parent_id": parent_id, "status": "ok",
                                                  "val_accuracy": 0.5}})
    emit({"type": "finished", "summary": {"status": status, "wall_s": 0.1}})
    return 0


QUICK_ACCURACY = {"bayesian": 0.9, "bfs": 0.84, "random": 0.8}  # each run's best; its test accuracy too


def quick(run_dir: Path, config: dict) -> int:
    import numpy as np

    from engine.nas.architecture import seed_architecture
    from engine.nas.morphism import random_morph
    from engine.search.worker import EVENTS, EventWriter

    searcher = config.get("searcher", "random")
    best = QUICK_ACCURACY[searcher]
    emit = EventWriter(run_dir / EVENTS)
    emit({"type": "started", "searcher": searcher, "device": "CPU (fake)", "class_names": ["a", "b"],
          "image_size": 8, "channels": 1, "budget_s": config.get("budget_s"), "elapsed_s": 0.0})
    arch, rng = seed_architecture((8, 8, 1), 2), np.random.default_rng(0)
    for k, acc in enumerate((best - 0.2, best - 0.1, best)):
        if k:
            arch = random_morph(arch, rng) or arch
        emit({"type": "trial_finished", "trial": {
            "id": str(k), "parent_id": str(k - 1) if k else None, "status": "ok", "val_accuracy": acc,
            "operations": [], "finished_s": 10.0 * (k + 1), "architecture": arch.to_dict()}})
        time.sleep(0.05)
    final = {"test_accuracy": best, "per_class": {}, "confusion": [], "misclassified": []}
    emit({"type": "final", "final": final, "files": {"keras": None, "labels": None}})
    emit({"type": "finished", "summary": {"status": "done", "wall_s": 30.0, "final": final}})
    return 0


def search(argv: list[str]) -> int:
    from engine.search import worker
    from engine.training import trainer
    from tests.helpers import FakeTrainer

    trainer.train = FakeTrainer(epoch_s=float(os.environ.get("FAKE_EPOCH_S", "0.01")))
    return worker.main(argv)


if __name__ == "__main__":
    mode, rest = sys.argv[1], sys.argv[2:]
    if mode in ("hold", "deaf", "parallel"):
        sys.exit(hold(Path(rest[0]), deaf=mode == "deaf", parallel=mode == "parallel"))
    if mode == "search":
        sys.exit(search(rest))
    if mode == "quick":
        sys.exit(quick(Path(rest[0]), json.loads(rest[2])))
    print(f"expected a mode, hold, deaf, parallel, quick or search; received {json.dumps(mode)}", file=sys.stderr)
    sys.exit(2)
