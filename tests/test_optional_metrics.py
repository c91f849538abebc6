"""Opt-in metrics that need a tool (Butteraugli) or user-given weights (LPIPS, DISTS): they run with what the
user provides, are refused with a one-line reason without it, and never download."""

import io
import math
import shutil

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from bench.metrics import MetricError, compute_metrics, resolve_metrics
from bench.metrics import optional as opt

from .conftest import photo


def jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


LPIPS_CHANNELS = (64, 128, 256, 512, 512)  # VGG16 relu1_2 ... relu5_3
LPIPS_LAYERS = (3, 8, 15, 22, 29)  # their indices in torchvision's vgg16().features


@pytest.fixture
def weights(tmp_path, monkeypatch):
    """A weights folder the test makes: random VGG16, LPIPS and DISTS weights under piq's file names."""
    torch.manual_seed(0)
    vgg = torchvision.models.vgg16(weights=None).state_dict()
    torch.save(vgg, tmp_path / opt.VGG16)
    heads = [torch.rand(1, c, 1, 1) for c in LPIPS_CHANNELS]
    torch.save(heads, tmp_path / "lpips_weights.pt")
    alpha, beta = torch.rand(1, 1475, 1, 1), torch.rand(1, 1475, 1, 1)  # 1475: 3 + the VGG16 channels
    total = alpha.sum() + beta.sum()  # DISTS's weights sum to 1, so that identical images score 0
    torch.save({"alpha": alpha / total, "beta": beta / total}, tmp_path / "dists_weights.pt")
    monkeypatch.setenv(opt.WEIGHTS_ENV, str(tmp_path))
    opt.deep_model.cache_clear()
    yield vgg, heads
    opt.deep_model.cache_clear()


def lpips_by_hand(vgg_state: dict, heads: list, ref: np.ndarray, rec: np.ndarray) -> float:
    """LPIPS (Zhang et al. 2018) written out: ImageNet-normalised RGB in [0, 1], VGG16 features at relu1_2 ...
    relu5_3, unit-normalised over channels, squared differences weighted per channel, averaged over the image,
    summed over channels and layers."""
    features = torchvision.models.vgg16(weights=None).features
    features.load_state_dict({k.removeprefix("features."): v for k, v in vgg_state.items()
                              if k.startswith("features.")})
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    def taps(rgb: np.ndarray) -> list:
        h = (torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 255 - mean) / std
        out = []
        for i, layer in enumerate(features[:LPIPS_LAYERS[-1] + 1]):
            h = layer(h)
            if i in LPIPS_LAYERS:
                out.append(h / (h.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))
        return out

    with torch.no_grad():
        return sum(((a - b) ** 2 * w).sum(1).mean().item() for a, b, w in zip(taps(rec), taps(ref), heads, strict=True))


def test_lpips_and_dists_load_the_users_weights(weights):
    vgg, heads = weights
    ref = photo(64, 80)
    rec = jpeg(ref, 20)
    values = compute_metrics(ref, rec, resolve_metrics(["lpips", "dists"]))
    assert values["lpips"] == pytest.approx(lpips_by_hand(vgg, heads, ref, rec), rel=1e-4)
    assert 0 < values["dists"] < 1 and math.isfinite(values["dists"])
    same = compute_metrics(ref, ref, ("lpips", "dists"))
    assert same["lpips"] == 0 and same["dists"] == pytest.approx(0, abs=1e-6)


def test_loading_weights_leaves_torch_hub_following_torch_home(weights, tmp_path, monkeypatch):
    """The weights are lent to piq through a temporary torch.hub folder; afterwards torch.hub must follow
    TORCH_HOME again (pinning it broke later model loads, e.g. CompressAI's zoo, in the same process)."""
    import torch

    opt.deep_model.cache_clear()
    compute_metrics(photo(32, 32), photo(32, 32), ("lpips",))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert torch.hub.get_dir() == str(tmp_path / "torch" / "hub")


def test_deep_metrics_without_weights_are_refused_with_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv(opt.WEIGHTS_ENV, raising=False)
    with pytest.raises(MetricError) as err:
        resolve_metrics(["lpips"])
    assert "\n" not in str(err.value) and "BENCH_METRIC_WEIGHTS is not set" in str(err.value)
    assert "https://download.pytorch.org/models/vgg16-397923af.pth" in str(err.value)
    (tmp_path / opt.VGG16).write_bytes(b"not a checkpoint")
    (tmp_path / "dists_weights.pt").write_bytes(b"not a checkpoint")
    monkeypatch.setenv(opt.WEIGHTS_ENV, str(tmp_path))
    with pytest.raises(MetricError, match=r"missing: lpips_weights.pt \(https://github.com/"):
        resolve_metrics(["lpips"])
    opt.deep_model.cache_clear()
    with pytest.raises(ImportError, match=rf"dists: the weights in {tmp_path} do not load"):
        compute_metrics(photo(32, 32), photo(32, 32), ("dists",))
    opt.deep_model.cache_clear()


@pytest.mark.skipif(not (shutil.which("butteraugli") or shutil.which("butteraugli_main")),
                    reason="no Butteraugli tool (Debian package 'butteraugli'; .ci/run installs it)")
def test_butteraugli_runs_the_tool():
    ref = photo(96, 128)
    values = [compute_metrics(ref, jpeg(ref, q), ("butteraugli",))["butteraugli"] for q in (10, 50, 95)]
    assert values[0] > values[1] > values[2] > 0
    assert compute_metrics(ref, ref, ("butteraugli",))["butteraugli"] == 0


def test_butteraugli_missing_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("BUTTERAUGLI", raising=False)
    with pytest.raises(MetricError, match="no Butteraugli tool: install Debian's 'butteraugli'"):
        resolve_metrics(["butteraugli"])


def test_cvvdp_is_the_library_in_jod():
    pycvvdp = pytest.importorskip("pycvvdp", reason="the cvvdp package (test extra) is not installed")
    ref = photo(96, 128)
    rec = jpeg(ref, 20)
    ours = compute_metrics(ref, rec, ("cvvdp",))["cvvdp"]
    jod, _ = pycvvdp.cvvdp(display_name="standard_4k", device=torch.device("cpu")).predict(rec, ref, dim_order="HWC")
    assert ours == pytest.approx(float(jod), abs=1e-6) and ours < 10
    assert compute_metrics(ref, ref, ("cvvdp",))["cvvdp"] == pytest.approx(10, abs=1e-4)
