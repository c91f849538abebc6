"""The command line: light imports, one error path with --debug, validation before running, help texts, listings."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from bench.adapters import AdapterError
from bench.cli import BD_METHODS, build_parser, main

from .conftest import REPO

PROBE = textwrap.dedent("""
    import runpy, sys
    sys.argv = ["bench", *sys.argv[1:]]
    try:
        runpy.run_module("bench", run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:
        code = exc.code
    heavy = sorted(m for m in ("torch", "compressai", "scipy", "matplotlib") if m in sys.modules)
    print(f"PROBE exit={code} heavy={','.join(heavy) or '-'}", file=sys.stderr)
""")


def probe(*args: str) -> tuple[int, str, str]:
    """Run ``python -m bench ARGS`` from the checkout; (exit status, heavy modules imported, output)."""
    result = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=REPO, capture_output=True, text=True,
                            timeout=600)
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("PROBE "), result.stderr
    fields = dict(part.split("=", 1) for part in last.split()[1:])
    return int(fields["exit"]), fields["heavy"], result.stdout + result.stderr


@pytest.mark.slow
def test_help_usage_errors_datasets_and_cached_run_do_not_import_torch(tmp_path):
    code, heavy, out = probe("--help")
    assert code == 0 and heavy == "-" and "run" in out
    code, heavy, out = probe("run", "--dataset", "sample", "--codecs", "jpgg")
    assert code == 2 and heavy == "-" and "unknown codec 'jpgg'" in out and "did you mean 'jpeg'?" in out
    code, heavy, out = probe("datasets")
    assert code == 0 and heavy == "-" and "kodak" in out
    run = ["run", "--dataset", "sample", "--codecs", "jpeg:q=50", "--metrics", "psnr-rgb", "--jobs", "1", "--quiet",
           "--out", str(tmp_path / "out")]
    assert probe(*run)[0] == 0
    code, heavy, out = probe(*run)
    assert code == 0 and "5 cached" in out and heavy == "-", out


def test_metrics_command_lists_every_metric_with_its_library_version():
    """``bench metrics``: one line per metric with its set, direction, unit, library and installed version, read
    here from the installed distributions; answered without importing torch."""
    import importlib.metadata

    from bench.metrics import METRICS

    code, heavy, out = probe("metrics")
    assert code == 0 and heavy == "-", out
    lines = {line.split()[0]: line for line in out.splitlines()[1:] if line.split() and line.split()[0] in METRICS}
    assert set(lines) == set(METRICS)
    assert lines["gmsd"].split()[1:3] == ["default", "lower"] and lines["vif"].split()[1:3] == ["opt-in", "higher"]
    assert lines["ocr-cer"].split()[1:3] == ["ocr", "lower"] and lines["face-iou"].split()[1:3] == ["faces", "higher"]
    assert lines["psnr-rgb"].split()[3] == "dB" and "closed form, computed here" in lines["psnr-rgb"]
    for name, dist in (("ms-ssim-rgb", "pytorch-msssim"), ("haarpsi", "piq"), ("ssimulacra2", "ssimulacra2"),
                       ("sift-matching", "opencv-python-headless"), ("ocr-cer", "rapidocr")):
        assert f"{dist} {importlib.metadata.version(dist)}" in lines[name]


def test_user_errors_are_one_line_and_debug_reraises(capsys):
    assert main(["run", "--codecs", "hevc:chroma=411", "--dataset", "sample"]) == 2
    err = capsys.readouterr().err
    assert err == "error: hevc: chroma must be one of 444, 422, 420, got 411\n"
    with pytest.raises(AdapterError, match="chroma must be one of"):
        main(["run", "--debug", "--codecs", "hevc:chroma=411", "--dataset", "sample"])
    with pytest.raises(AdapterError, match="chroma must be one of"):
        main(["--debug", "run", "--codecs", "hevc:chroma=411", "--dataset", "sample"])


@pytest.mark.parametrize("args,message", [
    (["--jobs", "0"], "--jobs: must be at least 1, got 0"),
    (["--target-bpp", "-1"], "target bpp must be positive"),
    (["--target-bpp", "0.25,nan"], "target bpp must be positive"),
    (["--qualities", "nan"], "quality nan is not a finite number"),
    (["--qualities", "10,inf"], "quality inf is not a finite number"),
])
def test_bad_numbers_are_refused_before_anything_runs(args, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--dataset", "sample", "--codecs", "jpeg", "--out", str(tmp_path / "o"), *args])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_out_of_range_quality_refused_with_exit_2(capsys, tmp_path):
    assert main(["run", "--dataset", "sample", "--codecs", "jpeg,hevc", "--qualities", "50,95",
                 "--out", str(tmp_path / "o")]) == 2
    assert "hevc: quality 95 is outside its range 0..50" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_did_you_mean_for_metrics_and_datasets(capsys):
    assert main(["run", "--codecs", "jpeg", "--metrics", "psnr-rbg"]) == 2
    assert "did you mean 'psnr-rgb'" in capsys.readouterr().err
    assert main(["run", "--codecs", "jpeg", "--dataset", "kodac"]) == 2
    assert "did you mean 'kodak'?" in capsys.readouterr().err


def test_help_texts_name_each_default_once():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices
    text = sub["train"].format_help()
    assert "(default: None)" not in text and "default: False" not in text
    quality = text.split("options:", 1)[1].split("--quality Q", 1)[1].split("--channels", 1)[0]
    assert quality.count("default") == 1
    for name, p in sub.items():
        for action in p._actions:
            assert action.help, f"{name} {action.option_strings or action.dest} has no help text"


def test_bd_methods_match_the_analysis():
    from bench.analysis import METHODS

    assert tuple(BD_METHODS) == tuple(METHODS)


def test_codec_listing_aligned_for_long_names(tmp_path, capsys):
    folder = tmp_path / "plugins"
    folder.mkdir()
    long_name = "a-codec-with-a-rather-long-name-indeed"
    (folder / "long.py").write_text(
        f'import numpy as np\nNAME = "{long_name}"\nFAMILY = "conventional"\nVERSION = "1"\n'
        'DESCRIPTION = "d"\nQUALITIES = [1]\n\ndef encode(rgb, quality):\n    return rgb.tobytes()\n\n'
        'def decode(data):\n    return data\n')
    (folder / "broken.py").write_text('NAME = "x"\nraise ImportError("no lib")\n')
    assert main(["codecs", "--codecs-dir", str(folder)]) == 0
    heads = [line for line in capsys.readouterr().out.splitlines() if line and not line.startswith(" ")]
    columns = {line.index("unavailable" if "unavailable" in line else "available") for line in heads}
    assert len(columns) == 1 and columns.pop() > len(long_name)


def test_datasets_say_what_is_present(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BENCH_DATA", str(tmp_path))
    (tmp_path / "kodak").mkdir()
    (tmp_path / "kodak" / "kodim01.png").write_bytes(b"")  # presence only; run verifies the pixels
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert f"partial (1 of 24 images in {tmp_path / 'kodak'})" in out
    assert f"not downloaded (0 of 41 images in {tmp_path / 'clic-pro-valid'})" in out
    assert "present (5 images)" in out  # sample, from scikit-image
