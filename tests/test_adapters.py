"""Round trips of every built-in adapter on a small real image."""

import numpy as np
import pytest

from bench.adapters import Adapter, configure, discover
from bench.metrics import psnr_rgb

BUILTIN = {a.name: a for a in discover() if isinstance(a, Adapter)}


def test_builtin_codecs_available():
    assert {"jpeg", "webp", "hevc"} <= set(BUILTIN)
    for adapter in BUILTIN.values():
        assert adapter.family in ("conventional", "learned")
        assert adapter.version and adapter.description and adapter.qualities


@pytest.mark.parametrize("name", ["jpeg", "webp", "hevc"])
def test_round_trip_and_rate_monotone(name, rgb_small):
    config = configure(BUILTIN[name], {})
    low, high = sorted(config.adapter.qualities)[0], sorted(config.adapter.qualities)[-1]
    sizes, psnrs = [], []
    for quality in (low, high) if name != "hevc" else (high, low):  # hevc: low value = high quality
        data = config.encode(rgb_small, quality)
        assert isinstance(data, bytes) and len(data) > 0
        rec = config.decode(data)
        assert rec.dtype == np.uint8 and rec.shape == rgb_small.shape
        sizes.append(len(data))
        psnrs.append(psnr_rgb(rgb_small, rec))
    assert sizes[0] < sizes[1], "higher quality must cost more bytes"
    assert psnrs[0] < psnrs[1]
    assert psnrs[1] > 30


def test_decode_uses_bytes_only(rgb_small):
    """Decoding the same bytes in a fresh call gives the same image (no hidden state)."""
    config = configure(BUILTIN["hevc"], {})
    data = config.encode(rgb_small, 30)
    first = config.decode(data)
    config.encode(rgb_small, 45)  # unrelated encode in between
    assert np.array_equal(first, config.decode(bytes(data)))


@pytest.mark.parametrize("name,options", [("jpeg", {"subsampling": "4:4:4"}), ("hevc", {"chroma": "420"})])
def test_options_change_the_bitstream(name, options, rgb_small):
    default = configure(BUILTIN[name], {})
    variant = configure(BUILTIN[name], options)
    q = 50 if name == "jpeg" else 30
    assert variant.label != default.label and variant.label.startswith(name + "_")
    a, b = default.encode(rgb_small, q), variant.encode(rgb_small, q)
    assert a != b
    assert variant.decode(b).shape == rgb_small.shape


def test_hevc_container_overhead_is_small(rgb_small):
    import importlib.util

    spec = importlib.util.spec_from_file_location("hevc_mod", BUILTIN["hevc"].origin.split(":", 1)[1])
    hevc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hevc)
    data = hevc.encode(rgb_small, 40)
    overhead = hevc.container_overhead_bytes(data)
    assert 100 < overhead < 1000
    assert overhead < len(data)


@pytest.mark.parametrize("name,quality", [("jpeg", 0), ("jpeg", 101), ("hevc", 51)])
def test_out_of_range_quality_is_rejected(name, quality, rgb_small):
    with pytest.raises(ValueError, match="quality"):
        configure(BUILTIN[name], {}).encode(rgb_small, quality)
