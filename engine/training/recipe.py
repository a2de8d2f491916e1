"""The training recipe: defaults chosen from the data and the device, so the user picks
only the time budget.

:func:`choose_recipe` looks at the images (size, channels, how many) and the device and
returns a :class:`Recipe`: the augmentation, batch size, learning-rate schedule and epochs
per trial, with one plain sentence per choice (the run log and the app show them).

The one choice that needs the data itself is mirroring. Mirrored photos of shoes or cats
are still shoes and cats; a mirrored 2 is not a 2. :func:`mirror_keeps_labels` decides it
with a cheap experiment: a linear classifier trained on the training images scores the
validation images as they are and mirrored. Where mirroring keeps what an image shows, the
mirrored images are still recognised well above chance; where it changes it, accuracy falls
towards chance. Measured (accuracy above chance kept after mirroring): fashion-mnist-small
63%, digits 24%; the threshold is 45%. It takes well under a second (closed-form ridge
regression on images shrunk to at most 12x12).

>>> import numpy as np
>>> x = np.zeros((1300, 16, 16, 1), np.uint8); y = np.arange(1300) % 2
>>> recipe = choose_recipe(x[:1200], y[:1200], x[1200:], y[1200:], device="CPU (2 cores)")
>>> recipe.batch_size, recipe.shift, recipe.flip
(64, 1, False)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Largest side of the images the mirror check's linear classifier sees.
MIRROR_SIDE = 12
#: Mirroring is used when the linear classifier keeps at least this share of its accuracy
#: above chance on mirrored validation images (fashion-mnist-small 0.63, 16x16 digits 0.24).
MIRROR_KEPT = 0.45
#: Below this accuracy above chance the linear classifier says nothing about mirroring.
MIRROR_MIN_SKILL = 0.05
#: Optimiser steps a trial aims at: the seed learns from scratch, a child starts from its
#: parent's weights (on fashion-mnist-small these give the 6 and 3 epochs first tuned there).
SEED_STEPS = 330
CHILD_STEPS = 165
#: Least and most epochs of a trial, whatever the steps say: a few epochs even on big data
#: (early stopping needs some), and no endless epochs on tiny data.
SEED_EPOCHS = (3, 30)
CHILD_EPOCHS = (2, 15)
#: Training images the mirror check uses at most (it is a screening test, not training).
MIRROR_MAX_IMAGES = 4000
#: From this many training images, and :data:`PLAIN_PER_CLASS` a class, the images are not augmented
#: (issue 22, bench/results/large.md): a search of minutes shows each image only a dozen times or so,
#: so its small networks underfit and augmentation slows their learning more than it prevents
#: overfitting. On fashion-mnist-full at 600 s (42,000 training images) the search without it
#: scored 0.926 against 0.913 on validation, with 21 networks trained against 16.
PLAIN_IMAGES = 10_000
PLAIN_PER_CLASS = 1_000


@dataclass(frozen=True)
class Recipe:
    """How every trial is trained; see :func:`choose_recipe`."""

    shift: int = 0                  # random translation, pixels each way
    flip: bool = False              # random left-right mirroring
    batch_size: int = 64
    schedule: str = "cosine"        # learning rate within a trial
    seed_epochs: int = 6            # the first network learns from scratch
    child_epochs: int = 3           # later networks start from their parent's weights
    final_epochs: int = 3           # fine-tune of the best network on training + validation data
    reasons: tuple[str, ...] = field(default_factory=tuple)

    def augment(self):
        from engine.training.batches import Augment

        return Augment(shift=self.shift, flip=self.flip)

    def to_dict(self) -> dict:
        return {"shift": self.shift, "flip": self.flip, "batch_size": self.batch_size, "schedule": self.schedule,
                "seed_epochs": self.seed_epochs, "child_epochs": self.child_epochs,
                "final_epochs": self.final_epochs, "reasons": list(self.reasons)}

    @staticmethod
    def from_dict(d: dict) -> "Recipe":
        known = {k: d[k] for k in ("shift", "flip", "batch_size", "schedule", "seed_epochs", "child_epochs",
                                   "final_epochs") if k in d}
        return Recipe(**known, reasons=tuple(d.get("reasons", ())))


_OVERRIDABLE = {"shift": int, "flip": bool, "batch_size": int, "schedule": str, "seed_epochs": int,
                "child_epochs": int, "final_epochs": int}


def check_overrides(overrides: dict) -> None:
    """Raise ValueError unless ``overrides`` only sets known recipe fields to sane values."""
    for key, value in overrides.items():
        if key not in _OVERRIDABLE:
            raise ValueError(f"unknown recipe setting {key!r}; expected one of {', '.join(sorted(_OVERRIDABLE))}")
        kind = _OVERRIDABLE[key]
        if kind is bool:
            if not isinstance(value, bool):
                raise ValueError(f"recipe setting {key} should be true or false; received {value!r}")
        elif kind is int:
            if (isinstance(value, bool) or not isinstance(value, int)
                    or value < (0 if key in ("shift", "final_epochs") else 1)):
                raise ValueError(f"recipe setting {key} should be a whole number of at least "
                                 f"{0 if key in ('shift', 'final_epochs') else 1}; received {value!r}")
        elif value not in ("constant", "cosine"):
            raise ValueError(f"recipe setting schedule should be 'constant' or 'cosine'; received {value!r}")


def with_overrides(recipe: Recipe, overrides: dict) -> Recipe:
    """``recipe`` with the settings in ``overrides`` replaced (checked), each one noted in its reasons."""
    if not overrides:
        return recipe
    check_overrides(overrides)
    from dataclasses import replace

    notes = tuple(f"{key} = {value} (set explicitly)" for key, value in overrides.items())
    return replace(recipe, **overrides, reasons=recipe.reasons + notes)


def parse_overrides(text: str) -> dict:
    """``"flip=false,shift=0"`` as ``{"flip": False, "shift": 0}`` (the CLI's ``--recipe``)."""
    out: dict = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or key not in _OVERRIDABLE:
            raise ValueError(f"expected key=value pairs with keys among {', '.join(sorted(_OVERRIDABLE))}; "
                             f"received {part!r}")
        kind = _OVERRIDABLE[key]
        if kind is bool:
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(f"recipe setting {key} should be true or false; received {value!r}")
            out[key] = value.lower() in ("true", "1", "yes")
        elif kind is int:
            try:
                out[key] = int(value)
            except ValueError:
                raise ValueError(f"recipe setting {key} should be a whole number; received {value!r}") from None
        else:
            out[key] = value
    check_overrides(out)
    return out


def _shrink(x: np.ndarray, side: int = MIRROR_SIDE) -> np.ndarray:
    """Float features of uint8 images ``(n, h, w, c)``: block means down to at most ``side``
    pixels a side (channels kept)."""
    n, h, w, c = x.shape
    fh, fw = max(1, h // side), max(1, w // side)
    hh, ww = (h // fh) * fh, (w // fw) * fw
    small = x[:, :hh, :ww].reshape(n, hh // fh, fh, ww // fw, fw, c).mean(axis=(2, 4), dtype=np.float32)
    return small.reshape(n, -1) / 255.0


def _ridge_accuracy(xf: np.ndarray, y: np.ndarray, xv: np.ndarray, yv: np.ndarray, n_classes: int,
                    alpha: float = 1.0) -> float:
    """Validation accuracy of a one-vs-all ridge classifier fitted in closed form."""
    mean, std = xf.mean(axis=0), xf.std(axis=0) + 1e-3
    a = np.hstack([(xf - mean) / std, np.ones((len(xf), 1), np.float32)])
    b = np.hstack([(xv - mean) / std, np.ones((len(xv), 1), np.float32)])
    targets = np.eye(n_classes, dtype=np.float32)[y]
    gram = a.T @ a + alpha * np.eye(a.shape[1], dtype=np.float32)
    weights = np.linalg.solve(gram.astype(np.float64), (a.T @ targets).astype(np.float64))
    return float(np.mean(np.argmax(b @ weights, axis=1) == yv))


def mirror_check(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
                 seed: int = 0) -> tuple[float, float, float]:
    """(chance, accuracy on the validation images, accuracy on them mirrored) of a linear
    classifier trained on the training images; see the module's docstring."""
    y_train, y_val = np.asarray(y_train, np.int64), np.asarray(y_val, np.int64)
    if len(x_train) > MIRROR_MAX_IMAGES:
        keep = np.random.default_rng(seed).choice(len(x_train), MIRROR_MAX_IMAGES, replace=False)
        x_train, y_train = x_train[keep], y_train[keep]
    n_classes = int(max(y_train.max(), y_val.max())) + 1
    chance = float(np.max(np.bincount(y_val, minlength=n_classes)) / len(y_val))
    xf = _shrink(x_train)
    plain = _ridge_accuracy(xf, y_train, _shrink(x_val), y_val, n_classes)
    mirrored = _ridge_accuracy(xf, y_train, _shrink(x_val[:, :, ::-1]), y_val, n_classes)
    return chance, plain, mirrored


def mirror_keeps_labels(x_train, y_train, x_val, y_val, seed: int = 0) -> bool:
    """Whether mirrored images keep their labels (see the module's docstring). When the
    check cannot tell (tiny data, or the linear classifier does no better than chance),
    colour images are mirrored (photos usually may be) and greyscale ones are not."""
    if len(x_val) < 20 or x_train.shape[2] < 4:
        # Too little to tell: the same fallback as a check that tells nothing. It used to be
        # "never", which took mirroring away from small colour photo sets, where an
        # augmentation that doubles the distinct images helps most (issue 21).
        return x_train.shape[3] == 3
    chance, plain, mirrored = mirror_check(x_train, y_train, x_val, y_val, seed)
    if plain - chance < MIRROR_MIN_SKILL:
        return x_train.shape[3] == 3
    return mirrored - chance >= MIRROR_KEPT * (plain - chance)


def _augmentation(x_train, y_train, x_val, y_val, seed: int, reasons: list[str]) -> tuple[int, bool]:
    """(shift, flip) for a set small enough to augment, each choice's sentence added to ``reasons``."""
    side = min(x_train.shape[1], x_train.shape[2])
    shift = max(int(round(0.07 * side)), 1) if side >= 8 else 0
    if shift:
        reasons.append(f"training images are shifted by up to {shift} pixel{'s' if shift > 1 else ''} "
                       f"so the network does not depend on where objects sit")
    flip = mirror_keeps_labels(x_train, y_train, x_val, y_val, seed)
    reasons.append("training images are mirrored at random: a quick check showed mirroring keeps their labels"
                   if flip else "images are not mirrored: a quick check showed a mirrored image may change "
                   "what it shows (as with digits or letters)")
    return shift, flip


def choose_recipe(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
                  device: str = "CPU", seed: int = 0, from_scratch: bool = True) -> Recipe:
    """The training recipe for uint8 images ``(n, h, w, c)`` on ``device`` (words such as
    ``"CPU (2 cores)"`` or ``"GPU (NVIDIA H200)"``, as ``engine.training.device.device_name`` gives).

    - shift: about 7% of the image side (2 px at 28, 1 at 16, 4 at 64), none below 8 px;
    - flip: :func:`mirror_keeps_labels`;
    - neither from :data:`PLAIN_IMAGES` training images and :data:`PLAIN_PER_CLASS` a class, for a
      search ``from_scratch`` (a pretrained start's trunk is fine-tuned with them: not measured);
    - batch size: 64 on a CPU (fastest per image on 2 cores in bench/trainer.py), 128 on a
      GPU, 32 for fewer than 1,000 training images (more steps per epoch);
    - cosine learning rate within each trial;
    - epochs from optimiser steps, not a fixed count: the first network learns from scratch
      for about :data:`SEED_STEPS` steps, a network that inherits weights trains for about
      :data:`CHILD_STEPS` (6 and 3 epochs on 3,500 images in batches of 64, 16 and 8 on
      1,260), within :data:`SEED_EPOCHS` and :data:`CHILD_EPOCHS`; the winner is fine-tuned
      on training + validation data for as long as a child.
    """
    if x_train.ndim != 4 or x_train.dtype != np.uint8:
        raise ValueError(f"expected uint8 images of shape (n, h, w, c), received {x_train.dtype} {x_train.shape}")
    n = len(x_train)
    reasons = []
    per_class = n / max(1, len(np.unique(y_train)))
    if from_scratch and n >= PLAIN_IMAGES and per_class >= PLAIN_PER_CLASS:
        shift, flip = 0, False
        reasons.append(f"training images are not shifted or mirrored: with {n:,} of them ({per_class:,.0f} a class) "
                       f"a search of minutes shows each only a few times, and augmentation would slow its "
                       f"learning more than it helps")
    else:
        shift, flip = _augmentation(x_train, y_train, x_val, y_val, seed, reasons)
    gpu = "gpu" in device.lower()
    # Few images (issue 21 looked at ~250): 32 keeps 6-8 steps an epoch rather than 2-4. The
    # BatchNorm statistics and early stopping of so short epochs are handled by the trainer
    # (engine.training.batchnorm; patience in optimiser steps), the search's validation share
    # (15%, a few dozen images) by scoring a trial on its last epochs' mean (trainer.score_of).
    batch = 32 if n < 1000 else (128 if gpu else 64)
    reasons.append(f"batches of {batch} images ({'few images' if n < 1000 else 'GPU' if gpu else 'CPU'})")
    steps = max(1, -(-n // batch))  # batches per epoch
    seed_epochs = int(np.clip(round(SEED_STEPS / steps), *SEED_EPOCHS))
    child_epochs = int(np.clip(round(CHILD_STEPS / steps), *CHILD_EPOCHS))
    reasons.append(f"the first network trains up to {seed_epochs} epochs and each grown one up to {child_epochs} "
                   f"({steps} steps an epoch)")
    return Recipe(shift=shift, flip=flip, batch_size=batch, seed_epochs=seed_epochs, child_epochs=child_epochs,
                  final_epochs=child_epochs, reasons=tuple(reasons))
