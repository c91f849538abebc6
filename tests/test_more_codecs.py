"""AVIF, JPEG XL, JPEG 2000, mozjpeg, x265 (ffmpeg), and the external reference-encoder adapters."""

import stat
from pathlib import Path

import numpy as np
import pytest

from bench.adapters import Adapter, discover, select
from bench.adapters.codec_tools import rgb_to_ycbcr444, ycbcr444_to_rgb
from bench.datasets import resolve_dataset
from bench.metrics import psnr_rgb
from bench.pipeline.runner import run_benchmark

from .conftest import photo

ITEMS = {a.name: a for a in discover()}


def config(spec: str):
    configs, skipped = select(list(ITEMS.values()), [spec])
    if skipped:
        pytest.skip(f"{spec} unavailable here: {skipped[0].reason}")
    return configs[0]


@pytest.mark.parametrize("spec", ["avif", "avif:subsampling=4:2:0", "jxl", "jpeg2000", "mozjpeg", "x265",
                                  "x265:chroma=420"])
def test_round_trip_bpp_and_rate_monotone(spec):
    c = config(spec)
    rgb = photo(200, 264, "coffee")
    qs = sorted(c.qualities)
    sizes, psnrs = [], []
    for q in (qs[1], qs[-2]):
        data = c.encode(rgb, q)
        rec = c.decode(data)
        assert rec.shape == rgb.shape and rec.dtype == np.uint8
        sizes.append(len(data))
        psnrs.append(psnr_rgb(rgb, rec))
    if c.name in ("x265",):  # quality is a QP: larger = coarser
        sizes, psnrs = sizes[::-1], psnrs[::-1]
    assert sizes[0] < sizes[1] and psnrs[0] < psnrs[1]
    assert psnrs[1] > 30


def test_avif_subsampling_option_changes_the_stream():
    rgb = photo(128, 160)
    a, b = config("avif"), config("avif:subsampling=4:2:0")
    assert len(b.encode(rgb, 50)) < len(a.encode(rgb, 50))


def test_jpeg2000_rate_control_hits_the_target_bpp():
    c = config("jpeg2000")
    rgb = photo(256, 384, "astronaut")
    for target in (0.25, 1.0):
        bpp = len(c.encode(rgb, target)) * 8 / (256 * 384)
        assert bpp == pytest.approx(target, rel=0.05)


def test_mozjpeg_unavailable_reason_is_clear():
    item = ITEMS["mozjpeg"]
    if isinstance(item, Adapter):
        pytest.skip("mozjpeg is available here")
    assert "without mozjpeg" in item.reason


def test_ycbcr_conversion_round_trip():
    rgb = photo(64, 64)
    back = ycbcr444_to_rgb(rgb_to_ycbcr444(rgb))
    assert np.abs(back.astype(int) - rgb).max() <= 2


def script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_external_binaries_missing_make_codecs_unavailable(tmp_path):
    _, skipped = select(list(ITEMS.values()), [f"bpg:bpgenc={tmp_path}/nope", "vtm:encoder=/nonexistent/EncoderApp"])
    reasons = {s.name: s.reason for s in skipped}
    assert "not found" in reasons["bpg"] and "BPGENC" in reasons["bpg"]
    assert "not found" in reasons["vtm"] and "VTM_ENCODER" in reasons["vtm"]
    fake = script(tmp_path / "EncoderApp", "exit 0\n")
    _, skipped = select(list(ITEMS.values()), [f"hm:encoder={fake}:decoder={fake}:config="])
    assert "HM_CONFIG" in skipped[0].reason


def test_tool_paths_resolved_at_setup_stay_out_of_the_key(tmp_path, monkeypatch):
    """$BPGENC/$BPGDEC are read at setup; the key holds the binaries' identity, never their paths."""
    body = 'while [ "$1" != "-o" ]; do shift; done; cp "$3" "$2"\n'
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    enc, dec = script(tmp_path / "a" / "bpgenc", body), script(tmp_path / "a" / "bpgdec", 'cp "$3" "$2"\n')
    monkeypatch.setenv("BPGENC", enc)
    monkeypatch.setenv("BPGDEC", dec)
    first = config("bpg")
    assert first.options["bpgenc"] == enc and first.options["bpgdec"] == dec
    assert first.options_key == '{"chroma":"444"}' and first.label == "bpg" and str(tmp_path) not in first.version
    monkeypatch.setenv("BPGENC", script(tmp_path / "b" / "bpgenc", body))  # same binary elsewhere: same key
    moved = config("bpg")
    assert (moved.options_key, moved.version) == (first.options_key, first.version)
    monkeypatch.setenv("BPGENC", script(tmp_path / "b" / "bpgenc", body + "# rebuilt\n"))
    assert config("bpg").version != first.version, "another binary is another version"


@pytest.mark.slow
def test_bpg_command_lines_and_stderr_in_failures(tmp_path, image_folder):
    # Stand-ins with bpgenc/bpgdec's command lines that store the PNG itself (lossless).
    enc = script(tmp_path / "bpgenc", 'while [ "$1" != "-o" ]; do shift; done; cp "$3" "$2"\n')
    dec = script(tmp_path / "bpgdec", 'cp "$3" "$2"\n')  # bpgdec -o OUT IN
    c = config(f"bpg:bpgenc={enc}:bpgdec={dec}")
    rgb = photo(64, 80)
    assert np.array_equal(c.decode(c.encode(rgb, 30)), rgb)

    bad = script(tmp_path / "badenc", 'echo "x265 [error]: unsupported chroma format" >&2; exit 3\n')
    configs, _ = select(list(ITEMS.values()), [f"bpg:bpgenc={bad}:bpgdec={dec}"])
    report = run_benchmark(resolve_dataset(str(image_folder)), configs, tmp_path / "out", qualities=[30], jobs=1,
                           progress=False)
    assert report.failed == 3
    ((_, stage, error),) = report.failures
    assert stage == "encode" and "badenc exited with status 3: x265 [error]: unsupported chroma format" in error


def test_reference_software_command_lines(tmp_path):
    """VTM/HM stand-ins: check the arguments and pass YCbCr through; the adapter converts back."""
    enc = script(tmp_path / "EncoderApp",
                 'for a in "$@"; do case "$a" in --InputChromaFormat=444) ok=1;; esac; done\n'
                 '[ "$ok" = 1 ] || exit 9\n'
                 'while [ $# -gt 0 ]; do case "$1" in -i) i="$2";; -b) b="$2";; esac; shift; done; cp "$i" "$b"\n')
    dec = script(tmp_path / "DecoderApp",
                 'while [ $# -gt 0 ]; do case "$1" in -b) b="$2";; -o) o="$2";; esac; shift; done; cp "$b" "$o"\n')
    cfg = tmp_path / "encoder_intra_vtm.cfg"
    cfg.write_text("# all intra\n")
    c = config(f"vtm:encoder={enc}:decoder={dec}:config={cfg}")
    rgb = photo(48, 72)
    data = c.encode(rgb, 32)
    assert len(data) == 4 + 3 * 48 * 72  # 4-byte dimension header + the (here raw) stream
    assert np.abs(c.decode(data).astype(int) - rgb).max() <= 2
