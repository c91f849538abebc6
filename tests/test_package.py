"""The wheel, built offline from the project files: holds the adapters and manifests, runs outside the checkout."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO

pytestmark = pytest.mark.slow  # builds and installs the wheel in a fresh virtual environment

PROJECT_FILES = ("pyproject.toml", "README.md")


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 600,
        ) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result


def run_together(*commands: tuple[list[str], dict[str, str]], cwd: Path, timeout: float = 600) -> list[str]:
    """Like ``run`` for several (command, environment) pairs, started side by side (``bench codecs`` alone
    takes ~7 s of one core, and it runs twice); their stdouts in order, each asserted to exit with 0."""
    procs = [subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for cmd, env in commands]
    outputs = []
    try:
        for (cmd, _), proc in zip(commands, procs, strict=True):
            stdout, stderr = proc.communicate(timeout=timeout)
            assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{stdout}\n{stderr}"
            outputs.append(stdout)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return outputs


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The wheel built from a copy of the project files, installed with --target into a temp folder."""
    if importlib.util.find_spec("setuptools") is None or importlib.util.find_spec("wheel") is None:
        pytest.skip("building the wheel offline needs setuptools and wheel (the test extras install them)")
    root = tmp_path_factory.mktemp("package")
    src = root / "src"
    src.mkdir()
    for name in PROJECT_FILES:
        shutil.copy2(REPO / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "cache")
    for folder in ("bench", "codecs", "datasets"):
        shutil.copytree(REPO / folder, src / folder, ignore=ignore)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet", "-w", str(root / "dist"),
         str(src)], cwd=root)
    wheels = list((root / "dist").glob("codec_bench-*.whl"))
    assert len(wheels) == 1
    target = root / "target"
    run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(target), str(wheels[0])],
        cwd=root)
    return target


def wheel_names(target: Path) -> set[str]:
    record = next(target.glob("codec_bench-*.dist-info")) / "RECORD"
    return {line.split(",")[0] for line in record.read_text().splitlines()}


def outside(target: Path, tmp_path: Path) -> dict[str, str]:
    """Environment for running the installed copy from a folder outside the checkout."""
    return {**os.environ, "PYTHONPATH": str(target), "XDG_CACHE_HOME": str(tmp_path / "cache"),
            "BENCH_DATA": str(tmp_path / "data")}


def test_wheel_holds_every_adapter_and_manifest(installed):
    names = wheel_names(installed)
    adapters = {f"bench/codecs_builtin/{p.name}" for p in (REPO / "codecs").glob("*.py")}
    manifests = {f"bench/manifests/{p.name}" for p in (REPO / "datasets").glob("*.json")}
    manifests |= {f"bench/manifests/published/{p.name}" for p in (REPO / "datasets" / "published").glob("*.tsv")}
    modules = {p.relative_to(REPO).as_posix() for p in (REPO / "bench").rglob("*.py") if "__pycache__" not in p.parts}
    assert adapters and manifests and "bench/pipeline/runner.py" in modules  # every subpackage is packaged
    assert adapters | manifests | modules <= names
    assert not any(n.startswith(("tests/", "codecs/", "datasets/")) or "/cache/" in n for n in names)
    entry_points = (next(installed.glob("codec_bench-*.dist-info")) / "entry_points.txt").read_text()
    assert "codec-bench = bench.cli:main" in entry_points


def test_installed_copy_lists_and_runs_outside_the_checkout(installed, tmp_path):
    env = outside(installed, tmp_path)
    checkout_env = {**env, "PYTHONPATH": str(REPO)}
    listings = run_together(
        ([sys.executable, "-c", "import bench.adapters as a; print(a.__file__); print(a.BUILTIN_CODECS_DIR)"], env),
        ([sys.executable, "-m", "bench", "codecs"], env), ([sys.executable, "-m", "bench", "codecs"], checkout_env),
        ([sys.executable, "-m", "bench", "datasets"], env), ([sys.executable, "-m", "bench", "datasets"], checkout_env),
        cwd=tmp_path)
    where = listings[0].split()
    assert Path(where[0]).is_relative_to(installed) and Path(where[1]) == installed / "bench" / "codecs_builtin"

    codecs = listings[1]
    assert codecs == listings[2]  # the installed copy lists what the checkout lists
    assert "jpeg" in codecs and "available" in codecs

    datasets = listings[3]
    assert datasets == listings[4]
    for path in (REPO / "datasets").glob("*.json"):
        assert f"\n{path.stem} " in datasets

    out = tmp_path / "out"
    run([sys.executable, "-m", "bench", "run", "--dataset", "sample", "--codecs", "jpeg:q=30/70", "--jobs", "1",
         "--metrics", "psnr-rgb", "--quiet", "--out", str(out)], cwd=tmp_path, env=env)
    doc = json.loads((out / "jpeg.json").read_text())
    assert doc["results"]["quality"] == [30, 70] and len(doc["results"]["bpp"]) == 2
    per_image = (out / "per_image.csv").read_text().splitlines()
    assert len(per_image) == 1 + 5 * 2  # header + 5 sample images x 2 qualities


def test_installed_copy_keeps_data_out_of_site_packages(installed, tmp_path):
    env = outside(installed, tmp_path)
    del env["BENCH_DATA"]
    listing = run([sys.executable, "-m", "bench", "datasets"], cwd=tmp_path, env=env).stdout
    assert f"data folder: {tmp_path / 'cache' / 'codec-bench' / 'datasets'}" in listing
