"""engine.data.ingest: loading labelled folders, the report, the cache, the split and the CLI."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.data import ingest as data

from engine.data import decode
from engine.data.dataset import stratified_split
from engine.data.report import DataReport
from engine.data.sample import load_sample
from engine.errors import SproutError

REPO = Path(__file__).resolve().parents[1]
FASHION = REPO.parent / "shared" / "datasets" / "fashion-mnist-small" / "train"


def write_png(path: Path, colour, size=(16, 16), mode="RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour).save(path, "PNG")
    return path


def make_classes(root: Path, counts: dict[str, int], mode="RGB") -> Path:
    """One folder per class holding ``n`` distinct PNGs."""
    for c, (name, n) in enumerate(counts.items()):
        for k in range(n):
            value = (c * 40 + k * 3) % 256
            write_png(root / name / f"{k}.png", value if mode == "L" else (value, 255 - value, c * 50), mode=mode)
    return root


def skip_reasons(report: DataReport) -> dict[str, str]:
    return {s.path: s.reason for s in report.skipped}


# ---------------------------------------------------------------------------- loading


def test_folder_loads_into_arrays(images_dir, tmp_path):
    ds = data.load(images_dir, cache_dir=tmp_path / "cache")
    assert ds.images.shape == (24, 24, 24, 3) and ds.images.dtype == np.uint8
    assert ds.labels.dtype == np.int32 and list(np.bincount(ds.labels)) == [12, 12]
    assert ds.class_names == ["circle", "square"] and ds.report.classes == ds.class_names
    assert ds.paths[0] == "circle/00.png" and ds.paths[-1] == "square/11.png"
    r = ds.report
    assert (r.n_images, r.image_size, r.channels, r.resize) == (24, 24, 3, "squash")
    assert r.counts == {"circle": 12, "square": 12} and r.skipped == [] and r.warnings == []
    assert r.size_stats["width"] == {"min": 24, "median": 24.0, "max": 24}
    assert r.source == str(images_dir) and len(r.content_hash) == 64
    # class identity survives in the pixels: circles are red, squares are blue
    first_square = ds.paths.index("square/03.png")
    assert tuple(ds.images[first_square, 0, 0]) == (0, 0, 50)
    assert tuple(ds.images[ds.paths.index("circle/03.png"), 0, 0]) == (50, 0, 0)
    json.dumps(r.to_dict())  # JSON-ready


def test_hostile_files_are_skipped_with_reasons(images_dir, tmp_path):
    cls = images_dir / "circle"
    good = (cls / "00.png").read_bytes()
    (cls / "broken.png").write_bytes(good[:8] + b"\x00\x00\x00\x0dIHDR" + b"\xff" * 17)
    jpeg = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(jpeg, "JPEG")
    (cls / "half.jpg").write_bytes(jpeg.getvalue()[:1500])
    (cls / "empty.png").write_bytes(b"")
    (cls / "list.jpg").write_text("eggs, milk")
    (cls / "notes.txt").write_text("these are circles")
    (cls / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (cls / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    write_png(images_dir / "__MACOSX" / "circle" / "._00.png", (0, 0, 0))
    write_png(images_dir / "square" / ".thumbnails" / "a.png", (0, 0, 0))
    write_png(images_dir / "stray.png", (1, 2, 3))
    report = data.inspect(images_dir, cache_dir=tmp_path / "cache")
    assert report.counts == {"circle": 12, "square": 12}
    assert skip_reasons(report) == {
        "circle/broken.png": "corrupt image",
        "circle/half.jpg": "truncated image",
        "circle/empty.png": "empty file (0 bytes)",
        "circle/list.jpg": "not an image",
        "circle/notes.txt": "not an image (.txt file)",
        "circle/.DS_Store": "hidden or system file",
        "circle/Thumbs.db": "hidden or system file",
        "__MACOSX/": "hidden or system folder",
        "square/.thumbnails/": "hidden or system folder",
        "stray.png": "not inside a class folder",
    }
    assert any("10 file(s) or folder(s) were skipped" in w for w in report.warnings)


def test_deeper_files_belong_to_the_first_level_class(images_dir, tmp_path):
    write_png(images_dir / "circle" / "more" / "deep" / "x.png", (9, 9, 9))
    ds = data.load(images_dir, cache_dir=tmp_path)
    assert ds.report.counts["circle"] == 13 and "circle/more/deep/x.png" in ds.paths


def test_wrapper_folders_above_the_classes_are_descended(tmp_path):
    make_classes(tmp_path / "dataset" / "train", {"a": 3, "b": 3})
    (tmp_path / "dataset" / "README.md").write_text("about this data")
    ds = data.load(tmp_path, cache_dir=tmp_path / "cache")
    assert ds.class_names == ["a", "b"] and ds.paths[0] == "a/0.png"
    assert skip_reasons(ds.report) == {"dataset/README.md": "not inside a class folder"}


def test_grey_and_rgb_mixed_gives_three_channels(tmp_path):
    make_classes(tmp_path / "d", {"grey": 3}, mode="L")
    write_png(tmp_path / "d" / "colour" / "c.png", (250, 10, 10))
    ds = data.load(tmp_path / "d", cache_dir=tmp_path / "cache")
    assert ds.report.channels == 3 and ds.images.shape[-1] == 3
    grey = ds.images[ds.labels == ds.class_names.index("grey")]
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()
    assert tuple(ds.images[ds.paths.index("colour/c.png"), 0, 0]) == (250, 10, 10)


def test_all_grey_gives_one_channel_and_channels_can_be_forced(tmp_path):
    make_classes(tmp_path / "d", {"a": 2, "b": 2}, mode="L")
    assert data.load(tmp_path / "d", cache_dir=tmp_path / "c").images.shape[-1] == 1
    forced = data.load(tmp_path / "d", image_size=20, channels="3", cache_dir=tmp_path / "c")
    assert forced.images.shape == (4, 20, 20, 3) and forced.report.channels == 3


def test_grey_pixels_stored_as_rgb_count_as_grey(tmp_path):
    write_png(tmp_path / "d" / "a" / "1.png", (70, 70, 70))
    write_png(tmp_path / "d" / "b" / "1.png", 30, mode="L")
    assert data.load(tmp_path / "d", cache_dir=tmp_path / "c").report.channels == 1


def test_unicode_and_spaces_in_names(tmp_path):
    write_png(tmp_path / "d" / "chats noirs" / "é 1.png", (1, 1, 1))
    write_png(tmp_path / "d" / "über straße" / "日本 語.png", (2, 2, 2))
    ds = data.load(tmp_path / "d", cache_dir=tmp_path / "c")
    assert ds.class_names == ["chats noirs", "über straße"]
    assert ds.paths == ["chats noirs/é 1.png", "über straße/日本 語.png"]


def test_symbolic_links_are_not_followed(images_dir, tmp_path):
    outside = write_png(tmp_path / "secret" / "private.png", (5, 5, 5))
    os.symlink(outside, images_dir / "circle" / "link.png")
    os.symlink(outside.parent, images_dir / "linked_class")
    ds = data.load(images_dir, cache_dir=tmp_path / "c")
    assert ds.class_names == ["circle", "square"] and ds.report.n_images == 24
    assert skip_reasons(ds.report) == {
        "circle/link.png": "symbolic link not followed",
        "linked_class": "symbolic link not followed",
    }


# ---------------------------------------------------------------------------- warnings and errors


def test_small_and_imbalanced_classes_are_warned_about(tmp_path):
    make_classes(tmp_path / "d", {"many": 12, "one": 1})
    warnings = data.inspect(tmp_path / "d", cache_dir=tmp_path / "c").warnings
    assert "Class 'one' has only 1 image; at least 10 per class is recommended." in warnings
    assert any("imbalanced" in w and "'many' has 12" in w and "'one' only 1" in w for w in warnings)


def test_duplicates_within_and_across_classes_are_named(images_dir, tmp_path):
    (images_dir / "square" / "copy of circle.png").write_bytes((images_dir / "circle" / "05.png").read_bytes())
    (images_dir / "circle" / "again.png").write_bytes((images_dir / "circle" / "07.png").read_bytes())
    warnings = data.inspect(images_dir, cache_dir=tmp_path / "c").warnings
    assert "The same image is in classes 'circle', 'square': circle/05.png, square/copy of circle.png." in warnings
    assert "Duplicate images in class 'circle': circle/07.png, circle/again.png." in warnings


def test_class_folders_named_like_splits_are_warned_about(tmp_path):
    make_classes(tmp_path / "d", {"train": 2, "test": 2})
    assert any("look like data splits" in w for w in data.inspect(tmp_path / "d", cache_dir=tmp_path).warnings)


@pytest.mark.parametrize("layout, message", [
    ({}, "no images found"),
    ({"only": 3}, r"only one class was found \('only'\)"),
])
def test_unusable_folders_raise_one_line(tmp_path, layout, message):
    (tmp_path / "d").mkdir()
    make_classes(tmp_path / "d", layout)
    with pytest.raises(SproutError, match=message) as caught:
        data.load(tmp_path / "d", cache_dir=tmp_path / "c")
    assert "\n" not in str(caught.value)


def test_folder_of_broken_files_names_the_reasons(tmp_path):
    (tmp_path / "d" / "a").mkdir(parents=True)
    (tmp_path / "d" / "a" / "x.png").write_bytes(b"")
    with pytest.raises(SproutError, match=r"no usable images found \(skipped: 1 empty file"):
        data.load(tmp_path / "d", cache_dir=tmp_path / "c")


def test_choosing_a_class_folder_says_so(images_dir, tmp_path):
    with pytest.raises(SproutError, match="12 not inside a class folder.*is this one class folder"):
        data.load(images_dir / "circle", cache_dir=tmp_path / "c")


def test_missing_path_and_non_image_file_are_errors(tmp_path):
    with pytest.raises(SproutError, match="no such folder or file"):
        data.load(tmp_path / "nowhere")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(SproutError, match="expected a folder with one sub-folder per class"):
        data.load(tmp_path / "notes.txt")
    with pytest.raises(SproutError, match="image size"):
        data.load(tmp_path, image_size=2)


# ---------------------------------------------------------------------------- cache


def test_second_load_comes_from_the_cache(images_dir, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = data.load(images_dir, cache_dir=cache)
    files = list(cache.iterdir())
    assert len(files) == 1 and files[0].suffix == ".npz"  # no temp files left behind

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again although cached")

    monkeypatch.setattr(data, "decode_native", no_decoding)
    monkeypatch.setattr(data, "probe", no_decoding)
    second = data.load(images_dir, cache_dir=cache)
    assert np.array_equal(first.images, second.images) and np.array_equal(first.labels, second.labels)
    assert second.paths == first.paths and second.report == first.report


def test_changed_content_or_options_miss_the_cache(images_dir, tmp_path):
    cache = tmp_path / "cache"
    before = data.load(images_dir, cache_dir=cache).report.content_hash
    assert data.load(images_dir, image_size=16, cache_dir=cache).images.shape[1] == 16
    write_png(images_dir / "circle" / "00.png", (1, 2, 3), size=(24, 24))
    after = data.load(images_dir, cache_dir=cache)
    assert after.report.content_hash != before and len(list(cache.iterdir())) == 3
    assert tuple(after.images[0, 0, 0]) == (1, 2, 3)


def test_a_damaged_cache_file_is_rebuilt(images_dir, tmp_path):
    first = data.load(images_dir, cache_dir=tmp_path / "c")
    (cached,) = (tmp_path / "c").iterdir()
    cached.write_bytes(cached.read_bytes()[:100])
    again = data.load(images_dir, cache_dir=tmp_path / "c")
    assert np.array_equal(first.images, again.images) and cached.stat().st_size > 100


def test_thread_pool_decoding_gives_the_same_result(images_dir, tmp_path, monkeypatch):
    serial = data.load(images_dir, cache_dir=tmp_path / "a")
    monkeypatch.setattr(decode, "THREAD_MIN_FILES", 0)
    monkeypatch.setattr(decode, "THREAD_MIN_MEAN_BYTES", 0)
    monkeypatch.setattr(decode.os, "cpu_count", lambda: 2)
    threaded = data.load(images_dir, cache_dir=tmp_path / "b")
    assert np.array_equal(serial.images, threaded.images) and serial.paths == threaded.paths


def test_default_cache_lives_under_sprout_home(images_dir):
    data.load(images_dir)
    assert len(list((Path(os.environ["SPROUT_HOME"]) / "cache").glob("dataset-*.npz"))) == 1


# ---------------------------------------------------------------------------- split


def test_split_is_stratified_disjoint_and_deterministic():
    labels = np.repeat(np.arange(4), [100, 20, 3, 2]).astype(np.int32)
    split = stratified_split(labels, test=0.15, val=0.15, seed=7)
    parts = [split.train, split.val, split.test]
    assert sorted(np.concatenate(parts).tolist()) == list(range(len(labels)))  # disjoint, complete
    assert [np.bincount(labels[p], minlength=4).tolist() for p in parts] == [
        [70, 14, 1, 2], [15, 3, 1, 0], [15, 3, 1, 0]
    ]
    again = stratified_split(labels, seed=7)
    assert all(np.array_equal(a, b) for a, b in zip(parts, [again.train, again.val, again.test]))
    other = stratified_split(labels, seed=8)
    assert not np.array_equal(split.test, other.test)


def test_split_of_a_dataset_and_bad_fractions(images_dir, tmp_path):
    ds = data.load(images_dir, cache_dir=tmp_path)
    split = ds.split(test=0.25, val=0.25, seed=0)
    assert (len(split.train), len(split.val), len(split.test)) == (12, 6, 6)
    assert split.train.dtype == np.int64
    with pytest.raises(SproutError, match="split fractions"):
        ds.split(test=0.6, val=0.5)


# ---------------------------------------------------------------------------- sample, CLI, real data


def test_sample_is_the_digits_upscaled():
    ds = data.load("sample")
    # the size a folder of 8x8 images gets (the smallest automatic size), not a fixed 32
    side = decode.choose_image_size([(8, 8)])
    assert side < 32 and ds.images.shape == (1797, side, side, 1) and ds.class_names == [str(k) for k in range(10)]
    assert data.load("sample", image_size=32).images.shape == (1797, 32, 32, 1)
    assert ds.report.source == "sample" and ds.report.size_stats["width"]["max"] == 8
    assert ds.images.max() == 255 and sum(ds.report.counts.values()) == 1797
    assert load_sample().report.content_hash == ds.report.content_hash


def test_sample_reads_exactly_scikit_learns_digits():
    from sklearn.datasets import load_digits

    from engine.data.sample import digits

    images, labels = digits()
    bunch = load_digits()
    assert np.array_equal(images, bunch.images) and np.array_equal(labels, bunch.target)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", "inspect", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_cli_inspect_prints_the_report_as_json(images_dir):
    done = run_cli(str(images_dir), "--image-size", "20", "--channels", "1")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["counts"] == {"circle": 12, "square": 12}
    assert (report["image_size"], report["channels"]) == (20, 1)


def test_cli_inspect_of_an_empty_folder_exits_2_with_one_line(tmp_path):
    done = run_cli(str(tmp_path))
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("error: no images found") and done.stderr.count("\n") == 1


@pytest.mark.skipif(not FASHION.is_dir(), reason=f"shared data set not present at {FASHION}")
def test_fashion_mnist_small_loads_fast_and_caches(tmp_path):
    start = time.perf_counter()
    ds = data.load(FASHION, cache_dir=tmp_path)
    cold = time.perf_counter() - start
    assert ds.report.counts == {c: 500 for c in ds.class_names} and len(ds.class_names) == 10
    assert ds.images.shape == (5000, 28, 28, 1) and ds.report.warnings == []
    start = time.perf_counter()
    data.load(FASHION, cache_dir=tmp_path)
    assert time.perf_counter() - start < cold
    assert cold < 10  # the target is 5 s on 2 cores; leave room for a loaded test machine


def test_a_search_keeps_one_copy_of_the_images_and_fine_tunes_on_a_view(images_dir, tmp_path):
    """Issue 22: the prepared parts are views of one uint8 array, and training + validation
    together (the fine-tune's data) is a view of it too, not a concatenated copy."""
    from engine.search.config import SearchConfig
    from engine.search.prepare import load_data, train_and_val

    prepared = load_data(str(images_dir), SearchConfig(budget_s=60, image_size=16), None)
    parts = (prepared.x_train, prepared.x_val, prepared.x_test)
    base = prepared.x_train.base
    assert base is not None and all(p.base is base for p in parts) and base.dtype == np.uint8
    assert len(base) == sum(len(p) for p in parts) == len(prepared.dataset.labels)

    decoded = data.load(str(images_dir), image_size=16)  # the data set's own order, from the cache
    labels = np.asarray(decoded.labels)
    for part, x, y in zip(("train", "val", "test"), parts, (prepared.y_train, prepared.y_val, prepared.y_test)):
        np.testing.assert_array_equal(x, decoded.images[prepared.split[part]])
        np.testing.assert_array_equal(y, labels[prepared.split[part]])

    x, y = train_and_val(prepared)
    assert x.base is base and np.shares_memory(x, prepared.x_val)
    np.testing.assert_array_equal(x, np.concatenate([prepared.x_train, prepared.x_val]))
    np.testing.assert_array_equal(y, np.concatenate([prepared.y_train, prepared.y_val]))

    # parts that do not lie side by side (features computed per part) are joined by a copy
    from dataclasses import replace

    apart = replace(prepared, x_train=prepared.x_train.copy(), x_val=prepared.x_val[::-1].copy())
    x, _ = train_and_val(apart)
    assert not np.shares_memory(x, apart.x_train)
    np.testing.assert_array_equal(x, np.concatenate([apart.x_train, apart.x_val]))
