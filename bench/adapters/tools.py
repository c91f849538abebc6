"""External codec tools that the project builds from source: vvenc/vvdec (VVC) and Cool-chic's decoder.

Nothing is downloaded and no binary is committed: a tool is built once from a source tarball (or
a source folder such as a git clone) into a per-user tool folder, ``$BENCH_TOOLS`` or
``$XDG_CACHE_HOME/codec-bench/tools`` (default ``~/.cache/codec-bench/tools``)::

    <tools>/vvenc-1.9.1-1582a98e9ab9/bin/vvencapp     name-version-<first 12 hex of the source's SHA-256>
    <tools>/vvenc-1.9.1-1582a98e9ab9/BUILD.json       source, its hash, commands, seconds

A build is keyed by the source's hash (and, for Python extensions, the interpreter's ABI), so
building again is a no-op and another source builds beside it. The build runs in
``<tools>/.build/`` and the result is renamed into place only when complete, so a killed build
leaves no half-installed tool (its build folder is reused by the next attempt).

Sources are looked up in ``--source``, ``$<TOOL>_SRC`` (``VVENC_SRC``, ``VVDEC_SRC``) and
``$<GROUP>_SRC`` (``VVC_SRC``, ``COOLCHIC_SRC``): a tarball, a source folder (a git clone), or a
folder holding the tarballs. Only when none is set, in ``shared/src`` beside the checkout
(``../shared/src``), where the project's developers and CI find them.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..atomic import write_text_atomic
from ..code_identity import file_digest
from ..errors import BenchError

CHECKOUT = Path(__file__).resolve().parents[2]
DEBIAN_PACKAGES = "cmake ninja-build g++"
LOG_TAIL = 15  # lines of a failed build's log in its error


class ToolBuildError(BenchError):
    """A tool cannot be built (no source, no compiler, a failing build): one line says why."""


def tools_dir() -> Path:
    """The per-user folder that holds built tools."""
    if os.environ.get("BENCH_TOOLS"):
        return Path(os.environ["BENCH_TOOLS"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "codec-bench" / "tools"


def default_source_dirs() -> list[Path]:
    """``shared/src`` beside the checkout (and beside the working directory)."""
    return [CHECKOUT.parent / "shared" / "src", Path.cwd().parent / "shared" / "src"]


# --- build steps ---------------------------------------------------------------------------------
def _run(cmd: list[str], cwd: Path, log: Path) -> None:
    """Run one build command, appending its output to ``log``; ToolBuildError with the log's tail on failure."""
    with open(log, "ab") as out:
        out.write(f"\n$ {' '.join(cmd)}\n".encode())
        out.flush()
        status = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT).returncode
    if status != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-LOG_TAIL:]
        raise ToolBuildError(f"{Path(cmd[0]).name} exited with status {status} (full log: {log}):\n  "
                             + "\n  ".join(tail))


def _need(*commands: str) -> None:
    missing = [c for c in commands if not shutil.which(c)]
    if missing:
        raise ToolBuildError(f"building needs {' and '.join(missing)}, not found on PATH "
                             f"(Debian: apt-get install {DEBIAN_PACKAGES})")


def cmake_app(prefix: str, target: str) -> Callable[[Path, Path, Path], list[Path]]:
    """Build step for vvenc/vvdec: Release, no link-time optimisation, only the ``target`` app."""

    def build(src: Path, work: Path, log: Path) -> list[Path]:
        _need("cmake", "c++")
        generator = ["-G", "Ninja"] if shutil.which("ninja") else []
        _run(["cmake", "-S", str(src), "-B", str(work / "build"), *generator, "-DCMAKE_BUILD_TYPE=Release",
              f"-D{prefix}_ENABLE_LINK_TIME_OPT=OFF", f"-D{prefix}_TOPLEVEL_OUTPUT_DIRS=OFF"], work, log)
        _run(["cmake", "--build", str(work / "build"), "--target", target, "-j", str(os.cpu_count() or 1)], work, log)
        found = [p for p in (work / "build").rglob(target) if p.is_file() and os.access(p, os.X_OK)]
        if not found:
            raise ToolBuildError(f"the build finished but wrote no {target} under {work / 'build'}")
        return [found[0]]

    return build


def coolchic_decoder(src: Path, work: Path, log: Path) -> list[Path]:
    """Cool-chic's pybind11 extensions (its decoder, C++, no torch), built with its own setup.py."""
    _need("c++")
    try:
        import pybind11  # noqa: F401
    except ImportError:
        raise ToolBuildError(f"building Cool-chic's decoder needs pybind11: {sys.executable} -m pip install "
                             "pybind11") from None
    _run([sys.executable, "setup.py", "build_ext", "--inplace"], src, log)
    built = sorted((src / "coolchic" / "CCLIB").glob("ccdecapi_*" + str(sysconfig.get_config_var("EXT_SUFFIX"))))
    if not built:
        raise ToolBuildError(f"the build finished but wrote no ccdecapi extension under {src / 'coolchic' / 'CCLIB'}")
    return built


@dataclass(frozen=True)
class Recipe:
    """How to build one tool: where its source is found and what the build installs into ``bin/``."""

    name: str  # tool name and source prefix: vvenc-1.9.1.tar.gz, vvenc/ ...
    group: str  # what `tools build` and `make` call it: vvc, coolchic
    build: Callable[[Path, Path, Path], list[Path]]
    in_tree: bool = False  # the build writes into its source tree: work on a copy
    abi: str = ""  # part of the key (Python extensions are built for one interpreter)

    @property
    def env(self) -> str:
        return f"{self.name.upper()}_SRC"


RECIPES = {
    "vvenc": Recipe("vvenc", "vvc", cmake_app("VVENC", "vvencapp")),
    "vvdec": Recipe("vvdec", "vvc", cmake_app("VVDEC", "vvdecapp")),
    "coolchic": Recipe("coolchic", "coolchic", coolchic_decoder, in_tree=True,
                       abi=str(sysconfig.get_config_var("EXT_SUFFIX"))),
}
GROUPS = {"vvc": ("vvenc", "vvdec"), "coolchic": ("coolchic",)}


# --- sources ---------------------------------------------------------------------------------------
def _candidates(recipe: Recipe, place: Path, specific: bool = False) -> list[Path]:
    """A tarball or source folder of ``recipe`` at ``place`` (itself, or inside a folder of sources).

    ``specific``: ``place`` was named for this tool alone (``$VVENC_SRC``), so any name will do;
    otherwise a file or folder must be named after the tool (``vvenc-1.9.1.tar.gz``, ``vvenc/``).
    """
    named = specific or place.name.startswith(recipe.name)
    if named and (place.is_file() or (place.is_dir() and _looks_like_source(place))):
        return [place]
    if place.is_dir():
        found = sorted(place.glob(f"{recipe.name}-*.tar.gz")) + sorted(place.glob(f"{recipe.name}-*.tgz"))
        found += [p for p in sorted(place.glob(f"{recipe.name}*")) if p.is_dir() and _looks_like_source(p)]
        return found[-1:]  # the highest version
    return []


def _looks_like_source(folder: Path) -> bool:
    return (folder / "CMakeLists.txt").is_file() or (folder / "setup.py").is_file()


def find_source(recipe: Recipe, given: str | None = None) -> Path:
    """The source of ``recipe``: ``given``, ``$<TOOL>_SRC``, ``$<GROUP>_SRC``, else ``shared/src``.

    A source named explicitly (``given`` or a variable) is looked for only there: a wrong
    ``VVC_SRC`` is an error, not a silent fallback to another source.
    """
    named = [(str(given), "--source")] if given else []
    named += [(os.environ[v], v) for v in (recipe.env, f"{recipe.group.upper()}_SRC") if os.environ.get(v)]
    places = [(Path(p).expanduser(), why) for p, why in named] or [(d, "") for d in default_source_dirs()]
    for place, why in places:
        found = _candidates(recipe, place, specific=why == recipe.env)
        if found:
            return found[0].resolve()
    looked = ", ".join(f"{place} ({why})" if why else str(place) for place, why in places)
    raise ToolBuildError(f"no {recipe.name} source found in {looked}: set {recipe.group.upper()}_SRC to a folder "
                         f"holding {recipe.name}-*.tar.gz, to the tarball, or to its git clone")


SKIPPED_DIRS = {".git", "build", "bin", "lib", "CCLIB", "__pycache__"}


def source_sha256(source: Path) -> str:
    """SHA-256 of a tarball, or of a source folder's files (paths and contents; .git and build outputs left out)."""
    if source.is_file():
        return file_digest(source)
    digest = hashlib.sha256()
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if path.is_file() and not SKIPPED_DIRS.intersection(relative.parts[:-1]):
            digest.update(str(relative).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def source_version(source: Path) -> str:
    """``vvenc-1.9.1`` from ``vvenc-1.9.1.tar.gz`` or from a folder's name."""
    name = source.name
    for suffix in (".tar.gz", ".tgz"):
        name = name.removesuffix(suffix)
    return name


# --- building and finding ---------------------------------------------------------------------------
def install_dir(recipe: Recipe, source: Path, sha256: str) -> Path:
    key = hashlib.sha256((sha256 + recipe.abi).encode()).hexdigest() if recipe.abi else sha256
    return tools_dir() / f"{source_version(source)}-{key[:12]}"


def _unpack(source: Path, work: Path, copy: bool) -> Path:
    """The source tree to build from: the folder itself, a copy of it in ``work/src``, or the tarball
    unpacked into ``work`` (once: a failed or killed build resumes from there)."""
    if source.is_dir() and not copy:
        return source
    if not (work / ".unpacked").exists():
        if source.is_dir():
            shutil.rmtree(work / "src", ignore_errors=True)
            shutil.copytree(source, work / "src", ignore=shutil.ignore_patterns(*SKIPPED_DIRS))
        else:
            with tarfile.open(source) as tar:
                tar.extractall(work, filter="data")
        (work / ".unpacked").touch()
    if source.is_dir():
        return work / "src"
    tops = [p for p in work.iterdir() if p.is_dir() and p.name != "build"]
    if len(tops) != 1:
        raise ToolBuildError(f"{source} does not unpack to one source folder (found {len(tops)} in {work})")
    return tops[0]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (two builds of one tool wait for each other, not collide)."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_tool(name: str, source: str | None = None, echo: Callable[[str], None] = print) -> Path:
    """Build tool ``name`` unless it is built already; return its install folder (``bin/`` inside)."""
    recipe = RECIPES[name]
    src = find_source(recipe, source)
    sha256 = source_sha256(src)
    dest = install_dir(recipe, src, sha256)
    if (dest / "BUILD.json").is_file():
        echo(f"{name}: built already in {dest}")
        return dest
    work = tools_dir() / ".build" / f"{name}-{dest.name.rsplit('-', 1)[1]}"
    work.mkdir(parents=True, exist_ok=True)
    with _locked(work.parent / f"{work.name}.lock"):
        if (dest / "BUILD.json").is_file():  # another process built it while we waited
            echo(f"{name}: built already in {dest}")
            return dest
        log = work / "build.log"
        echo(f"{name}: building from {src} in {work} (log: {log}) ...")
        start = time.monotonic()
        built = recipe.build(_unpack(src, work, recipe.in_tree), work, log)
        staging = tools_dir() / f".{dest.name}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        (staging / "bin").mkdir(parents=True)
        for path in built:
            shutil.copy2(path, staging / "bin" / path.name)
        record = {"tool": name, "version": source_version(src), "source": str(src), "source_sha256": sha256,
                  "abi": recipe.abi, "seconds": round(time.monotonic() - start, 1),
                  "built": time.strftime("%Y-%m-%d %H:%M:%S"), "files": sorted(p.name for p in built)}
        write_text_atomic(staging / "BUILD.json", json.dumps(record, indent=2) + "\n")
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(staging, dest)  # complete, or not there at all
        shutil.rmtree(work, ignore_errors=True)
    echo(f"{name}: built in {record['seconds']:.0f} s -> {dest}")
    return dest


def build_group(group: str, source: str | None = None, echo: Callable[[str], None] = print) -> list[Path]:
    """Build every tool of ``group`` (``vvc``: vvenc and vvdec; ``coolchic``)."""
    if group not in GROUPS:
        raise ToolBuildError(f"unknown tool {group!r}: one of {', '.join(GROUPS)}")
    return [build_tool(name, source, echo) for name in GROUPS[group]]


def built(name: str) -> Path | None:
    """Install folder of the most recently built ``name`` for this interpreter, or None."""
    recipe = RECIPES[name]
    found = []
    for record in tools_dir().glob(f"{name}*/BUILD.json"):
        try:
            info = json.loads(record.read_text())
        except (OSError, ValueError):
            continue
        if info.get("tool") == name and info.get("abi", "") == recipe.abi:
            found.append((record.stat().st_mtime, record.parent))
    return max(found)[1] if found else None


def built_file(name: str, file: str) -> Path | None:
    """``bin/<file>`` of the most recently built ``name``, or None."""
    folder = built(name)
    path = folder / "bin" / file if folder else None
    return path if path is not None and path.is_file() else None
