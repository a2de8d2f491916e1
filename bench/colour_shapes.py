"""A generated colour image set for benchmarks: shapes on cluttered colour backgrounds.

    python -m bench.colour_shapes OUT [--train 400] [--test 100] [--size 32] [--seed 0] \
        [--classes 6] [--vary 0]

writes ``OUT/train/<class>/*.png`` and ``OUT/test/<class>/*.png``. Six classes, one per
shape (circle, square, triangle, cross, ring, star; ``--classes N`` keeps the first N);
``--vary F`` draws each image at a random width and height within ``size * (1 +- F)``,
as photos come in varied sizes (the data module resizes them). Each image draws its shape at a
random size, place, rotation and colour over a random two-colour gradient with noise and
two smaller distractor blobs, so colour says nothing about the class and position little.
Mirroring keeps every label (all six shapes are mirror-symmetric up to rotation), which
makes it the colour counterpart of digits (where mirroring changes labels) in the search
quality benchmarks. Nothing is downloaded; the same seed gives the same files.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("circle", "square", "triangle", "cross", "ring", "star")


def _polygon(cx: float, cy: float, r: float, n: int, angle: float, inner: float | None = None) -> list[tuple]:
    points = []
    steps = n * 2 if inner else n
    for k in range(steps):
        radius = r if (inner is None or k % 2 == 0) else r * inner
        a = angle + 2 * math.pi * k / steps
        points.append((cx + radius * math.cos(a), cy + radius * math.sin(a)))
    return points


def draw(label: int, size: int, rng: np.random.Generator, shape: tuple[int, int] | None = None) -> Image.Image:
    """One image of class ``CLASSES[label]`` (drawn at 4x and reduced, for smooth edges),
    ``size`` pixels square or ``shape`` (width, height) when given."""
    s = size * 4
    a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    t = np.linspace(0, 1, s)[:, None, None]
    direction = rng.random() < 0.5
    grad = (a * (1 - t) + b * t) if direction else (a * (1 - t.transpose(1, 0, 2)) + b * t.transpose(1, 0, 2))
    background = np.broadcast_to(grad, (s, s, 3)) + rng.normal(0, 18, (s, s, 3))
    img = Image.fromarray(np.clip(background, 0, 255).astype(np.uint8))
    pen = ImageDraw.Draw(img)
    for _ in range(4):  # distractors: small blobs of random colour
        x, y, r = rng.uniform(0, s), rng.uniform(0, s), rng.uniform(0.04, 0.09) * s
        pen.ellipse([x - r, y - r, x + r, y + r], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    r = rng.uniform(0.14, 0.32) * s
    cx, cy = rng.uniform(r + 2, s - r - 2), rng.uniform(r + 2, s - r - 2)
    angle = rng.uniform(0, 2 * math.pi)
    colour = tuple(int(v) for v in rng.integers(0, 256, 3))
    name = CLASSES[label]
    if name == "circle":
        pen.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
    elif name == "ring":
        pen.ellipse([cx - r, cy - r, cx + r, cy + r], outline=colour, width=max(2, int(r * 0.3)))
    elif name == "square":
        pen.polygon(_polygon(cx, cy, r, 4, angle), fill=colour)
    elif name == "triangle":
        pen.polygon(_polygon(cx, cy, r, 3, angle), fill=colour)
    elif name == "star":
        pen.polygon(_polygon(cx, cy, r, 5, angle, inner=0.45), fill=colour)
    else:  # cross: two bars
        w = r * 0.32
        for k in range(2):
            a2 = angle + k * math.pi / 2
            dx, dy = math.cos(a2), math.sin(a2)
            px, py = -dy * w, dx * w
            pen.polygon([(cx - dx * r + px, cy - dy * r + py), (cx + dx * r + px, cy + dy * r + py),
                         (cx + dx * r - px, cy + dy * r - py), (cx - dx * r - px, cy - dy * r - py)], fill=colour)
    return img.resize(shape or (size, size), Image.LANCZOS)


def write(out: Path, n_train: int, n_test: int, size: int = 32, seed: int = 0, classes: int = len(CLASSES),
          vary: float = 0.0) -> Path:
    """Write the train and test folders of the first ``classes`` classes under ``out`` and
    return ``out``; ``vary`` > 0 gives each image a random width and height in ``size * (1 +- vary)``."""
    if not 2 <= classes <= len(CLASSES) or not 0 <= vary < 1:
        raise ValueError(f"expected 2 to {len(CLASSES)} classes and 0 <= vary < 1, received {classes} and {vary}")
    rng = np.random.default_rng(seed)
    for part, n in (("train", n_train), ("test", n_test)):
        for label, name in enumerate(CLASSES[:classes]):
            folder = out / part / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                shape = tuple(int(v) for v in np.round(size * rng.uniform(1 - vary, 1 + vary, 2))) if vary else None
                draw(label, size, rng, shape).save(folder / f"{name}_{i:04d}.png")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.colour_shapes", description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("--train", type=int, default=400, help="training images per class")
    p.add_argument("--test", type=int, default=100, help="test images per class")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--classes", type=int, default=len(CLASSES), help="the first N shapes (2 to 6)")
    p.add_argument("--vary", type=float, default=0.0, help="image sides vary by this fraction of --size")
    a = p.parse_args(argv)
    write(a.out, a.train, a.test, a.size, a.seed, a.classes, a.vary)
    print(f"wrote {a.classes} classes x ({a.train} train + {a.test} test) images to {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
