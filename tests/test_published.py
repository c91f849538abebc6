"""Published bitstreams as a codec (``published:dir=PATH``): a tiny folder made here, and Cool-chic's.

The tiny folder holds real JPEG bitstreams made by Pillow at three qualities (the "rate"), the
images Pillow decodes from them, and a manifest whose published bpp and PSNR-RGB are computed
here independently (float64). Runs go through the CLI (``bench.cli.main``).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bench.cli import main
from bench.datasets import published as pub

from .conftest import KODAK, SHARED, photo

COOLCHIC = SHARED / "published" / "coolchic-3.4.1-kodak"
RATES = (30, 60, 90)  # JPEG qualities, the tiny folder's rate points
SIZES = {"astronaut": (64, 96), "coffee": (72, 80), "chelsea": (56, 88)}


def psnr_rgb(a: np.ndarray, b: np.ndarray) -> float:
    """Independent PSNR-RGB: 10 log10(255² / MSE), MSE over all samples in float64."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


def make_folder(root: Path, decoder: str = "pillow", metrics: bool = True) -> tuple[Path, Path]:
    """(originals folder, published folder): three photos, JPEG bitstreams at RATES, decoded PNGs, manifest."""
    images, folder = root / "images", root / "pub-jpeg"
    for sub in (images, folder / "bitstreams", folder / "decoded"):
        sub.mkdir(parents=True)
    header = ["# family: conventional", "# codec: JPEG (Pillow)", "# licence: made by the test"]
    header += [f"# decoder: {decoder}"] if decoder else []
    columns = ["image", "rate", "bitstream", "decoded"] + (["bpp", "psnr-rgb"] if metrics else [])
    lines = [*header, "\t".join(columns)]
    for name, (h, w) in SIZES.items():
        rgb = photo(h, w, name)
        Image.fromarray(rgb).save(images / f"{name}.png")
        for q in RATES:
            buf = io.BytesIO()
            Image.fromarray(rgb).save(buf, format="JPEG", quality=q)
            data = buf.getvalue()
            (folder / "bitstreams" / f"{name}-q{q}.jpg").write_bytes(data)
            decoded = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
            Image.fromarray(decoded).save(folder / "decoded" / f"{name}-q{q}.png")
            cells = [name, str(q), f"bitstreams/{name}-q{q}.jpg", f"decoded/{name}-q{q}.png"]
            if metrics:
                cells += [repr(len(data) * 8 / (h * w)), repr(psnr_rgb(rgb, decoded))]
            lines.append("\t".join(cells))
    (folder / "manifest.tsv").write_text("\n".join(lines) + "\n")
    return images, folder


@pytest.fixture
def tiny(tmp_path: Path) -> tuple[Path, Path]:
    return make_folder(tmp_path)


def run(images: Path, spec: str, out: Path, *extra: str) -> int:
    return main(["run", "--dataset", str(images), "--codecs", spec, "--out", str(out), "--jobs", "1", "--quiet",
                 "--metrics", "psnr-rgb", *extra])


@pytest.mark.slow
def test_supplied_images_bpp_metrics_target_bpp_and_verify(tiny, tmp_path, capsys):
    images, folder = tiny
    out = tmp_path / "out"
    assert run(images, f"published:dir={folder}:decode=supplied", out, "--target-bpp", "1.0") == 0
    rows = pd.read_csv(out / "per_image.csv", float_precision="round_trip")
    assert len(rows) == len(SIZES) * len(RATES)
    assert set(rows["codec"]) == {"pub-jpeg"}  # the label is the folder's name
    assert set(rows["family"]) == {"conventional"}  # from the manifest
    for _, r in rows.iterrows():
        q = int(r["quality"])
        data = (folder / "bitstreams" / f"{r['image']}-q{q}.jpg").read_bytes()
        original = np.asarray(Image.open(images / f"{r['image']}.png"))
        decoded = np.asarray(Image.open(folder / "decoded" / f"{r['image']}-q{q}.png"))
        assert r["bytes"] == len(data)
        assert r["bpp"] == len(data) * 8 / (r["width"] * r["height"])
        assert r["psnr-rgb"] == pytest.approx(psnr_rgb(original, decoded), abs=1e-9)
    assert rows["encode_s"].isna().all() and rows["decode_s"].isna().all()  # never a made-up time
    summary = pd.read_csv(out / "summary.csv", float_precision="round_trip")
    assert summary["encode_s"].isna().all() and summary["decode_s"].isna().all()

    chosen = pd.read_csv(out / "target_bpp.csv", float_precision="round_trip")  # among the published rates
    assert len(chosen) == len(SIZES)
    for _, r in chosen.iterrows():
        sizes = {q: (folder / "bitstreams" / f"{r['image']}-q{q}.jpg").stat().st_size for q in RATES}
        h, w = SIZES[r["image"]]
        assert r["quality"] == min(RATES, key=lambda q: abs(sizes[q] * 8 / (h * w) - 1.0))

    capsys.readouterr()
    assert main(["verify", str(out)]) == 0
    assert "| pub-jpeg | manifest.tsv | 9 | 0 | " in capsys.readouterr().out
    manifest = folder / "manifest.tsv"  # a published table that our bytes do not reproduce
    text = manifest.read_text().splitlines()
    cells = text[-1].split("\t")
    cells[4] = repr(float(cells[4]) + 2e-4)
    manifest.write_text("\n".join([*text[:-1], "\t".join(cells)]) + "\n")
    assert main(["verify", str(out)]) == 1
    assert "FAIL" in capsys.readouterr().out


@pytest.mark.slow
def test_decoded_here_with_the_publishers_decoder(tiny, tmp_path, capsys):
    images, folder = tiny
    out = tmp_path / "out"
    assert run(images, f"published:dir={folder}:name=jpeg-pub", out) == 0
    rows = pd.read_csv(out / "per_image.csv", float_precision="round_trip")
    assert set(rows["codec"]) == {"jpeg-pub"}
    assert rows["encode_s"].isna().all()  # nothing is encoded here
    assert np.isfinite(rows["decode_s"]).all()  # decoded here: measured
    capsys.readouterr()
    assert main(["report", str(out), "--anchor", "jpeg-pub", "--bootstrap", "0"]) == 0
    report = (out / "report.md").read_text()
    assert "published bitstreams" in report and "decoded: here (Pillow" in report
    timing = next(line for line in report.splitlines() if line.startswith("| jpeg-pub | ") and "not measured" in line)
    assert timing.count("not measured") == 3  # encode mean, median, MP/s; decode is measured


@pytest.mark.slow
def test_decoded_image_that_is_not_the_decoders_output_fails(tmp_path, capsys):
    images, folder = make_folder(tmp_path, metrics=False)
    path = folder / "decoded" / "coffee-q60.png"
    decoded = np.asarray(Image.open(path)).copy()
    decoded[3, 4, 1] ^= 0x10
    Image.fromarray(decoded).save(path)
    capsys.readouterr()
    assert run(images, f"published:dir={folder}", tmp_path / "out") == 1
    text = capsys.readouterr().out
    assert "coffee-q60.jpg here differs from the publisher's decoded image coffee-q60.png: 1 of" in text


def test_originals_not_the_publishers_are_refused(tiny, tmp_path, capsys):
    images, folder = tiny
    rgb = np.asarray(Image.open(images / "coffee.png")).copy()
    rgb[10, 10] = 255 - rgb[10, 10]  # one pixel changed a lot
    Image.fromarray(rgb).save(images / "coffee.png")
    assert run(images, f"published:dir={folder}", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: pub-jpeg: 1 original(s) differ from the publisher's: coffee: PSNR-RGB of ")
    assert len(err.strip().splitlines()) == 1

    Image.fromarray(rgb).resize((40, 30)).save(images / "coffee.png")  # resized
    assert run(images, f"published:dir={folder}", tmp_path / "out2") == 2
    assert "coffee is 40x30, the publisher's decoded image coffee-q30.png is 80x72" in capsys.readouterr().err


def test_images_the_folder_does_not_cover_are_listed(tiny, tmp_path, capsys):
    images, folder = tiny
    for name in ("rocket", "camera"):
        Image.fromarray(photo(32, 48, "astronaut")).save(images / f"{name}.png")
    assert run(images, f"published:dir={folder}", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "has no bitstreams for 2 of the run's 5 images: camera, rocket (it covers 3: astronaut, chelsea, coffee)" \
        in err


def test_manifest_errors_are_one_clear_line(tiny, tmp_path, capsys):
    images, folder = tiny
    assert run(images, "published", tmp_path / "out") == 2  # no dir: unavailable, named
    assert "give the published folder: published:dir=PATH" in capsys.readouterr().out
    (folder / "bitstreams" / "coffee-q60.jpg").unlink()
    assert run(images, f"published:dir={folder}", tmp_path / "out") == 2
    assert "coffee-q60.jpg is missing" in capsys.readouterr().out
    with pytest.raises(pub.PublishedError, match="line 3: rate 'x' is not a number"):
        pub.parse_manifest("# a: b\nimage\trate\tbitstream\tdecoded\nk\tx\tb\td\n", Path("m.tsv"), folder)


# --- Cool-chic 3.4.1's published Kodak bitstreams -------------------------------------------------
def published_table() -> dict[tuple[str, float], tuple[float, float]]:
    """(image, λ) -> (rate_bpp, psnr_db) from the publisher's own results.tsv (not via our manifest)."""
    with open(COOLCHIC / "published.tsv", newline="") as f:
        return {(r["seq_name"], float(r["lmbda"])): (float(r["rate_bpp"]), float(r["psnr_db"]))
                for r in csv.DictReader(f, delimiter="\t")}


@pytest.fixture
def coolchic() -> Path:
    if not (COOLCHIC / "published.tsv").is_file() or not (KODAK / "kodim01.png").is_file():
        pytest.skip(f"Cool-chic's published Kodak folder or Kodak not available at {COOLCHIC}, {KODAK}")
    return COOLCHIC


def test_shipped_manifest_is_the_publishers_table(coolchic):
    manifest = pub.find_manifest(coolchic)
    assert manifest.path.parent == pub.SHIPPED_DIR
    table = published_table()
    assert {(e.image, e.rate): (e.bpp, e.psnr_rgb) for e in manifest.entries} == table
    assert pub.check_files(manifest) == []
    sums = dict(line.split()[::-1] for line in (coolchic / "SHA256SUMS").read_text().splitlines())
    for e in manifest.entries:
        assert sums[f"bitstreams/{e.bitstream.name}"] == e.bitstream_sha256
        assert sums[f"decoded/{e.decoded.name}"] == e.decoded_sha256


README_MEANS = {0.0001: (1.4168, 41.000), 0.0004: (0.7958, 37.101), 0.001: (0.5085, 34.457),
                0.004: (0.2286, 30.717), 0.02: (0.0779, 26.976)}


@pytest.mark.slow
def test_coolchic_kodak_reproduces_the_published_table(coolchic, shared_data, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", "--dataset", "kodak", "--no-download", "--codecs", f"published:dir={coolchic}:decode=supplied",
                 "--out", str(out), "--quiet", "--metrics", "psnr-rgb", "--jobs", "2"]) == 0
    rows = pd.read_csv(out / "per_image.csv", float_precision="round_trip")
    assert len(rows) == 24 * 5 and set(rows["codec"]) == {"coolchic-3.4.1-kodak"}
    table = published_table()
    for _, r in rows.iterrows():
        bpp, psnr = table[(r["image"], r["quality"])]
        size = (coolchic / "bitstreams" / f"{r['image']}-lmbda-{pub.lambda_token(r['quality'])}.cool").stat().st_size
        assert r["bpp"] == size * 8 / (r["width"] * r["height"])
        assert abs(r["bpp"] - bpp) < 1e-4 and abs(r["psnr-rgb"] - psnr) < 0.01
    means = rows.groupby("quality")[["bpp", "psnr-rgb"]].mean()
    for lmbda, (bpp, psnr) in README_MEANS.items():
        assert means.loc[lmbda, "bpp"] == pytest.approx(bpp, abs=5e-5)
        assert means.loc[lmbda, "psnr-rgb"] == pytest.approx(psnr, abs=5e-4)
    assert rows["encode_s"].isna().all() and rows["decode_s"].isna().all()
    capsys.readouterr()
    assert main(["verify", str(out)]) == 0
    assert "| coolchic-3.4.1-kodak | coolchic-3.4.1-kodak.tsv | 120 | 0 | " in capsys.readouterr().out


@pytest.mark.slow
def test_coolchic_decoded_here_is_pixel_identical(coolchic, tmp_path, capsys):
    from bench.adapters import tools

    if tools.built("coolchic") is None:
        pytest.skip("Cool-chic's decoder is not built (make coolchic)")
    images = tmp_path / "kodak"
    images.mkdir()
    for name in ("kodim04", "kodim23"):  # a portrait and a landscape image
        (images / f"{name}.png").symlink_to(KODAK / f"{name}.png")
    out = tmp_path / "out"
    assert main(["run", "--dataset", str(images), "--codecs", f"published:dir={coolchic}:decode=here", "--out",
                 str(out), "--quiet", "--metrics", "psnr-rgb", "--jobs", "2", "--decode-check", "all"]) == 0
    rows = pd.read_csv(out / "per_image.csv", float_precision="round_trip")
    assert len(rows) == 2 * 5 and rows["encode_s"].isna().all() and np.isfinite(rows["decode_s"]).all()
    table = published_table()
    for _, r in rows.iterrows():  # the decoded pixels equal the supplied ones (else a failure row), so do the numbers
        assert abs(r["psnr-rgb"] - table[(r["image"], r["quality"])][1]) < 0.01
    capsys.readouterr()
    assert main(["verify", str(out)]) == 0
    assert "| coolchic-3.4.1-kodak | coolchic-3.4.1-kodak.tsv | 10 | 0 | " in capsys.readouterr().out
