"""Where and with what a run was measured: machine, libraries, project commit."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[2]


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit(directory: Path = PROJECT_DIR) -> str:
    """Commit of this project's checkout (with ``-dirty`` if it has local changes), or ``unknown``."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=directory, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=directory,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine_info() -> dict[str, str]:
    """CPU, OS and library versions; the GPU only when torch is already imported (a run of
    conventional codecs never pays for importing torch)."""
    import importlib.metadata
    import sys

    import numpy

    def version(package: str) -> str:
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    torch = sys.modules.get("torch")
    if torch is None:
        cuda = "not queried (torch not loaded)"
    else:
        cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return {
        "cpu": cpu_model(),
        "cores": str(os.cpu_count()),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "torch": version("torch"),
        "cuda": cuda,
    }


def run_provenance(jobs: int) -> dict[str, str]:
    return {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "commit": git_commit(), "jobs": str(jobs), **machine_info()}
