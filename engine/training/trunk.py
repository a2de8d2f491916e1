"""A pretrained trunk: the keras.applications backbone a head is searched over (issue 19).

The trunk is MobileNetV3-Small without its classifier (``include_top=False``), with its own
preprocessing inside (a Rescaling layer that maps 0-255 pixels to [-1, 1]), built-in layers
only, so a model that contains it loads with Keras' safe mode. It was picked over
EfficientNet-B0 and MobileNetV2 for its speed on 2 CPU cores (bench/results/pretrained.md).

Weights come from, in this order of the user's choice:

- a file the user names (``--pretrained PATH``): a ``.weights.h5`` / ``.h5`` of this trunk, or a
  ``.keras`` model that holds it (a trunk saved on its own, or a pretrained Sprout model);
- the ImageNet weights cached under ``SPROUT_HOME/cache/weights/``;
- the ImageNet weights downloaded into that cache on first use (Keras' ``get_file`` with
  ``cache_dir`` set, so nothing lands in ``~/.keras``). ``SPROUT_WEIGHTS_URL`` replaces the
  address; ``SPROUT_WEIGHTS_URL=none`` turns downloading off (the test suite does).

:func:`find_weights` says which one is at hand, in words, and never raises for a failed
download: the search then starts from scratch.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.training import device  # noqa: F401 - sets up the backend before Keras is first used
import keras  # noqa: E402

from engine import paths  # noqa: E402
from engine.errors import SproutError  # noqa: E402

NAME = "MobileNetV3Small"
MIN_SIZE = 32  # keras.applications' smallest input for this trunk
#: Keras' own file of ImageNet weights for MobileNetV3Small (alpha 1.0, no top), as
#: keras.applications downloads it; the hash is Keras' as well.
IMAGENET_FILE = "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5"
IMAGENET_URL = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v3/" + IMAGENET_FILE
IMAGENET_HASH = "d3e8ec802a04aa4fc771ee12a9a9b836"
URL_VARIABLE = "SPROUT_WEIGHTS_URL"
DOWNLOAD_TIMEOUT_S = 120.0  # about 4 MB
#: The trunk's last blocks, unfrozen for the final fine-tune (the rest stays as pretrained).
TOP_FROM = "expanded_conv_9"


@dataclass
class Weights:
    """Where the trunk's weights come from: ``path`` (None: none at hand), ``source``
    ("file" | "cache" | "download" | "none") and a line for people."""

    path: Path | None
    source: str
    message: str


def weights_dir() -> Path:
    """SPROUT_HOME/cache/weights: where downloaded ImageNet weights are kept."""
    return paths.cache_dir() / "weights"


def check_weights_file(path: str | os.PathLike) -> Path:
    """``path`` as a Path when it names an existing weights file Sprout can read; SproutError otherwise."""
    p = Path(path).expanduser()
    if not p.name.endswith((".weights.h5", ".h5", ".keras")):
        raise SproutError(f"expected pretrained weights as a .weights.h5, .h5 or .keras file; received {str(path)!r}")
    if not p.is_file():
        raise SproutError(f"the pretrained weights file {str(p)!r} does not exist")
    return p.resolve()


def find_weights(choice: str, download: bool = True) -> Weights:
    """The weights for ``choice`` ("auto", "none" or a file path).

    "auto": the cached ImageNet file, else a download into the cache (when ``download``);
    when neither works, ``path`` is None and ``message`` says why in plain words."""
    if choice == "none":
        return Weights(None, "none", "the pretrained start is turned off")
    if choice != "auto":
        p = check_weights_file(choice)
        return Weights(p, "file", f"{NAME} weights from {p}")
    cached = weights_dir() / IMAGENET_FILE
    if cached.is_file():
        return Weights(cached, "cache", f"ImageNet weights of {NAME} from the cache ({cached})")
    url = os.environ.get(URL_VARIABLE, IMAGENET_URL)
    if not download or url.strip().lower() in ("", "none", "off"):
        return Weights(None, "none", f"no ImageNet weights of {NAME} in the cache ({cached}) and downloading "
                                     f"is turned off")
    try:
        got = download_imagenet(url)
    except Exception as exc:  # noqa: BLE001 - offline, a proxy, a bad hash: all mean "not at hand"
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        return Weights(None, "none", f"no ImageNet weights of {NAME}: none in the cache ({cached}) and the "
                                     f"download from {url} failed ({reason})")
    return Weights(got, "download", f"ImageNet weights of {NAME} downloaded to {got}")


def download_imagenet(url: str = IMAGENET_URL, timeout_s: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """Download the ImageNet weights into :func:`weights_dir` with Keras' ``get_file`` (checked
    against Keras' hash when the address is Keras' own) and return the file's path.

    The file is fetched under a temporary name and renamed once complete, so a download cut
    short never leaves a cached file that looks whole. Keras' download has no timeout of its
    own (a network that drops packets would hang the run), so it runs in a thread that is
    given up after ``timeout_s``."""
    folder = weights_dir()
    folder.mkdir(parents=True, exist_ok=True)
    part, outcome = folder / f".{IMAGENET_FILE}.part", {}

    def fetch() -> None:
        try:
            outcome["path"] = Path(keras.utils.get_file(part.name, url, cache_dir=str(folder.parent),
                                                        cache_subdir=folder.name,
                                                        file_hash=IMAGENET_HASH if url == IMAGENET_URL else None))
        except Exception as exc:  # noqa: BLE001 - handed to the caller's thread
            outcome["error"] = exc

    worker = threading.Thread(target=fetch, name="sprout-weights-download", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise SproutError(f"the download did not finish within {timeout_s:g} s")
    if "error" in outcome:
        part.unlink(missing_ok=True)
        raise outcome["error"]
    got = outcome["path"]
    if got.resolve().parent != folder.resolve():  # get_file falls back to /tmp when the folder is not writable
        raise SproutError(f"expected the weights in {folder}, but Keras saved them to {got}")
    final = folder / IMAGENET_FILE
    os.replace(got, final)
    return final


def build_trunk(image_size: int, weights: str | os.PathLike | None = None):
    """The trunk for ``image_size`` square RGB images (float pixels 0-255 in, a feature map
    out: ``(image_size / 32, image_size / 32, 576)``), with the weights of the file
    ``weights`` or random ones when None."""
    if image_size < MIN_SIZE:
        raise SproutError(f"the pretrained trunk needs images of at least {MIN_SIZE} pixels; received {image_size}")
    trunk = keras.applications.MobileNetV3Small(input_shape=(int(image_size), int(image_size), 3), include_top=False,
                                                weights=None, include_preprocessing=True, name="trunk")
    if weights is not None:
        load_into(trunk, Path(weights))
    return trunk


def load_into(trunk, path: Path) -> None:
    """Set ``trunk``'s weights from the file ``path`` (see the module docstring for the kinds)."""
    if path.name.endswith(".keras"):
        from engine.training.export import load_model

        loaded = load_model(path)
        want = [tuple(w.shape) for w in trunk.weights]
        for candidate in [loaded, *[layer for layer in loaded.layers if isinstance(layer, keras.Model)]]:
            if [tuple(w.shape) for w in candidate.weights] == want:
                trunk.set_weights(candidate.get_weights())
                return
        raise SproutError(f"{path} holds no {NAME} trunk (include_top=False) whose weights fit; expected a trunk "
                          f"saved on its own or a Sprout model with a pretrained start")
    try:
        trunk.load_weights(str(path))
    except Exception as exc:  # noqa: BLE001 - h5py and Keras raise many kinds for a file that does not fit
        raise SproutError(f"the weights in {path} do not fit the {NAME} trunk "
                          f"({' '.join(str(exc).split())[:200]})") from None


def trunk_of(model):
    """The trunk layer inside a model made by :func:`engine.training.features.fused_model`."""
    return model.get_layer("trunk")


def set_top_trainable(trunk, top_from: str = TOP_FROM) -> int:
    """Freeze the trunk below the first layer named ``top_from...`` and unfreeze it from there;
    BatchNormalization layers stay frozen (inference mode) so a small data set cannot
    disturb their ImageNet statistics. Returns the number of trainable weight arrays."""
    trunk.trainable = True
    names = [layer.name for layer in trunk.layers]
    start = next((i for i, name in enumerate(names) if name.startswith(top_from)), len(names))
    for i, layer in enumerate(trunk.layers):
        layer.trainable = i >= start and not isinstance(layer, keras.layers.BatchNormalization)
    return len(trunk.trainable_weights)


def weights_of(trunk) -> list[np.ndarray]:
    """The trunk's weights as NumPy arrays (kept between Keras sessions)."""
    return [np.asarray(w) for w in trunk.get_weights()]
