"""bench.adapters.tools builds a tiny real CMake project (standing in for vvenc, which takes 15 minutes) into
a per-test tool folder: install, no-op rebuild, a new folder per source, folder sources, errors."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from bench.adapters import tools
from bench.adapters.tools import ToolBuildError, build_group, build_tool, built, built_file

from .conftest import REPO

pytestmark = pytest.mark.skipif(not (shutil.which("cmake") and shutil.which("c++")),
                                reason="cmake or c++ not installed (Debian: apt-get install cmake ninja-build g++)")

CMAKE = """cmake_minimum_required(VERSION 3.10)
project(vvenc CXX)
add_executable(vvencapp hello.cpp)
"""
HELLO = '#include <cstdio>\nint main() { std::puts("vvencapp version %s"); return 0; }\n'


def source_tree(folder: Path, version: str = "0.0.1", body: str | None = None) -> Path:
    """A ``vvenc-<version>/`` source folder whose CMake project builds ``vvencapp``."""
    tree = folder / f"vvenc-{version}"
    tree.mkdir(parents=True)
    (tree / "CMakeLists.txt").write_text(CMAKE)
    (tree / "hello.cpp").write_text(body if body is not None else HELLO.replace("%s", version))
    return tree


def tarball(folder: Path, version: str = "0.0.1", body: str | None = None) -> Path:
    """``vvenc-<version>.tar.gz`` holding ``source_tree``'s files under ``vvenc-<version>/``."""
    tree = source_tree(folder / "tree", version, body)
    path = folder / f"vvenc-{version}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(tree, arcname=tree.name)
    shutil.rmtree(folder / "tree")
    return path


@pytest.fixture
def tool_env(tmp_path, monkeypatch) -> Path:
    """An empty tool folder, and no source variable set."""
    for var in ("VVC_SRC", "VVENC_SRC", "VVDEC_SRC", "COOLCHIC_SRC"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("BENCH_TOOLS", str(tmp_path / "tools"))
    return tmp_path / "tools"


def run_app(path: Path) -> str:
    return subprocess.run([str(path)], capture_output=True, text=True, check=True).stdout.strip()


def test_build_install_noop_and_new_source(tool_env, tmp_path, monkeypatch):
    src = tarball(tmp_path / "a")
    monkeypatch.setenv("VVENC_SRC", str(src))
    said: list[str] = []
    dest = build_tool("vvenc", echo=said.append)
    assert dest.parent == tool_env and dest.name.startswith("vvenc-0.0.1-")
    assert dest.name.endswith(tools.source_sha256(src)[:12])
    assert run_app(dest / "bin" / "vvencapp") == "vvencapp version 0.0.1"
    assert built("vvenc") == dest and built_file("vvenc", "vvencapp") == dest / "bin" / "vvencapp"
    assert built_file("vvenc", "nosuch") is None and built("vvdec") is None
    assert not (tool_env / ".build" / f"vvenc-{dest.name[-12:]}").exists(), "the work folder is removed"
    stamp = (dest / "BUILD.json").stat().st_mtime_ns

    said.clear()
    assert build_tool("vvenc", echo=said.append) == dest  # a no-op: same folder, nothing rebuilt
    assert said == [f"vvenc: built already in {dest}"] and (dest / "BUILD.json").stat().st_mtime_ns == stamp

    changed = tarball(tmp_path / "b", body=HELLO.replace("%s", "0.0.1 patched"))
    monkeypatch.setenv("VVENC_SRC", str(changed))
    other = build_tool("vvenc", echo=said.append)
    assert other != dest and other.name.startswith("vvenc-0.0.1-") and (dest / "BUILD.json").is_file()
    assert run_app(other / "bin" / "vvencapp") == "vvencapp version 0.0.1 patched"
    assert built("vvenc") == other, "the most recent build is the one used"


def test_source_folder_is_not_written_into(tool_env, tmp_path, monkeypatch):
    tree = source_tree(tmp_path / "clone", "0.0.2")
    before = sorted((p, p.stat().st_mtime_ns) for p in tree.rglob("*"))
    monkeypatch.setenv("VVC_SRC", str(tmp_path / "clone"))  # a folder holding the source folder
    dest = build_tool("vvenc", echo=lambda _: None)
    assert dest.name.startswith("vvenc-0.0.2-") and run_app(dest / "bin" / "vvencapp") == "vvencapp version 0.0.2"
    assert sorted((p, p.stat().st_mtime_ns) for p in tree.rglob("*")) == before


def test_no_source_names_vvc_src(tool_env, tmp_path, monkeypatch):
    monkeypatch.setattr(tools, "default_source_dirs", lambda: [tmp_path / "nothing"])
    with pytest.raises(ToolBuildError, match=r"no vvenc source found in .*nothing: set VVC_SRC"):
        build_tool("vvenc")
    # A source named explicitly is looked for only there, and a vvenc tarball is no vvdec source.
    monkeypatch.setenv("VVC_SRC", str(tarball(tmp_path / "a")))
    with pytest.raises(ToolBuildError, match=r"no vvdec source found in .*vvenc-0\.0\.1\.tar\.gz \(VVC_SRC\)"):
        build_tool("vvdec")
    with pytest.raises(ToolBuildError, match="unknown tool 'vvx'"):
        build_group("vvx")


def test_missing_cmake_names_the_debian_packages(tool_env, tmp_path, monkeypatch):
    monkeypatch.setenv("VVENC_SRC", str(tarball(tmp_path)))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(ToolBuildError) as err:
        build_tool("vvenc", echo=lambda _: None)
    message = str(err.value)
    assert "cmake" in message and "apt-get install cmake ninja-build g++" in message and "\n" not in message


def test_failing_build_shows_the_log_tail(tool_env, tmp_path, monkeypatch):
    monkeypatch.setenv("VVENC_SRC", str(tarball(tmp_path, body="int main() { return 0 }\n")))  # no ';'
    with pytest.raises(ToolBuildError) as err:
        build_tool("vvenc", echo=lambda _: None)
    message = str(err.value)
    assert "exited with status" in message and "build.log" in message and "hello.cpp" in message
    assert built("vvenc") is None, "nothing is installed"


def test_cli_without_source_is_one_line(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {**os.environ, "VVC_SRC": str(empty), "BENCH_TOOLS": str(tmp_path / "tools")}
    result = subprocess.run([sys.executable, "-m", "bench", "tools", "build", "vvc"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert "no vvenc source found" in result.stderr and "VVC_SRC" in result.stderr
    listing = subprocess.run([sys.executable, "-m", "bench", "tools", "list"], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=120)
    assert listing.returncode == 0 and "not built (make vvc)" in listing.stdout


def test_tarball_with_two_top_folders_is_refused(tool_env, tmp_path, monkeypatch):
    path = tmp_path / "vvenc-9.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name in ("a/CMakeLists.txt", "b/CMakeLists.txt"):
            info = tarfile.TarInfo(name)
            info.size = len(CMAKE)
            tar.addfile(info, io.BytesIO(CMAKE.encode()))
    monkeypatch.setenv("VVENC_SRC", str(path))
    with pytest.raises(ToolBuildError, match="does not unpack to one source folder"):
        build_tool("vvenc", echo=lambda _: None)
