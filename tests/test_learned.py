"""CompressAI learned codecs: bitstream, round trip, equality with eval_model, weights errors."""

import hashlib
import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from compressai.models import FactorizedPrior, ScaleHyperprior
from compressai.utils.eval_model.__main__ import inference, load_checkpoint
from compressai.zoo import image as zoo

from bench.adapters import Adapter, discover, learned, select
from bench.datasets import resolve_dataset
from bench.metrics import compute_metrics
from bench.pipeline.runner import run_benchmark
from bench.store import Store

from .conftest import REPO, SHARED, photo

pytestmark = pytest.mark.slow  # runs learned codecs (torch) through the harness

SPEC = importlib.util.spec_from_file_location("compressai_models_under_test", REPO / "codecs" / "compressai_models.py")
cm = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(cm)
HYPERPRIOR = next(a for a in cm.ADAPTERS if a.NAME == "hyperprior")


def tiny_checkpoints(folder: Path, qualities=(1, 2), cls=ScaleHyperprior) -> Path:
    """Randomly initialised small models (N=8, M=12), saved like the training command does."""
    folder.mkdir(parents=True, exist_ok=True)
    for q in qualities:
        torch.manual_seed(q)
        model = cls(8, 12)
        model.update(force=True)
        torch.save(model.state_dict(), folder / f"q{q}-lambda0.01.pth.tar")
    return folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return tiny_checkpoints(tmp_path_factory.mktemp("ckpt") / "bmshj2018-hyperprior")


def options(checkpoints, device="cpu"):
    return {"metric": "mse", "checkpoints": str(checkpoints), "device": device}


def test_pack_unpack_and_header_size():
    strings = [[b"abc"], [b"\x00" * 7]]
    data = learned.pack(3, 512, 768, [4, 6], strings)
    assert len(data) == learned.header_bytes(2) + 10 == 11 + 8 + 10
    assert learned.unpack(data) == (3, 512, 768, [4, 6], strings)
    with pytest.raises(ValueError, match="does not match its header"):
        learned.unpack(data + b"x")
    with pytest.raises(ValueError, match="too short"):
        learned.unpack(data[:5])


def test_round_trip_from_bytes_alone(tiny):
    rgb = photo(100, 150)  # not a multiple of 64: padded and cropped back
    data = HYPERPRIOR.encode(rgb, 2, **options(tiny.parent))
    _, height, width, _shape, strings = learned.unpack(data)
    assert (height, width) == (100, 150) and len(strings) == 2
    assert len(data) == learned.header_bytes(2) + sum(len(s[0]) for s in strings)
    learned._MODELS.clear()  # a fresh process: nothing but the bytes and the weights
    rec = HYPERPRIOR.decode(data, **options(tiny.parent))
    assert rec.shape == rgb.shape and rec.dtype == np.uint8
    assert np.array_equal(rec, HYPERPRIOR.decode(data, **options(tiny.parent)))


def _eval_model_check(folder: Path, quality: int, rgb: np.ndarray):
    path = learned.checkpoint_files(folder)[quality]
    theirs = inference(load_checkpoint("bmshj2018-hyperprior", False, str(path)),
                       torch.from_numpy(rgb.copy()).permute(2, 0, 1).float().div(255))
    opts = options(folder)
    data = HYPERPRIOR.encode(rgb, quality, **opts)
    ours = compute_metrics(rgb, HYPERPRIOR.decode(data, **opts))
    pixels = rgb.shape[0] * rgb.shape[1]
    # eval_model computes in float32: one float32 step at 27 dB is 1.9e-6 dB, so compare to 1e-6 relative
    assert ours["psnr-rgb"] == pytest.approx(theirs["psnr-rgb"], rel=1e-6, abs=0)
    # eval_model's MS-SSIM is pytorch-msssim in float32, whose own error against the float64 definition is up to
    # 4.6e-5 on Kodak (tests/test_metric_engine.py FLOAT32_ERROR); our engine is within that of float64 too
    assert ours["ms-ssim-rgb"] == pytest.approx(theirs["ms-ssim-rgb"], rel=0, abs=1e-4)
    assert len(data) * 8 / pixels == pytest.approx(theirs["bpp"] + learned.header_bytes(2) * 8 / pixels, abs=1e-12)


def test_equal_to_compressai_eval_model_tiny(tiny):
    _eval_model_check(tiny, 1, photo(192, 256, "coffee"))


def test_equal_to_compressai_eval_model_shared_checkpoint():
    folder = SHARED / "models" / "bmshj2018-hyperprior"
    if not folder.is_dir():
        pytest.skip(f"{folder} not available")
    _eval_model_check(folder, 3, photo(256, 320, "astronaut"))


def test_setup_reports_weights_qualities_and_complexity(tiny):
    info = HYPERPRIOR.setup(**options(tiny.parent))
    assert info["qualities"] == [1, 2]
    assert "sha256" in info["version"] and str(tiny) in info["info"]["weights"]
    params = sum(p.numel() for p in ScaleHyperprior(8, 12).parameters())
    assert info["info"]["parameters"] == params
    assert info["info"]["encoder_kmac_per_pixel"] > 0 and info["info"]["decoder_kmac_per_pixel"] > 0


def test_kmac_per_pixel_matches_module_hooks():
    """An independent count: forward hooks on every conv and GDN layer of the encoder parts."""
    from compressai.layers import GDN

    model = ScaleHyperprior(8, 12).eval()
    size = 64
    macs = {"g_a": 0, "h_a": 0, "h_s": 0, "g_s": 0}

    def hook(part):
        def count(module, inputs, output):
            if isinstance(module, torch.nn.Conv2d):
                k = module.kernel_size[0] * module.kernel_size[1]
                macs[part] += output.numel() * module.in_channels // module.groups * k
            elif isinstance(module, torch.nn.ConvTranspose2d):
                k = module.kernel_size[0] * module.kernel_size[1]
                macs[part] += inputs[0].numel() * module.out_channels * k
            elif isinstance(module, GDN):
                macs[part] += output.numel() * output.shape[1]
        return count

    for part in macs:
        for module in getattr(model, part).modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, GDN)):
                module.register_forward_hook(hook(part))
    counts = learned.complexity(model, size=size)
    pixels = size * size
    assert counts["encoder_kmac_per_pixel"] == pytest.approx((macs["g_a"] + macs["h_a"] + macs["h_s"]) / pixels / 1000,
                                                             abs=0.006)
    assert counts["decoder_kmac_per_pixel"] == pytest.approx((macs["h_s"] + macs["g_s"]) / pixels / 1000, abs=0.006)
    assert counts["parameters"] == sum(p.numel() for p in model.parameters())


def test_bad_checkpoints(tmp_path):
    folder = tmp_path / "bmshj2018-hyperprior"
    tiny_checkpoints(folder, (1,))
    (folder / "q2-corrupt.pth.tar").write_bytes(b"this is not a checkpoint\n" * 12)
    torch.manual_seed(0)
    fp = FactorizedPrior(8, 12)
    fp.update(force=True)
    torch.save(fp.state_dict(), folder / "q3-wrongarch.pth.tar")
    torch.save({"model": Path("/not/tensors")}, folder / "q4-pickle.pth.tar")
    opts = options(tmp_path)
    rgb = photo(64, 64)
    with pytest.raises(learned.CheckpointError, match=r"q2-corrupt.pth.tar: not a readable PyTorch checkpoint"):
        HYPERPRIOR.encode(rgb, 2, **opts)
    with pytest.raises(learned.CheckpointError, match=r"q3-wrongarch.pth.tar: not a bmshj2018-hyperprior state_dict"):
        HYPERPRIOR.encode(rgb, 3, **opts)
    with pytest.raises(learned.CheckpointError, match=r"q4-pickle.pth.tar: refused by torch.load\(weights_only=True\): "
                                                 r"it pickles GLOBAL pathlib"):
        HYPERPRIOR.encode(rgb, 4, **opts)
    with pytest.raises(learned.CheckpointError, match=r"no checkpoint for quality 7 \(has q1, q2, q3, q4\)"):
        HYPERPRIOR.encode(rgb, 7, **opts)
    (folder / "q1-copy.pth.tar").write_bytes((folder / "q1-lambda0.01.pth.tar").read_bytes())
    with pytest.raises(learned.CheckpointError, match="two checkpoints for quality 1"):
        HYPERPRIOR.encode(rgb, 1, **opts)
    with pytest.raises(learned.CheckpointError, match="does not exist"):
        HYPERPRIOR.setup(**options(tmp_path / "nowhere"))


def test_zoo_weights_from_torch_hub_cache_and_offline_message(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv(learned.CHECKPOINT_ENV, raising=False)  # setup reads it: empty checkpoints = the zoo
    monkeypatch.setattr(cm, "url_reachable", lambda url, timeout=5.0: "URLError: offline (test)")
    zoo_opts = {"metric": "mse", "checkpoints": "", "device": "cpu"}
    with pytest.raises(learned.CheckpointError) as err:
        HYPERPRIOR.setup(**zoo_opts)
    url, cached = learned.zoo_file("bmshj2018-hyperprior", "mse", 1)
    assert url in str(err.value) and str(cached.parent) in str(err.value)
    # Other bytes under the official names (a stale or foreign file) are refused, naming the file: torch.hub
    # checks the SHA-256 prefix in a zoo file's name only when it downloads it.
    weights = (tiny / "q1-lambda0.01.pth.tar").read_bytes()
    cached.parent.mkdir(parents=True)
    for q in HYPERPRIOR.QUALITIES:
        learned.zoo_file("bmshj2018-hyperprior", "mse", q)[1].write_bytes(weights)
    with pytest.raises(learned.CheckpointError, match=rf"{cached.name}: SHA-256 [0-9a-f]+\.\.\., not "):
        HYPERPRIOR.setup(**zoo_opts)
    with pytest.raises(learned.CheckpointError, match="not CompressAI's published file"):
        learned.load_model("bmshj2018-hyperprior", "mse", 2, "", "cpu")
    # Files whose bytes match their names (here the test's weights, under names carrying their own hash, as
    # the zoo's do) load from the cache, no network needed.
    own = hashlib.sha256(weights).hexdigest()[:8]
    urls = {q: f"https://example.org/zoo/bmshj2018-hyperprior-{q}-{own}.pth.tar" for q in HYPERPRIOR.QUALITIES}
    monkeypatch.setitem(zoo.model_urls["bmshj2018-hyperprior"], "mse", urls)
    for q in HYPERPRIOR.QUALITIES:
        learned.zoo_file("bmshj2018-hyperprior", "mse", q)[1].write_bytes(weights)
    info = HYPERPRIOR.setup(**zoo_opts)
    assert info["qualities"] == list(range(1, 9)) and "zoo" in info["version"]
    learned._MODELS.clear()
    rgb = photo(64, 96)
    assert HYPERPRIOR.decode(HYPERPRIOR.encode(rgb, 5, **zoo_opts), **zoo_opts).shape == rgb.shape


def test_unavailable_codec_is_skipped_with_one_line(tmp_path, monkeypatch, capsys):
    """Offline, with no checkpoints and an empty hub cache: one 'skipping' line, the run goes on.

    BENCH_CHECKPOINTS is read at setup (not when the adapter module is imported), so clearing it
    here works even when the module was imported with it set; the network is cut in-process.
    """
    import urllib.error
    import urllib.request

    from PIL import Image

    from bench.cli import main

    def offline(*args, **kwargs):
        raise urllib.error.URLError("offline (test)")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("BENCH_CHECKPOINTS", "")
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(photo(64, 64)).save(folder / "a.png")
    code = main(["run", "--dataset", str(folder), "--codecs", "jpeg,hyperprior", "--qualities", "50",
                 "--jobs", "1", "--out", str(tmp_path / "out"), "--quiet"])
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("skipping codec hyperprior"))
    assert "no weights" in line and "BENCH_CHECKPOINTS" in line and "hub/checkpoints" in line
    assert "offline (test)" in line
    assert code == 1, "a requested codec that was skipped makes the run incomplete"
    assert "1 measured" in out


def test_harness_runs_learned_codec(tiny, image_folder, tmp_path, monkeypatch):
    monkeypatch.setenv(learned.CHECKPOINT_ENV, str(tiny))
    adapters = [a for a in discover() if isinstance(a, Adapter)]
    configs, skipped = select(adapters, [f"hyperprior:checkpoints={tiny}"], device="cpu")
    assert not skipped and configs[0].qualities == (1.0, 2.0)
    report = run_benchmark(resolve_dataset(str(image_folder)), configs, tmp_path / "out", jobs=2, progress=False)
    assert report.failed == 0 and report.done == 3 * 2
    with Store(tmp_path / "out") as store:
        rows = list(store.rows("images"))
        codec = store.codecs()[0]
    assert {r["family"] for r in rows} == {"learned"} and {r["device"] for r in rows} == {"cpu"}
    assert all(math.isfinite(r["psnr-rgb"]) for r in rows)
    assert codec.info["parameters"] > 0 and "sha256" in codec.version


PLUGIN = '''
import numpy as np
NAME = "{name}"
FAMILY = "learned"
VERSION = "1"
DESCRIPTION = "test double of a learned codec's failure modes"
OPTIONS = {{"device": "cpu"}}
QUALITIES = [1]
_calls = [0]

class OutOfMemoryError(RuntimeError):
    pass

def encode(rgb, quality, device):
    if "{mode}" == "oom" and device == "cuda":
        raise OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    return (rgb.tobytes() + bytes([rgb.shape[0] % 256, rgb.shape[1] % 256])
            + rgb.shape[0].to_bytes(2, "big") + rgb.shape[1].to_bytes(2, "big"))

def decode(data, device):
    h, w = int.from_bytes(data[-4:-2], "big"), int.from_bytes(data[-2:], "big")
    rgb = np.frombuffer(data[:-6], np.uint8).reshape(h, w, 3).copy()
    _calls[0] += 1
    if "{mode}" == "flaky":
        rgb[0, 0, 0] ^= _calls[0] % 2
    return rgb
'''


@pytest.mark.parametrize("mode", ["flaky", "oom", "gpu"])
def test_decode_mismatch_oom_fallback_and_gpu_worker(mode, image_folder, tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "fake.py").write_text(PLUGIN.format(name=f"fake-{mode}", mode=mode))
    configs, _ = select([a for a in discover([plugins], builtin=False)], [f"fake-{mode}"],
                        device="cuda" if mode != "flaky" else None)
    report = run_benchmark(resolve_dataset(str(image_folder)), configs, tmp_path / "out", jobs=2, progress=False)
    if mode == "flaky":
        assert report.failed == 3
        assert all(stage == "decode-mismatch" for (_, stage, _) in report.failures)
        return
    assert report.failed == 0 and report.done == 3
    with Store(tmp_path / "out") as store:
        devices = {r["device"] for r in store.rows("images")}
    if mode == "oom":
        assert devices == {"cpu"}
        assert any("CUDA out of memory" in w and "measured on the CPU" in w for w in report.warnings)
    else:
        assert devices == {"cuda"}  # ran in the separate single GPU worker


def test_gpu_check_script_on_cpu(tiny, image_folder, tmp_path, capsys):
    """The prepared GPU check with two CPU 'devices' (cpu:1 = a separately loaded model): all identical."""
    from bench.cli.gpu_check import main

    code = main(["--dataset", str(image_folder), "--codec", "hyperprior", "--checkpoints", str(tiny.parent),
                 "--devices", "cpu,cpu:1", "--out", str(tmp_path / "check"), "--quiet"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "| hyperprior | cpu:1 → cpu | 6 | 6 | 0 | 0 | 0 |" in out  # 3 images x 2 qualities
    assert "| hyperprior | cpu → cpu:1 | 6 | 6 | 0 | 0 | 0 |" in out
    for device, folder in (("cpu", "encode-cpu"), ("cpu:1", "encode-cpu-1")):
        with Store(tmp_path / "check" / folder, writer=False) as store:
            rows = list(store.rows("images"))
        rate = len(rows) / sum(r["encode_s"] + r["decode_s"] for r in rows)
        assert f"{device:>6}: {rate:.2f} images/s" in out
