"""Own learned codecs without an adapter, and the cross-device decode check, end to end.

A tiny CompressionModel defined in a file of a temporary folder (never in the project), with
checkpoints saved from it after ``update(force=True)``; a zoo architecture with renamed
checkpoint files; both through ``python -m bench run --codecs ...`` and ``python -m bench report``.
"""

from __future__ import annotations

import importlib.util
import math
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from compressai.models import ScaleHyperprior
from PIL import Image

from bench.adapters import Adapter, discover, learned, select
from bench.analysis.cross_device import summary
from bench.cli import main

from .conftest import REPO, SHARED, photo

pytestmark = pytest.mark.slow  # trains and runs learned models end to end

SPEC = importlib.util.spec_from_file_location("compressai_models_own", REPO / "codecs" / "compressai_models.py")
cm = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(cm)
USER = next(a for a in cm.ADAPTERS if a.NAME == "learned")
HYPERPRIOR = next(a for a in cm.ADAPTERS if a.NAME == "hyperprior")

MODEL_FILE = '''
"""A user's own tiny learned codec (2 conv layers each side, factorized prior)."""
import os
from pathlib import Path

import torch
import torch.nn as nn
from compressai.entropy_models import EntropyBottleneck
from compressai.layers import GDN
from compressai.models import CompressionModel

QUALITIES = [1, 2, 3, 4]


class TinyPrior(CompressionModel):
    def __init__(self, N=8):
        super().__init__()
        self.entropy_bottleneck = EntropyBottleneck(N)
        self.g_a = nn.Sequential(nn.Conv2d(3, N, 5, 2, 2), GDN(N), nn.Conv2d(N, N, 5, 2, 2))
        self.g_s = nn.Sequential(nn.ConvTranspose2d(N, N, 5, 2, 2, 1), GDN(N, inverse=True),
                                 nn.ConvTranspose2d(N, 3, 5, 2, 2, 1))

    def forward(self, x):
        y_hat, likelihoods = self.entropy_bottleneck(self.g_a(x))
        return {"x_hat": self.g_s(y_hat), "likelihoods": {"y": likelihoods}}

    def compress(self, x):
        y = self.g_a(x)
        return {"strings": [self.entropy_bottleneck.compress(y)], "shape": y.size()[-2:]}

    def decompress(self, strings, shape):
        y_hat = self.entropy_bottleneck.decompress(strings[0], shape)
        return {"x_hat": self.g_s(y_hat).clamp_(0, 1)}


def build(quality, device="cpu"):
    """Loads its own weights (ckpt/tiny_<q>.pth.tar beside this file); perturbs the entropy
    parameters when built for $TINY_PERTURB_DEVICE, standing in for a device whose float
    arithmetic differs: the medians the decoder adds back are shifted (the rANS tables are
    left as they are, so decoding stays in step with the bytes and is deterministic)."""
    model = TinyPrior()
    state = torch.load(Path(__file__).parent / "ckpt" / f"tiny_{quality}.pth.tar", weights_only=True)
    model.load_state_dict(state)
    if device == os.environ.get("TINY_PERTURB_DEVICE"):
        with torch.no_grad():
            model.entropy_bottleneck.quantiles[:, :, 1] += 0.7
    return model
'''


def tiny_model_folder(root: Path) -> Path:
    """``mymodels.py`` and four checkpoints (one random model, its latent scaled 1x-64x: distinct rates)."""
    folder = root / "user"
    (folder / "ckpt").mkdir(parents=True)
    (folder / "mymodels.py").write_text(MODEL_FILE)
    spec = importlib.util.spec_from_file_location("tiny_user_models", folder / "mymodels.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for quality, scale in zip(module.QUALITIES, (1.0, 4.0, 16.0, 64.0), strict=True):
        torch.manual_seed(0)
        model = module.TinyPrior()
        with torch.no_grad():
            model.g_a[-1].weight.mul_(scale)  # finer quantisation of the same latent: more bits
            model.g_a[-1].bias.mul_(scale)
            model.g_s[0].weight.div_(scale)
        model.update(force=True)
        torch.save(model.state_dict(), folder / "ckpt" / f"tiny_{quality}.pth.tar")
    return folder


def renamed_hyperprior_checkpoints(root: Path) -> list[Path]:
    """Two ScaleHyperprior(8, 12) checkpoints under names no q<Q> rule would accept."""
    folder = root / "run1"
    folder.mkdir()
    paths = []
    for i, name in enumerate(["ck_0.0067.pth.tar", "ck_0.0018.pth.tar"]):  # rate order != name order
        torch.manual_seed(i)
        model = ScaleHyperprior(8, 12)
        with torch.no_grad():
            model.g_a[-1].weight.mul_(1 + 15 * i)  # a larger latent: another rate
        model.update(force=True)
        torch.save(model.state_dict(), folder / name)
        paths.append(folder / name)
    return paths


@pytest.fixture(scope="module")
def user_models(tmp_path_factory) -> Path:
    return tiny_model_folder(tmp_path_factory.mktemp("own"))


def images(root: Path) -> Path:
    folder = root / "images"
    folder.mkdir()
    for name, (h, w) in {"coffee": (96, 128), "chelsea": (80, 112)}.items():
        Image.fromarray(photo(h, w, name)).save(folder / f"{name}.png")
    return folder


def bench(*args: str, env: dict | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=600)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * math.log10(255**2 / mse)


# --- weights= and model= ------------------------------------------------------------------
def test_weight_files_orders(tmp_path):
    for name in ["ck_b.pth.tar", "ck_a.pth.tar", "ck_c.pt", "notes.txt"]:
        (tmp_path / name).write_bytes(b"x")
    names = lambda files: [f.name for f in files]  # noqa: E731
    assert names(learned.weight_files(str(tmp_path))) == ["ck_a.pth.tar", "ck_b.pth.tar", "ck_c.pt"]
    assert names(learned.weight_files(str(tmp_path / "ck_*.pth.tar"))) == ["ck_a.pth.tar", "ck_b.pth.tar"]
    joined = f"{tmp_path / 'ck_c.pt'}+{tmp_path / 'ck_a.pth.tar'}"
    assert names(learned.weight_files(joined)) == ["ck_c.pt", "ck_a.pth.tar"]
    assert learned.weight_file(joined, 2).name == "ck_a.pth.tar"
    with pytest.raises(learned.CheckpointError, match=r"no checkpoint for quality 3 \(2 files: 1-2\)"):
        learned.weight_file(joined, 3)
    with pytest.raises(learned.CheckpointError, match=r"missing.pth.tar does not exist"):
        learned.weight_files(f"{tmp_path / 'ck_a.pth.tar'}+{tmp_path / 'missing.pth.tar'}")
    with pytest.raises(learned.CheckpointError, match="matches no file"):
        learned.weight_files(str(tmp_path / "run9_*.pth.tar"))


def test_zoo_architecture_with_renamed_files_equals_state_dict_model(tmp_path):
    paths = renamed_hyperprior_checkpoints(tmp_path)
    weights = "+".join(str(p) for p in paths)
    opts = {"metric": "mse", "checkpoints": "", "device": "cpu", "weights": weights, "name": ""}
    info = HYPERPRIOR.setup(**opts)
    assert info["qualities"] == [1, 2]
    assert learned.files_digest(paths) in info["version"] and "ck_0.0067.pth.tar + ck_0.0018.pth.tar" in info["version"]
    rgb = photo(64, 128, "coffee")
    data = HYPERPRIOR.encode(rgb, 2, **opts)
    # quality 2 = the second file given; CompressAI's own model from that file gives the same bytes
    theirs = ScaleHyperprior.from_state_dict(torch.load(paths[1], weights_only=True)).eval()
    x = torch.from_numpy(rgb.copy()).permute(2, 0, 1).unsqueeze(0).float().div(255)
    with torch.no_grad():
        out = theirs.compress(x)  # 64 x 128 needs no padding
    assert data == learned.pack(2, 64, 128, out["shape"], out["strings"])


def test_user_model_class_factory_and_errors(user_models, tmp_path):
    rgb = photo(64, 64, "chelsea")
    ckpt = user_models / "ckpt"
    by_class = {"model": f"{user_models / 'mymodels.py'}:TinyPrior", "weights": str(ckpt / "tiny_*.pth.tar"),
                "name": "", "device": "cpu"}
    info = USER.setup(**by_class)
    assert info["qualities"] == [1, 2, 3, 4] and "source sha256" in info["version"]
    assert info["info"]["parameters"] > 0 and info["info"]["encoder_kmac_per_pixel"] > 0
    by_factory = {"model": f"{user_models / 'mymodels.py'}:build", "weights": "", "name": "", "device": "cpu"}
    assert USER.setup(**by_factory)["qualities"] == [1, 2, 3, 4]  # the module's QUALITIES
    for q in (1, 4):  # same weights by both routes: the same bitstream, decoded from the bytes
        data = USER.encode(rgb, q, **by_class)
        assert data == USER.encode(rgb, q, **by_factory)
        assert USER.decode(data, **by_class).shape == rgb.shape
    assert USER.encode(rgb, 4, **by_class) != USER.encode(rgb, 1, **by_class)  # quality i = the i-th file
    with pytest.raises(ValueError, match="needs model="):
        USER.setup(model="", weights="", name="", device="cpu")
    with pytest.raises(ValueError, match="defines no 'nothing'"):
        USER.setup(**{**by_class, "model": f"{user_models / 'mymodels.py'}:nothing"})
    with pytest.raises(ValueError, match="expected MODULE:NAME"):
        USER.setup(**{**by_class, "model": "mymodels"})
    with pytest.raises(learned.CheckpointError, match="is a class; give its checkpoints with weights="):
        USER.setup(**{**by_class, "weights": ""})
    wrong = tmp_path / "wrong.pth.tar"
    hp = ScaleHyperprior(8, 12)
    hp.update(force=True)
    torch.save(hp.state_dict(), wrong)
    with pytest.raises(learned.CheckpointError, match=r"wrong.pth.tar: cannot build .*TinyPrior for quality 1"):
        USER.setup(**{**by_class, "weights": str(wrong)})


def test_name_sets_the_label_and_weights_enter_the_version(user_models, tmp_path):
    adapters = [a for a in discover() if isinstance(a, Adapter)]
    spec = f"learned:model={user_models / 'mymodels.py'}:TinyPrior:weights={user_models / 'ckpt'}:name=tiny"
    (config,), skipped = select(adapters, [spec], device="cpu")
    assert not skipped and config.label == "tiny" and config.qualities == (1.0, 2.0, 3.0, 4.0)
    assert config.options["model"] == f"{user_models / 'mymodels.py'}:TinyPrior"  # ':' inside a value
    # retrained weights (another file content) give another version, hence no stale cached rows
    other = tmp_path / "ckpt"
    other.mkdir()
    for path in sorted((user_models / "ckpt").iterdir()):
        state = torch.load(path, weights_only=True)
        state["g_s.2.bias"] = state["g_s.2.bias"] + 0.01
        torch.save(state, other / path.name)
    (retrained,), _ = select(adapters, [spec.replace(str(user_models / "ckpt"), str(other))], device="cpu")
    assert retrained.version != config.version and retrained.label == "tiny"


# --- end to end ---------------------------------------------------------------------------
def test_own_models_end_to_end_with_cross_device_check(user_models, tmp_path):
    """CLI alone: own model (factory loading its weights, perturbed on the decode device) and a zoo
    architecture with renamed files; run with --decode-device, then report."""
    folder = images(tmp_path)
    weights = "+".join(str(p) for p in renamed_hyperprior_checkpoints(tmp_path))
    out = tmp_path / "out"
    codecs = (f"jpeg,learned:model={user_models / 'mymodels.py'}:build:name=tiny,"
              f"hyperprior:weights={weights}:name=hp-mine")
    run = bench("run", "--dataset", str(folder), "--codecs", codecs, "--device", "cpu", "--decode-device", "cpu:1",
                "--jobs", "2", "--quiet", "--out", str(out), "--metrics", "psnr-rgb",
                env={"TINY_PERTURB_DEVICE": "cpu:1"}, cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "warning (8x): tiny: bitstreams encoded on cpu decode to another image on cpu:1" in run.stdout

    db = sqlite3.connect(out / "results.sqlite")
    rows = db.execute("""SELECT c.label, x.image_hash, x.quality, x.encode_device, x.identical, x.max_abs_diff,
                                x.psnr_rgb, x.error, p.value FROM cross_device x
                         JOIN codecs c ON c.codec = x.codec AND c.options = x.options AND c.version = x.version
                         JOIN metrics p ON p.image_hash = x.image_hash AND p.codec = x.codec
                              AND p.options = x.options AND p.version = x.version AND p.quality = x.quality
                              AND p.metric = 'psnr-rgb'""").fetchall()
    names = dict(db.execute("SELECT image_hash, name FROM images"))
    assert sorted({r[0] for r in rows}) == ["hp-mine", "tiny"]  # jpeg has no device: not decoded elsewhere
    assert len(rows) == 2 * 4 + 2 * 2
    # Independent check of every tiny row: decode the bytes with the unperturbed and the perturbed model.
    os.environ["TINY_PERTURB_DEVICE"] = "cpu:1"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the run's workers (2 cores / 2 jobs)
    try:
        opts = {"model": f"{user_models / 'mymodels.py'}:build", "weights": "", "name": "tiny"}
        for label, image_hash, quality, encode_device, identical, diff, cross_psnr, error, measured in rows:
            assert encode_device == "cpu" and error == ""
            if label == "hp-mine":
                assert identical == 1 and diff == 0 and cross_psnr == pytest.approx(measured, rel=1e-12)
                continue
            rgb = np.asarray(Image.open(folder / f"{names[image_hash]}.png").convert("RGB"))
            data = USER.encode(rgb, int(quality), device="cpu", **opts)
            same, other = USER.decode(data, device="cpu", **opts), USER.decode(data, device="cpu:1", **opts)
            assert identical == 0 and diff == int(np.abs(same.astype(int) - other).max()) > 0
            assert measured == pytest.approx(psnr(rgb, same), rel=1e-6)
            assert cross_psnr == pytest.approx(psnr(rgb, other), rel=1e-6)
            assert cross_psnr != measured  # the other device's PSNR is stored beside the measured one
    finally:
        del os.environ["TINY_PERTURB_DEVICE"]
        torch.set_num_threads(threads)

    report = bench("report", str(out), "--anchor", "jpeg", cwd=tmp_path)
    assert report.returncode == 0, report.stdout + report.stderr
    bd = pd.read_csv(out / "bd_rate.csv")
    assert {"tiny", "hp-mine"} <= set(bd["codec"])
    md = (out / "report.md").read_text()
    assert "| tiny |" in (out / "bd_rate.md").read_text() and "| hp-mine |" in (out / "bd_rate.md").read_text()
    assert "## Cross-device decoding" in md
    assert "| tiny | cpu → cpu:1 | 8 | 0 | 8 | 0 |" in md
    assert "| hp-mine | cpu → cpu:1 | 4 | 4 | 0 | 0 | 0 |" in md
    table = summary(pd.read_csv(out / "cross_device.csv").fillna({"error": ""}).to_dict("records"))
    tiny = table[table["codec"] == "tiny"].iloc[0]
    assert tiny["max_abs_diff"] == max(r[5] for r in rows if r[0] == "tiny")
    assert tiny["psnr_rgb_cross"] == pytest.approx(np.mean([r[6] for r in rows if r[0] == "tiny"]), rel=1e-12)

    # A later run without --decode-device, and one with it again, compute nothing new.
    again = bench("run", "--dataset", str(folder), "--codecs", codecs, "--device", "cpu", "--decode-device", "cpu:1",
                  "--jobs", "1", "--quiet", "--out", str(out), "--metrics", "psnr-rgb", cwd=tmp_path)
    assert again.returncode == 0 and "0 measured, 50 cached" in again.stdout, again.stdout + again.stderr


def test_cross_device_decode_failure_is_reported(user_models, tmp_path, monkeypatch):
    """A decoder that raises on the other device: stored as failed with the reason, the measurement kept."""
    from bench.datasets import resolve_dataset
    from bench.pipeline.runner import run_benchmark
    from bench.store import Store

    plugins = tmp_path / "plugins"
    plugins.mkdir()
    source = ("import numpy as np\nNAME = 'devicebound'\nFAMILY = 'learned'\nVERSION = '1'\n"
              "DESCRIPTION = 'test double'\nOPTIONS = {'device': 'cpu'}\nQUALITIES = [1]\n"
              "def encode(rgb, quality, device):\n    return rgb.tobytes() + np.array(rgb.shape, '>u2').tobytes()\n"
              "def decode(data, device):\n"
              "    if device != 'cpu':\n        raise RuntimeError(f'no kernels for {device}')\n"
              "    shape = tuple(np.frombuffer(data[-6:], '>u2'))\n"
              "    return np.frombuffer(data[:-6], np.uint8).reshape(shape).copy()\n")
    (plugins / "devicebound.py").write_text(source)
    line = next(i for i, text in enumerate(source.splitlines(), 1) if "raise RuntimeError" in text)
    configs, _ = select([a for a in discover([plugins], builtin=False)], ["devicebound"])
    report = run_benchmark(resolve_dataset(str(images(tmp_path))), configs, tmp_path / "out", jobs=1,
                           progress=False, metrics=("psnr-rgb",), decode_device="meta")
    assert report.failed == 0 and report.done == 2
    assert report.warnings["devicebound: bitstreams encoded on cpu fail to decode on meta"] == 2
    with Store(tmp_path / "out", writer=False) as store:
        rows = store.cross_device_rows("images")
    error = f"RuntimeError: no kernels for meta (devicebound.py:{line})"
    assert [(r["identical"], r["error"]) for r in rows] == [(None, error)] * 2
    table = summary(rows)
    assert table[["bitstreams", "identical", "differing", "failed"]].values.tolist() == [[2, 0, 0, 2]]


def test_shared_hyperprior_renamed_has_bd_values(tmp_path):
    """The shared trained checkpoints under other names, against JPEG: real BD-rate values."""
    source = SHARED / "models" / "bmshj2018-hyperprior"
    if not source.is_dir():
        pytest.skip(f"{source} not available")
    files = sorted(source.glob("q*.pth.tar"))
    links = []
    for i, path in enumerate(files):
        links.append(tmp_path / f"run1_ck{i}.pth.tar")
        links[-1].symlink_to(path)
    folder = images(tmp_path)
    out = tmp_path / "out"
    # in this process (the end-to-end test above runs the renamed-files route through `python -m bench`)
    assert main(["run", "--dataset", str(folder), "--codecs",
                 f"jpeg,hyperprior:weights={tmp_path / 'run1_ck*.pth.tar'}:name=hp-renamed", "--device", "cpu",
                 "--jobs", "2", "--quiet", "--out", str(out), "--metrics", "psnr-rgb"]) == 0
    assert main(["report", str(out)]) == 0
    bd = pd.read_csv(out / "bd_rate.csv")
    row = bd[(bd["codec"] == "hp-renamed") & (bd["metric"] == "psnr-rgb") & (bd["method"] == "pchip")
             & (bd["aggregation"] == "mean-curve") & (bd["kind"] == "bd-rate")]
    assert len(row) == 1 and math.isfinite(row.iloc[0]["value"]) and row.iloc[0]["value"] < 0
    version = sqlite3.connect(out / "results.sqlite").execute(
        "SELECT version FROM codecs WHERE label = 'hp-renamed'").fetchone()[0]
    assert f"sha256 {learned.files_digest(links)}" in version


def test_readme_own_codec_example(tmp_path):
    """The docs' "Benchmark your own learned codec" model file (docs/own-model.md) works as shown (random weights)."""
    import re

    section = (REPO / "docs" / "own-model.md").read_text().split("# Benchmark your own learned codec", 1)[1]
    (tmp_path / "mymodels.py").write_text(re.search(r"```python\n(.*?)```", section, re.S).group(1))
    for q in (1, 2):
        torch.manual_seed(q)
        model = ScaleHyperprior(64, 96)
        model.update(force=True)
        torch.save(model.state_dict(), tmp_path / f"ck_{q}.pth.tar")
    spec = f"learned:model=mymodels.py:build:weights={tmp_path / 'ck_*.pth.tar'}:name=mine"
    assert "learned:model=mymodels.py:build:weights=" in section and "--decode-device cpu:1" in section
    images(tmp_path)
    # --jobs 1: the worker gets every core's torch threads; setup's multi-threaded torch in the parent
    # made such forked workers hang in OpenMP (every job a timeout) until setup ran on one thread
    run = bench("run", "--dataset", "images", "--codecs", spec, "--device", "cpu", "--decode-device", "cpu:1",
                "--jobs", "1", "--timeout", "120", "--quiet", "--metrics", "psnr-rgb", "--out", "out", cwd=tmp_path)
    assert run.returncode == 0 and "4 measured, 0 cached, 0 failed" in run.stdout, run.stdout + run.stderr
