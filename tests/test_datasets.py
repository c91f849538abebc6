"""Dataset resolution: manifests, verified downloads (file:// URLs), offline messages, sample, folders."""

import hashlib
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench import datasets
from bench.datasets import DatasetError, resolve_dataset
from bench.datasets.images import pixel_sha256

from .conftest import photo


def make_manifest(source: Path, names: list[str]) -> dict:
    files = []
    for name in names:
        rgb = np.asarray(Image.open(source / name).convert("RGB"))
        files.append({"path": name, "url": (source / name).as_uri(), "pixel_sha256": pixel_sha256(rgb)})
    return {"name": "mini", "description": "test", "homepage": "https://example.org/mini", "files": files}


def test_download_and_verify_by_pixels(image_folder, tmp_path):
    manifest = make_manifest(image_folder, ["astronaut.png", "coffee.png"])
    cache = tmp_path / "cache" / "mini"
    ds = datasets._resolve_files(manifest, cache, allow_download=True)
    assert [s.name for s in ds.sources] == ["astronaut", "coffee"]
    assert (cache / "coffee.png").is_file()
    # A lossless re-encode (different file bytes, same pixels) is accepted.
    Image.open(cache / "coffee.png").save(cache / "coffee.png", optimize=True, compress_level=1)
    datasets._resolve_files(manifest, cache, allow_download=False)


def test_checksum_mismatch_rejected(image_folder, tmp_path):
    manifest = make_manifest(image_folder, ["astronaut.png"])
    manifest["files"][0]["pixel_sha256"] = "0" * 64
    cache = tmp_path / "cache" / "mini"
    with pytest.raises(DatasetError, match=r"downloaded file rejected.*do not match the manifest"):
        datasets._resolve_files(manifest, cache, allow_download=True)
    assert not (cache / "astronaut.png").exists(), "a rejected download must not stay in the cache"
    # A file already present with the wrong pixels is reported, not used.
    cache.mkdir(parents=True, exist_ok=True)
    Image.fromarray(photo(50, 60)).save(cache / "astronaut.png")
    with pytest.raises(DatasetError, match="failed verification"):
        datasets._resolve_files(manifest, cache, allow_download=False)


def test_download_and_verify_by_file_bytes(image_folder, tmp_path):
    """JPEG entries carry the file's sha256: a re-encode is rejected even though it is an image."""
    Image.open(image_folder / "coffee.png").convert("RGB").save(tmp_path / "coffee.jpg", quality=90)
    entry = {"path": "coffee.jpg", "url": (tmp_path / "coffee.jpg").as_uri(),
             "sha256": hashlib.sha256((tmp_path / "coffee.jpg").read_bytes()).hexdigest()}
    manifest = {"name": "jpegs", "files": [entry]}
    cache = tmp_path / "cache" / "jpegs"
    assert [s.name for s in datasets._resolve_files(manifest, cache, allow_download=True).sources] == ["coffee"]
    Image.open(cache / "coffee.jpg").save(cache / "coffee.jpg", quality=89)
    with pytest.raises(DatasetError, match=r"coffee.jpg: file bytes do not match the manifest"):
        datasets._resolve_files(manifest, cache, allow_download=False)


def test_offline_message_names_missing_files_and_folder(image_folder, tmp_path):
    manifest = make_manifest(image_folder, ["astronaut.png", "coffee.png"])
    for f in manifest["files"]:
        f["url"] = (tmp_path / "offline" / f["path"]).as_uri()  # unreachable
    cache = tmp_path / "cache" / "mini"
    with pytest.raises(DatasetError) as err:
        datasets._resolve_files(manifest, cache, allow_download=True)
    text = str(err.value)
    assert "2 of 2 files are missing" in text and str(cache) in text
    assert "astronaut.png, coffee.png" in text and "download failed" in text and "BENCH_DATA" in text


def test_archive_download_md5_and_extract(image_folder, tmp_path):
    archive = tmp_path / "valid_2020.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(image_folder.glob("*.png")):
            zf.write(p, f"valid/{p.name}")
        zf.writestr("__MACOSX/valid/._coffee.png", b"junk")
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    manifest = {"name": "clic-like", "image_count": 3,
                "archive": {"url": archive.as_uri(), "md5": md5, "member_prefix": "valid/"}}
    ds = datasets._resolve_archive(manifest, tmp_path / "cache" / "clic-like", allow_download=True)
    assert sorted(s.name for s in ds.sources) == ["astronaut", "chelsea", "coffee"]
    manifest["archive"]["md5"] = "f" * 32
    with pytest.raises(DatasetError, match="checksum mismatch"):
        datasets._resolve_archive(manifest, tmp_path / "cache2" / "clic-like", allow_download=True)


def test_archive_offline_message(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_DATA", str(tmp_path))
    manifest = datasets.load_manifest("clic-pro-valid")
    manifest["archive"]["url"] = (tmp_path / "nowhere.zip").as_uri()
    with pytest.raises(DatasetError, match=r"(?s)0 of 41 images.*download failed.*unzip"):
        datasets._resolve_archive(manifest, tmp_path / "clic-pro-valid", allow_download=True)


def test_manifests_are_complete():
    kodak = datasets.load_manifest("kodak")
    assert len(kodak["files"]) == 24
    assert all(f["url"].startswith("http://r0k.us/graphics/kodak/kodak/kodim") for f in kodak["files"])
    assert all(len(f["pixel_sha256"]) == 64 for f in kodak["files"])
    faces_text = datasets.load_manifest("faces-text")
    assert len(faces_text["files"]) == 14 and len({f["path"] for f in faces_text["files"]}) == 14
    for f in faces_text["files"]:  # raw files pinned to a commit, so the bytes behind the URL cannot change
        assert re.fullmatch(r"https://raw\.githubusercontent\.com/[\w.-]+/[\w.-]+/[0-9a-f]{40}/\S+\.jpg", f["url"])
        assert re.fullmatch(r"[0-9a-f]{64}", f["sha256"]) and Path(f["path"]).suffix == Path(f["url"]).suffix
    for name, count in (("clic-pro-valid", 41), ("clic-mobile-valid", 61)):
        m = datasets.load_manifest(name)
        assert m["image_count"] == count and m["archive"]["url"].startswith("https://data.vision.ee.ethz.ch/cvl/clic/")


def test_kodak_missing_without_download(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_DATA", str(tmp_path))
    with pytest.raises(DatasetError, match=r"24 of 24 files are missing.*downloads disabled"):
        resolve_dataset("kodak", allow_download=False)


def test_kodak_from_bench_data(shared_data):
    ds = resolve_dataset("kodak", allow_download=False)
    assert len(ds.sources) == 24 and ds.sources[0].name == "kodim01"


def test_sample_dataset_needs_no_download():
    ds = resolve_dataset("sample")
    assert len(ds.sources) >= 3 and all(s.path.is_file() for s in ds.sources)


def test_folder_dataset_is_recursive(image_folder):
    sub = image_folder / "sub"
    sub.mkdir()
    Image.fromarray(photo(170, 170)).save(sub / "nested.ppm")
    (image_folder / "notes.txt").write_text("not an image")
    ds = resolve_dataset(str(image_folder))
    assert sorted(s.name for s in ds.sources) == ["astronaut", "chelsea", "coffee", "sub/nested"]


def test_unknown_dataset():
    with pytest.raises(DatasetError, match="unknown dataset 'nope'"):
        resolve_dataset("nope")
