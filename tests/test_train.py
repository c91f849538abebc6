"""Training command: learns, saves checkpoints the adapter loads as is, resumes."""

import importlib.util

import numpy as np
import pytest
import torch
from PIL import Image

from bench.cli import build_parser, main
from bench.cli.train import TrainError, quality_for_lambda, train

from .conftest import REPO, photo

SPEC = importlib.util.spec_from_file_location("compressai_models_train_test", REPO / "codecs" / "compressai_models.py")
cm = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(cm)
HYPERPRIOR = next(a for a in cm.ADAPTERS if a.NAME == "hyperprior")


@pytest.fixture
def train_images(tmp_path):
    folder = tmp_path / "train"
    folder.mkdir()
    for name in ("astronaut", "coffee", "chelsea"):
        Image.fromarray(photo(128, 160, name)).save(folder / f"{name}.png")
    return folder


def args_for(data, out, *extra):
    return build_parser().parse_args(["train", "--lambda", "0.0067", "--data", str(data), "--out", str(out),
                                      "--channels", "8,12", "--batch-size", "2", "--patch-size", "64",
                                      "--lr", "1e-3", "--device", "cpu", "--quiet", *extra])


def test_quality_for_lambda():
    assert quality_for_lambda(0.0067) == 3 and quality_for_lambda(0.0130) == 4 and quality_for_lambda(0.5) == 8
    assert quality_for_lambda(8.73, "ms-ssim") == 3 and quality_for_lambda(220, "ms-ssim") == 8


@pytest.mark.slow
def test_train_learns_and_checkpoint_loads_in_adapter(train_images, tmp_path):
    out = tmp_path / "ckpt" / "bmshj2018-hyperprior"
    result = train(args_for(train_images, out, "--steps", "60"))
    assert result.steps == 60 and result.checkpoint == out / "q3-lambda0.0067.pth.tar"
    assert result.last_loss < result.first_loss / 3, "the rate-distortion loss must fall"
    state = torch.load(result.checkpoint, map_location="cpu", weights_only=True)
    assert "entropy_bottleneck._quantized_cdf" in state, "saved after model.update()"
    opts = {"metric": "mse", "checkpoints": str(out.parent), "device": "cpu"}
    assert HYPERPRIOR.setup(**opts)["qualities"] == [3]
    rgb = photo(96, 128, "coffee")
    rec = HYPERPRIOR.decode(HYPERPRIOR.encode(rgb, 3, **opts), **opts)
    assert rec.shape == rgb.shape and np.abs(rec.astype(int) - rgb).mean() < 60

    resumed = train(args_for(train_images, out, "--steps", "5", "--resume",
                             str(out / "train-state-q3-lambda0.0067.pt")))
    assert resumed.steps == 65


def test_train_errors(train_images, tmp_path, capsys):
    with pytest.raises(TrainError, match="no readable image of at least 512x512"):
        train(args_for(train_images, tmp_path / "o", "--steps", "1", "--patch-size", "512"))
    bad = tmp_path / "bad.pth.tar"
    bad.write_bytes(b"garbage")
    assert main(["train", "--lambda", "0.01", "--data", str(train_images), "--out", str(tmp_path / "o"),
                 "--steps", "1", "--channels", "8,12", "--patch-size", "64", "--resume", str(bad), "--quiet"]) == 2
    assert "bad.pth.tar: cannot load" in capsys.readouterr().err
    assert main(["train", "--arch", "nope", "--lambda", "0.01", "--data", str(train_images), "--out",
                 str(tmp_path / "o"), "--steps", "1"]) == 2
    assert "unknown architecture 'nope'" in capsys.readouterr().err
