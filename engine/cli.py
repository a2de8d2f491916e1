"""Command-line interface: ``python -m engine <command> ...``.

Each command lives in a small function here that calls the library; errors the user can
fix (:class:`engine.errors.SproutError`) print one line on stderr and exit with status 2.
The engine names settings by their field names (``max_epochs``); :func:`flag_words` turns
those into this command line's flags (``--max-epochs``) in the line printed.
"""

from __future__ import annotations

import argparse
import json
import re
import sys

from engine.errors import SproutError

#: field names in the engine's error messages -> the flags that set them on this command line
FLAGS = {"budget_s": "--budget", "max_epochs": "--max-epochs", "max_trials": "--max-trials",
         "image_size": "--image-size", "out_dir": "--out", "resume=True": "--resume", "workers": "--workers",
         "executor": "--executor", "fidelities": "--fidelities"}


def flag_words(message: str) -> str:
    """``message`` with every field name of :data:`FLAGS` (as a whole word) replaced by its flag."""
    for field, flag in FLAGS.items():
        # not inside a longer name or a path (a run folder may be called out_dir)
        message = re.sub(rf"(?<![\w./-]){re.escape(field)}(?![\w/])", flag, message)
    return message


def _cmd_inspect(args: argparse.Namespace) -> int:
    from engine.data import ingest as data

    report = data.inspect(args.data, image_size=args.image_size, channels=args.channels)
    json.dump(report.to_dict(), sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
    return 0


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, received {text!r}") from None
    if not (value > 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, received {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, received {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, received {text!r}")
    return value


def _cmd_search(args: argparse.Namespace) -> int:
    import signal
    import threading

    from engine.search.loop import SearchConfig, run_search

    if args.budget is None and not args.resume:
        raise SproutError("the search needs a time budget: --budget SECONDS")
    config = SearchConfig(budget_s=args.budget, searcher=args.searcher, seed=args.seed,
                          image_size=args.image_size, max_epochs=args.max_epochs, max_trials=args.max_trials,
                          recipe=args.recipe, pretrained=args.pretrained, workers=args.workers,
                          executor=args.executor, ray_address=args.ray_address, fidelities=args.fidelities,
                          levers={k: v for d in args.search_option or [] for k, v in d.items()} or None)
    stop = threading.Event()

    def on_signal(signum, frame):  # first Ctrl-C / SIGTERM: finish the batch, save the best model
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print("stopping: the best network so far will be evaluated and saved", file=sys.stderr, flush=True)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}

    def show(event: dict) -> None:
        if event["type"] == "log":
            print(event["message"], flush=True)

    try:
        summary = run_search(args.data, args.out, config, events=show, stop=stop, resume=args.resume)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    best = summary.get("best")
    if best is None:
        print(f"stopped before any network finished training ({summary['wall_s']:.1f} s)", flush=True)
    else:
        test = summary.get("test_accuracy")
        print(f"best: trial {best['trial_id']} ({best['summary']}), val {best['val_accuracy']:.3f}, "
              f"test {test:.3f}; {summary['n_trials']} trials in {summary['wall_s']:.1f} s; "
              f"model: {summary['files']['keras']}", flush=True)
    code = 130 if stop.is_set() else 0
    _exit_now_if_main(code)
    return code


def _exit_now_if_main(code: int) -> None:
    """Under ``python -m engine``, leave without TensorFlow's slow interpreter teardown (seconds
    of the time budget on a busy CPU): every file of the run is already written and fsynced."""
    main_module = sys.modules.get("__main__")
    spec = getattr(main_module, "__spec__", None)
    if spec is not None and spec.name == "engine.__main__":
        import os

        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


class _QuietStderr:
    """Send file descriptor 2 to a temporary file while TensorFlow starts: its C++ start-up
    lines ignore every logging setting. What was captured is shown again if something other
    than a SproutError escapes, so real failures keep their evidence."""

    def __enter__(self):
        import os
        import tempfile

        sys.stderr.flush()
        self.saved = os.dup(2)
        self.tmp = tempfile.TemporaryFile()
        os.dup2(self.tmp.fileno(), 2)
        return self

    def __exit__(self, exc_type, exc, tb):
        import os

        sys.stderr.flush()
        os.dup2(self.saved, 2)
        os.close(self.saved)
        if exc_type is not None and not issubclass(exc_type, SproutError):
            self.tmp.seek(0)
            sys.stderr.write(self.tmp.read().decode("utf-8", errors="replace"))
        self.tmp.close()
        return False


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np

    from engine.data import ingest as data
    from engine.files import LABELS, read_labels

    model_path = Path(args.model)
    if not model_path.is_file():
        raise SproutError(f"there is no model file at {model_path}")
    labels = read_labels(model_path.parent) if (model_path.parent / LABELS).exists() else None
    with _QuietStderr():
        from engine.training.evaluation import evaluate
        from engine.training.export import load_model

        try:
            model = load_model(model_path)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
            raise SproutError(f"{model_path} is not a Keras model that can be loaded ({type(exc).__name__})") from None
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4 or shape[1] != shape[2] or shape[3] not in (1, 3):
        raise SproutError(f"{model_path} does not take square images with 1 or 3 channels (input {shape})")
    n_out = int(model.outputs[0].shape[-1])
    ds = data.load(args.data, image_size=int(shape[1]), channels=int(shape[3]))
    names = labels if labels else list(ds.class_names)
    if len(names) != n_out:
        raise SproutError(f"the model has {n_out} outputs but labels.json names {len(names)} classes")
    unknown = [c for c in ds.class_names if c not in names]
    if unknown:
        raise SproutError(f"the data has classes the model does not know: {', '.join(unknown[:5])}")
    index = {name: i for i, name in enumerate(names)}
    y = np.array([index[ds.class_names[int(k)]] for k in ds.labels], dtype=np.int64)
    with _QuietStderr():
        result = evaluate(model, ds.images, y, names)
    json.dump(result, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from engine.search.folder import RunFolder, is_run_folder

    run = Path(args.run_dir)
    if not is_run_folder(run):
        raise SproutError(f"{run} is not a Sprout run folder (it has no state.json or trials.jsonl)")
    model_path = run / "best_model.keras"
    if not model_path.is_file():
        raise SproutError(f"{run} has no best_model.keras yet: the run has not finished")
    labels = RunFolder(run).read_labels()
    with _QuietStderr():
        from engine.training.export import export

        out = export(model_path, args.format, Path(args.out), labels)
    print(out)
    return 0


def app_command(port: int = 8501) -> list[str]:
    """The command line that starts the app: ``streamlit run`` on app.py beside ``engine/`` (a
    checkout or an editable install) or in ``sprout_app/`` beside it (after ``pip install .``),
    on 127.0.0.1:``port``; app.py's own ``.streamlit/config.toml`` sits beside it and is read too."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    for app in (root / "app.py", root / "sprout_app" / "app.py"):
        if app.is_file():
            return [sys.executable, "-m", "streamlit", "run", str(app),
                    "--server.address", "127.0.0.1", "--server.port", str(port)]
    raise SproutError(f"expected the app at {root / 'app.py'} or {root / 'sprout_app' / 'app.py'}, "
                      "found neither: reinstall Sprout")


def _cmd_app(args: argparse.Namespace) -> int:
    import os

    argv = app_command(args.port)
    # The same environment as scripts/app.sh: quiet TensorFlow start-up, the sample ready.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("SPROUT_START_WITH_SAMPLE", "1")
    sys.stdout.flush()
    os.execv(argv[0], argv)  # streamlit takes over this process, Ctrl-C included
    return 0  # pragma: no cover - execv does not return


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line on stderr and exit status 2."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _recipe(text: str) -> dict:
    from engine.training.recipe import parse_overrides

    try:
        return parse_overrides(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _fractions(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected fractions separated by commas, e.g. 0.25,1; "
                                         f"received {text!r}") from None


def _search_option(text: str) -> dict:
    from engine.nas.levers import parse

    try:
        return parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m engine", description="Sprout's search engine.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("inspect", help="report on a labelled image folder or zip, as JSON")
    p.add_argument("data", help="a folder with one sub-folder per class, or a .zip of one")
    p.add_argument("--image-size", type=int, default=None,
                   help="side of the square input (default: chosen from the data)")
    p.add_argument("--channels", choices=["auto", "1", "3"], default="auto")
    p.set_defaults(func=_cmd_inspect)

    p = sub.add_parser("search", help="search for a network within a time budget; writes a run folder")
    p.add_argument("data", help='a labelled image folder, a .zip of one, or "sample" (the built-in digits)')
    p.add_argument("--out", required=True,
                   help="the run folder to write (new or empty; with --resume, the run to continue)")
    p.add_argument("--budget", type=_positive_float, default=None,
                   help="seconds for everything, final model included "
                        "(required unless --resume: a resumed run keeps its budget)")
    p.add_argument("--searcher", choices=["bayesian", "random", "bfs"], default="bayesian")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-size", type=_positive_int, default=None,
                   help="side of the square input (default: chosen from the data)")
    p.add_argument("--max-epochs", type=_positive_int, default=None,
                   help="most epochs per trial (default: the recipe's, more for the seed network "
                        "than for those that inherit weights)")
    p.add_argument("--recipe", type=_recipe, default=None, metavar="KEY=VALUE,...",
                   help="override the training recipe chosen from the data, e.g. flip=false,shift=0 "
                        "(keys: shift, flip, batch_size, schedule, seed_epochs, child_epochs, final_epochs)")
    p.add_argument("--search-option", type=_search_option, action="append", metavar="KEY=VALUE",
                   help="switch one of the search's levers (issue 14), e.g. score=kept or distance=weighted; "
                        "repeatable (engine/nas/levers.py lists them)")
    p.add_argument("--max-trials", type=_positive_int, default=None,
                   help="stop proposing after this many trials (default: the budget decides)")
    p.add_argument("--fidelities", type=_fractions, default=None, metavar="F,...",
                   help="shares of the training images new networks train on before the best are promoted, "
                        "e.g. 0.0625,0.25,1 (default: chosen from the data's size and the device's speed; "
                        "small sets always train on all of them)")
    p.add_argument("--pretrained", default="auto", metavar="auto|none|PATH",
                   help="start from a pretrained MobileNetV3-Small trunk and search the head over it: auto (the "
                        "default: for colour photos of 64 px or more, with ImageNet weights cached under "
                        "SPROUT_HOME/cache/weights or downloaded there once), none (search from scratch), or a "
                        ".weights.h5 / .keras file of the trunk")
    p.add_argument("--workers", type=_positive_int, default=None,
                   help="trials that train at once (default: one per GPU, else 1: TensorFlow already uses "
                        "every core for one network)")
    p.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="where trials train: local worker processes, or Ray tasks (pip install 'sprout[ray]')")
    p.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="the Ray cluster to use with --executor ray (default: start a local Ray instance)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out after a crash")
    p.set_defaults(func=_cmd_search)

    p = sub.add_parser("evaluate", help="accuracy of a saved model on a labelled image folder, as JSON")
    p.add_argument("model", help="a .keras file (labels.json beside it names the classes)")
    p.add_argument("data", help='a labelled image folder, a .zip of one, or "sample"')
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("export", help="export a run's best model")
    p.add_argument("run_dir", help="a finished run folder")
    p.add_argument("--format", choices=["keras", "savedmodel", "tflite"], default="keras")
    p.add_argument("--out", required=True, help="where to write the exported model")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("app", help="start the app in the browser on http://127.0.0.1:PORT")
    p.add_argument("--port", type=_positive_int, default=8501)
    p.set_defaults(func=_cmd_app)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except SproutError as exc:
        print(f"error: {flag_words(str(exc))}", file=sys.stderr)
        return 2
