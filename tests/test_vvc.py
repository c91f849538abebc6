"""The vvc adapter: its colour conversion against independent formulas (always), and, when vvenc/vvdec
are built (make vvc), real round trips, a QP sweep through the harness, and README-vvc.md's figure."""

from __future__ import annotations

import importlib.util

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bench.adapters import discover, select
from bench.adapters.codec_tools import rgb_to_ycbcr420, upsample2_bilinear, ycbcr420_to_rgb
from bench.cli import main

from .conftest import KODAK, REPO, photo

pytestmark = pytest.mark.slow  # vvenc/vvdec encodes and QP sweeps

SPEC = importlib.util.spec_from_file_location("vvc_under_test", REPO / "codecs" / "vvc.py")
vvc = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(vvc)


def tools_found() -> tuple[str, str] | None:
    try:
        return (vvc.find_app("", "VVENCAPP", "vvenc", "vvencapp"), vvc.find_app("", "VVDECAPP", "vvdec", "vvdecapp"))
    except FileNotFoundError:
        return None


needs_tools = pytest.mark.skipif(tools_found() is None, reason="vvenc/vvdec not built: make vvc")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR-RGB in float64, written out here (independent of bench.metrics)."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


# --- colour conversion and framing (no tools needed) --------------------------------------------
def test_ycbcr420_matches_the_bt601_full_range_equations():
    rgb = photo(64, 96, "coffee")
    y, cb, cr = rgb_to_ycbcr420(rgb, 10)
    assert (y.shape, cb.shape, cr.shape) == ((64, 96), (32, 48), (32, 48)) and y.dtype == np.uint16
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    # JFIF/BT.601 full-range coefficients, scaled from 8 to 10 bits (1023/255), chroma offset 512.
    y_ref = (0.299 * r + 0.587 * g + 0.114 * b) * 1023 / 255
    cb_ref = (-0.168735892 * r - 0.331264108 * g + 0.5 * b) * 1023 / 255 + 512
    cr_ref = (0.5 * r - 0.418687589 * g - 0.081312411 * b) * 1023 / 255 + 512
    box = lambda c: c.reshape(32, 2, 48, 2).mean(axis=(1, 3))  # noqa: E731
    assert np.abs(y - y_ref).max() <= 0.5 + 1e-6
    assert np.abs(cb - box(cb_ref)).max() <= 0.5 + 1e-6 and np.abs(cr - box(cr_ref)).max() <= 0.5 + 1e-6
    grey = np.full((2, 2, 3), 255, np.uint8)
    assert [int(p[0, 0]) for p in rgb_to_ycbcr420(grey, 10)] == [1023, 512, 512]
    with pytest.raises(ValueError, match="even dimensions"):
        rgb_to_ycbcr420(rgb[:63], 10)


def test_upsampling_is_torch_bilinear_align_corners_false():
    torch = pytest.importorskip("torch")
    plane = np.random.default_rng(1).uniform(0, 1023, (5, 7))
    ref = torch.nn.functional.interpolate(torch.from_numpy(plane)[None, None], scale_factor=2, mode="bilinear",
                                          align_corners=False)[0, 0].numpy()  # float64
    assert np.abs(upsample2_bilinear(plane) - ref).max() < 1e-9


def test_conversion_round_trip_without_coding():
    rgb = photo(128, 160, "astronaut")
    back = ycbcr420_to_rgb(*rgb_to_ycbcr420(rgb, 10), 10)
    assert back.shape == rgb.shape and back.dtype == np.uint8
    flat = np.tile(np.array([200, 30, 90], np.uint8), (8, 8, 1))  # no chroma detail: exact
    assert np.array_equal(ycbcr420_to_rgb(*rgb_to_ycbcr420(flat, 10), 10), flat)
    assert 35 < psnr(rgb, back) < 60, "the 4:2:0 round trip alone loses chroma detail"


def test_pad_even_and_y4m_reader():
    rgb = photo(7, 5)
    padded, flags = vvc.pad_even(rgb)
    assert padded.shape == (8, 6, 3) and flags == vvc.CROP_LAST_COLUMN | vvc.CROP_LAST_ROW
    assert np.array_equal(padded[:7, :5], rgb) and np.array_equal(padded[7, :5], rgb[6])
    assert vvc.pad_even(rgb[:6, :4])[1] == 0
    y = np.arange(24, dtype="<u2").reshape(4, 6)
    cb, cr = np.full((2, 3), 512, "<u2"), np.full((2, 3), 100, "<u2")
    data = b"YUV4MPEG2 W6 H4 F50:1 Ip C420p10\nFRAME\n" + y.tobytes() + cb.tobytes() + cr.tobytes()
    y2, cb2, cr2, bits = vvc.read_y4m_420(data)
    assert bits == 10 and np.array_equal(y2, y) and np.array_equal(cb2, cb) and np.array_equal(cr2, cr)
    with pytest.raises(ValueError, match="no Y4M picture"):
        vvc.read_y4m_420(b"garbage")


def test_without_tools_the_codec_is_unavailable_with_the_build_command(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_TOOLS", str(tmp_path / "tools"))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("VVENCAPP", raising=False)
    monkeypatch.delenv("VVDECAPP", raising=False)
    configs, skipped = select([a for a in discover() if a.name == "vvc"], ["vvc"])
    assert not configs and "vvenc/vvdec not built" in skipped[0].reason and "make vvc" in skipped[0].reason
    monkeypatch.setenv("VVENCAPP", str(tmp_path / "nope"))
    _, skipped = select([a for a in discover() if a.name == "vvc"], ["vvc"])
    assert "VVENCAPP" in skipped[0].reason


# --- real vvenc/vvdec ---------------------------------------------------------------------------
def config(spec: str = "vvc:preset=faster"):
    configs, skipped = select([a for a in discover() if a.name == "vvc"], [spec])
    assert not skipped, skipped[0].reason
    return configs[0]


@needs_tools
def test_round_trip_odd_size_is_padded_and_cropped():
    source = np.asarray(Image.open(KODAK / "kodim23.png").convert("RGB")) if KODAK.is_dir() else photo(512, 512)
    rgb = np.ascontiguousarray(source[200:267, 300:401])  # 101 x 67: odd width and height
    c = config()
    assert "vvencapp version" in c.version and "vvdecapp version" in c.version and "4:2:0" in c.version
    data = c.encode(rgb, 22)
    assert data[0] == vvc.CROP_LAST_COLUMN | vvc.CROP_LAST_ROW and data[1:5] == b"\0\0\0\1"  # Annex-B
    rec = c.decode(data)
    assert rec.shape == rgb.shape and rec.dtype == np.uint8
    assert psnr(rgb, rec) > 35
    even = np.ascontiguousarray(rgb[:66, :100])
    stream = c.encode(even, 37)
    assert stream[:4] == b"\0\0\0\1", "an even-sized picture is the pure .266 bitstream"
    assert c.decode(stream).shape == even.shape and len(stream) < len(data)


@needs_tools
def test_qp_sweep_through_the_harness(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for name, (h, w) in {"astronaut": (176, 208), "coffee": (192, 256)}.items():
        Image.fromarray(photo(h, w, name)).save(folder / f"{name}.png")
    out = tmp_path / "out"
    assert main(["run", "--dataset", str(folder), "--codecs", "vvc:preset=faster:q=27/37/47", "--jobs", "2",
                 "--out", str(out), "--quiet", "--metrics", "psnr-rgb"]) == 0
    rows = pd.read_csv(out / "per_image.csv")
    assert len(rows) == 2 * 3
    c = config()
    for image, group in rows.groupby("image"):
        group = group.sort_values("quality")
        assert group["bpp"].is_monotonic_decreasing and group["psnr-rgb"].is_monotonic_decreasing
        rgb = np.asarray(Image.open(folder / f"{image}.png").convert("RGB"))
        pixels = rgb.shape[0] * rgb.shape[1]
        for _, row in group.iterrows():
            assert row["bpp"] == pytest.approx(row["bytes"] * 8 / pixels, rel=1e-12)
            data = c.encode(rgb, int(row["quality"]))  # vvenc is deterministic: the same bitstream again
            assert len(data) == row["bytes"]
            assert psnr(rgb, c.decode(data)) == pytest.approx(row["psnr-rgb"], abs=1e-6)


@needs_tools
def test_reproduces_readme_vvc_kodim01(kodak_dir):
    """../shared/src/README-vvc.md: kodim01 --qp 32 faster -> 59,450 bytes, 33.751 dB PSNR-RGB."""
    rgb = np.asarray(Image.open(kodak_dir / "kodim01.png").convert("RGB"))
    c = config()
    data = c.encode(rgb, 32)
    assert len(data) == 59_450
    assert psnr(rgb, c.decode(data)) == pytest.approx(33.751, abs=0.0005)


# --- verify: vvenc against the published VTM curve is judged by a BD-rate band ---------------------
def test_verify_expected_band_for_vvc_against_vtm(tmp_path):
    from bench.report.verify import Published, expected_difference

    vtm = Published(tmp_path / "vtm.json", "VTM", np.array([0.1, 1.0]), np.array([28.0, 38.0]), None)
    medium = expected_difference(vtm, "vvc", {"preset": "medium"})
    assert medium is not None and medium.low < 8.9 < medium.high and "4:2:0" in medium.reason
    assert "faster encoder than VTM" in medium.reason
    assert expected_difference(vtm, "vvc", {"preset": "slower"}) is None, "no measured band: checked per point"
    assert expected_difference(vtm, "jpeg", {}) is None
    hm = Published(tmp_path / "hm.json", "HM", vtm.bpp, vtm.psnr, None)
    assert expected_difference(hm, "vvc", {"preset": "medium"}) is None


def test_verify_judges_a_known_difference_by_its_band(tmp_path, monkeypatch, capsys):
    """A real stored run (jpeg on two photos); the published file is our curve with 10 % fewer bits,
    declared a known difference of +8..+13 % BD-rate: pass with the reason, and fail outside."""
    import json

    import bench.report.verify as verify

    folder = tmp_path / "images"
    folder.mkdir()
    for name, (h, w) in {"astronaut": (176, 208), "coffee": (192, 256)}.items():
        Image.fromarray(photo(h, w, name)).save(folder / f"{name}.png")
    out = tmp_path / "out"
    assert main(["run", "--dataset", str(folder), "--codecs", "jpeg:q=20/40/60/80", "--jobs", "1", "--out", str(out),
                 "--quiet", "--metrics", "psnr-rgb"]) == 0
    results = json.loads((out / "jpeg.json").read_text())["results"]
    published = tmp_path / "vtm.json"
    published.write_text(json.dumps({"name": "VTM", "results": {"bpp": [b / 1.1 for b in results["bpp"]],
                                                                 "psnr-rgb": results["psnr-rgb"]}}))
    seen = []

    def known(pub, codec_name, options, band=(8.0, 13.0)):
        seen.append((pub.path.name, codec_name, options))
        return verify.Expected(*band, "a test band", "the test says so")

    monkeypatch.setattr(verify, "expected_difference", known)
    assert main(["verify", str(out), "--reference", str(published), "--as", "jpeg"]) == 0
    text = capsys.readouterr().out
    assert seen == [("vtm.json", "jpeg", {"subsampling": "4:2:0"})]
    assert "BD-rate +10.00 % is within the expected band +8.0 … +13.0 %" in text
    assert "Why it differs: the test says so" in text and "| pass |" in text and "DIFFERS" not in text
    monkeypatch.setattr(verify, "expected_difference", lambda *a: known(*a, band=(20.0, 30.0)))
    assert main(["verify", str(out), "--reference", str(published), "--as", "jpeg"]) == 1
    assert "is OUTSIDE the expected band" in capsys.readouterr().out
