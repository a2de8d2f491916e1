"""engine.data.sources via engine.data.ingest: zips, upload lists, safe names, safe extraction, limits."""

from __future__ import annotations

import io
import uuid
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.data import ingest as data

from engine.data import sources, store
from engine.data.dataset import Dataset
from engine.errors import SproutError
from engine.data.sources import SourceLimits
from tests.helpers import write_zip


def tree_files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` as {relative posix path: bytes}."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def png_bytes(colour) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (10, 10), colour).save(buffer, "PNG")
    return buffer.getvalue()


def same_dataset(a: Dataset, b: Dataset) -> bool:
    ra, rb = a.report.to_dict(), b.report.to_dict()
    ra.pop("source"), rb.pop("source")
    return (np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
            and a.paths == b.paths and a.class_names == b.class_names and ra == rb)


# ---------------------------------------------------------------------------- equal results from every source


def test_zip_with_top_folder_and_macosx_equals_the_folder(images_dir, tmp_path):
    members = {f"photos/{k}": v for k, v in tree_files(images_dir).items()}
    members["__MACOSX/photos/circle/._00.png"] = b"\x00\x05\x16\x07"
    archive = write_zip(tmp_path / "photos.zip", members)
    from_zip = data.load(archive, cache_dir=tmp_path / "c1")
    from_folder = data.load(images_dir, cache_dir=tmp_path / "c2")
    assert [(s.path, s.reason) for s in from_zip.report.skipped] == [("__MACOSX/", "hidden or system folder")]
    from_zip.report.skipped = []
    from_zip.report.warnings = [w for w in from_zip.report.warnings if "skipped" not in w]
    from_zip.report.content_hash = from_folder.report.content_hash
    assert same_dataset(from_zip, from_folder)
    assert from_zip.report.source == str(archive)


def test_upload_list_equals_the_folder(images_dir, tmp_path):
    upload = [(f"my photos/{k}", v) for k, v in tree_files(images_dir).items()]
    from_upload = data.load(upload, cache_dir=tmp_path / "c1")
    from_folder = data.load(images_dir, cache_dir=tmp_path / "c2")
    assert same_dataset(from_upload, from_folder)
    assert from_upload.report.source == "upload (24 files)"


def test_saved_upload_loads_like_the_upload(images_dir, tmp_path):
    upload = [(f"photos/{k}", v) for k, v in tree_files(images_dir).items()]
    dest = store.save_upload(upload, tmp_path / "uploads" / "u1")
    assert dest == tmp_path / "uploads" / "u1" and (dest / "photos" / "circle" / "00.png").is_file()
    assert same_dataset(data.load(dest, cache_dir=tmp_path / "c1"), data.load(upload, cache_dir=tmp_path / "c2"))


def test_extract_zip_returns_the_folder_holding_the_classes(images_dir, tmp_path):
    members = {f"outer/photos/{k}": v for k, v in tree_files(images_dir).items()}
    root = store.extract_zip(write_zip(tmp_path / "p.zip", members), tmp_path / "out")
    assert root == tmp_path / "out" / "outer" / "photos"
    assert tree_files(root) == tree_files(images_dir)


# ---------------------------------------------------------------------------- zip safety


def zip_slip_members() -> dict[str, bytes]:
    token = uuid.uuid4().hex
    return {
        "a/1.png": png_bytes((1, 0, 0)), "b/1.png": png_bytes((0, 1, 0)),
        "../evil.png": png_bytes((9, 9, 9)), f"/tmp/abs-{token}.png": png_bytes((9, 9, 9)),
        "a/../../up.png": png_bytes((9, 9, 9)), "C:/windows.png": png_bytes((9, 9, 9)),
    }


def test_zip_slip_entries_are_skipped_when_loading(tmp_path):
    members = zip_slip_members()
    report = data.inspect(write_zip(tmp_path / "z.zip", members), cache_dir=tmp_path / "c")
    assert report.counts == {"a": 1, "b": 1}
    unsafe = {s.path for s in report.skipped if s.reason == sources.UNSAFE_ZIP_PATH}
    assert unsafe == set(members) - {"a/1.png", "b/1.png"}


def test_zip_slip_entries_are_never_written(tmp_path):
    members = zip_slip_members()
    dest = tmp_path / "deep" / "out"
    root = store.extract_zip(write_zip(tmp_path / "z.zip", members), dest)
    assert root == dest and tree_files(dest).keys() == {"a/1.png", "b/1.png"}
    assert not (tmp_path / "deep" / "evil.png").exists() and not (tmp_path / "up.png").exists()
    absolute = next(name for name in members if name.startswith("/tmp/"))
    assert not Path(absolute).exists()


def test_zip_symlink_entries_are_skipped(tmp_path):
    archive = write_zip(tmp_path / "z.zip", {"a/1.png": png_bytes((1, 0, 0)), "b/1.png": png_bytes((0, 1, 0))},
                        symlinks={"a/passwd.png": "/etc/passwd"})
    report = data.inspect(archive, cache_dir=tmp_path / "c")
    assert {(s.path, s.reason) for s in report.skipped} == {("a/passwd.png", "symbolic link not followed")}
    root = store.extract_zip(archive, tmp_path / "out")
    assert not (root / "a" / "passwd.png").exists()


def test_zip_bomb_stops_at_the_byte_limit(tmp_path):
    zeros = bytes(2 * 1024 * 1024)  # compresses to a few KiB
    archive = write_zip(tmp_path / "bomb.zip", {f"c{k}/z.png": zeros for k in range(3)})
    assert archive.stat().st_size < 100_000
    small = SourceLimits(max_total_bytes=1024 * 1024)
    with pytest.raises(SproutError, match=r"too large: .*6\.0 MiB.* the limit is 1\.0 MiB"):
        data.load(archive, limits=small, cache_dir=tmp_path / "c")
    with pytest.raises(SproutError, match="limit is 1.0 MiB"):
        store.extract_zip(archive, tmp_path / "out", limits=small)
    assert not (tmp_path / "out").exists()  # the declared sizes are checked before anything is written


def test_zip_with_too_many_entries_stops_at_the_count_limit(tmp_path):
    archive = write_zip(tmp_path / "many.zip", {f"c{k % 2}/{k}.png": b"x" for k in range(12)})
    with pytest.raises(SproutError, match="12 files, the limit is 10"):
        data.load(archive, limits=SourceLimits(max_files=10), cache_dir=tmp_path / "c")
    with pytest.raises(SproutError, match="12 files, the limit is 10"):
        store.extract_zip(archive, tmp_path / "out", limits=SourceLimits(max_files=10))


def test_bytes_written_while_extracting_are_counted(tmp_path, monkeypatch):
    archive = write_zip(tmp_path / "z.zip", {"a/1.png": bytes(300_000), "b/1.png": bytes(300_000)})
    # Pretend the central directory understated the sizes: the copy loop must still stop.
    monkeypatch.setattr(store, "check_limits", lambda *args: None)
    with pytest.raises(SproutError, match="beyond the size limit"):
        store.extract_zip(archive, tmp_path / "out", limits=SourceLimits(max_total_bytes=400_000))


def test_corrupt_zip_member_is_skipped(tmp_path):
    good, bad = png_bytes((1, 0, 0)), png_bytes((0, 9, 0))
    archive = tmp_path / "z.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as z:
        z.writestr("a/1.png", good), z.writestr("b/1.png", good[:-1] + b"!"), z.writestr("b/2.png", bad)
    raw = archive.read_bytes()
    archive.write_bytes(raw.replace(bad[40:60], bytes(20), 1))  # stored bytes no longer match the CRC
    report = data.inspect(archive, cache_dir=tmp_path / "c")
    assert report.counts == {"a": 1, "b": 1}
    assert [(s.path, s.reason.split(" (")[0]) for s in report.skipped] == [("b/2.png", "cannot be read")]
    root = store.extract_zip(archive, tmp_path / "out")
    assert sorted(tree_files(root)) == ["a/1.png", "b/1.png"]


def test_a_file_that_is_not_a_zip_is_an_error(tmp_path):
    fake = tmp_path / "photos.zip"
    fake.write_text("not a zip at all")
    with pytest.raises(SproutError, match="'photos.zip' is not a valid zip file"):
        data.load(fake)
    with pytest.raises(SproutError, match="not a valid zip file"):
        store.extract_zip(fake, tmp_path / "out")


# ---------------------------------------------------------------------------- names


@pytest.mark.parametrize("name, expected", [
    ("photos/cat/a.jpg", "photos/cat/a.jpg"),
    ("C:\\Users\\me\\cat\\a.jpg", "Users/me/cat/a.jpg"),
    ("/etc/cat/a.jpg", "etc/cat/a.jpg"),
    ("../../cat/./a.jpg", "cat/a.jpg"),
    ("cat/a\x00b\x1f.jpg", "cat/ab.jpg"),
    ("  chats noirs /  été 1.jpg", "chats noirs/été 1.jpg"),
    ("cat/what?.jpg", "cat/what_.jpg"),
    ("cat/trailing dots...", "cat/trailing dots"),
    ("../..", ""),
])
def test_uploaded_names_are_sanitised(name, expected):
    assert sources.sanitise_path(name) == expected


def test_save_upload_writes_only_under_dest(tmp_path):
    dest = tmp_path / "box" / "inner"
    files = [("../../evil.png", b"1"), ("/abs/x.png", b"2"), ("C:\\win\\y.png", b"3"),
             ("cat/a.png", b"4"), ("cat/a.png", b"5"), ("..", b"6")]
    store.save_upload(files, dest)
    assert tree_files(tmp_path) == {
        "box/inner/evil.png": b"1", "box/inner/abs/x.png": b"2", "box/inner/win/y.png": b"3",
        "box/inner/cat/a.png": b"4", "box/inner/cat/a (2).png": b"5",
    }


def test_upload_list_with_clashing_or_empty_names(tmp_path):
    upload = [("p/a/1.png", png_bytes((1, 1, 1))), ("p\\a\\1.png", png_bytes((2, 2, 2))),
              ("p/b/1.png", png_bytes((3, 3, 3))), ("..", b"")]
    report = data.inspect(upload, cache_dir=tmp_path)
    assert report.counts == {"a": 1, "b": 1}
    assert {(s.path, s.reason) for s in report.skipped} == {("a/1.png", "duplicate file name"),
                                                             ("..", "invalid file name")}


@pytest.mark.parametrize("paths, prefix", [
    (["cat/1.png", "dog/1.png"], ""),
    (["photos/cat/1.png", "photos/dog/1.png", "__MACOSX/photos/._x", "photos/.DS_Store"], "photos/"),
    (["d/README.md", "d/train/cat/1.png", "d/train/dog/1.png"], "d/train/"),
    (["d/train/cat/1.png", "d/test/cat/1.png"], "d/"),
    (["cat/1.png", "cat/sub/2.png"], ""),  # a lone folder with images in it is a class
    (["top.png", "x/cat/1.png"], ""),
])
def test_data_root_rule(paths, prefix):
    assert sources.find_data_root(paths) == prefix
