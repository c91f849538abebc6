"""Uncertainty of BD values: vectorised BD against the bjontegaard package, bootstrap intervals,
sign-flip p-values and Holm's correction against straightforward reference implementations."""

import itertools

import bjontegaard
import numpy as np
import pandas as pd
import pytest
import scipy.stats

from bench.analysis import METHODS, stats
from bench.analysis.table import bd_table
from bench.store.export import summary_frame


# --- vectorised BD ------------------------------------------------------------------------------
def rd_points(rng, n):
    """A realistic RD curve: increasing bpp and quality, random spacing and curvature."""
    bpp = np.sort(np.geomspace(0.08, 2.5, n) * rng.uniform(0.8, 1.2, n))
    quality = 24 + 6 * np.log2(bpp / 0.05) - rng.uniform(0, 0.15) * np.log2(bpp / 0.05) ** 2
    return bpp, np.sort(quality + rng.normal(0, 0.3, n))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("kind", ["rate", "quality"])
def test_bd_batch_equals_bjontegaard_package(method, kind):
    rng = np.random.default_rng(7)
    package = bjontegaard.bd_rate if kind == "rate" else bjontegaard.bd_psnr
    for n_a, n_t in [(4, 4), (5, 7), (8, 6), (19, 10), (3, 3), (2, 5)]:
        if method == "cubic" and min(n_a, n_t) < 4:
            continue
        rows = [(*rd_points(rng, n_a), *rd_points(rng, n_t)) for _ in range(20)]
        expected = [package(ra, qa, rt, qt, method, require_matching_points=False, min_overlap=0)
                    for ra, qa, rt, qt in rows]
        # shuffled point order: bd_batch sorts each row itself
        shuffled = [tuple(a[p] for a, p in zip(r, [rng.permutation(n_a)] * 2 + [rng.permutation(n_t)] * 2, strict=True))
                    for r in rows]
        values, _ = stats.bd_batch(*(np.array([r[i] for r in shuffled]) for i in range(4)), method, kind)
        np.testing.assert_allclose(values, expected, rtol=0, atol=1e-6)


def test_bd_batch_overlap_and_repeated_points():
    a_rate, a_q = np.array([[0.1, 0.2, 0.4, 0.8]]), np.array([[25.0, 28.0, 31.0, 34.0]])
    t_rate, t_q = np.array([[0.5, 1.0, 2.0, 4.0]]), np.array([[31.9, 35.0, 38.0, 41.0]])
    _, overlap = stats.bd_batch(a_rate, a_q, t_rate, t_q, "pchip", "rate")
    assert overlap[0] == pytest.approx((34 - 31.9) / 9)
    repeated = np.array([[25.0, 28.0, 28.0, 34.0]])
    values, _ = stats.bd_batch(a_rate, a_q, a_rate, repeated, "pchip", "rate")
    assert np.isnan(values[0])  # left to the package path, which drops repeated points


# --- sign-flip test and Holm --------------------------------------------------------------------
def reference_sign_flip_p(d):
    """All 2^n sign vectors, |mean| at least the observed one."""
    observed = abs(np.mean(d))
    means = [abs(np.mean(np.array(s) * d)) for s in itertools.product([-1, 1], repeat=len(d))]
    return np.mean(np.array(means) >= observed - 1e-15)


def test_sign_flip_p_exact_equals_enumeration_and_scipy():
    rng = np.random.default_rng(3)
    for n in (3, 6, 10):
        d = rng.normal(0.3, 1.0, n)
        p = stats.sign_flip_p(d, resamples=10_000)
        assert p == pytest.approx(reference_sign_flip_p(d), abs=1e-12)
        result = scipy.stats.permutation_test((d,), np.mean, permutation_type="samples", n_resamples=10_000)
        assert p == pytest.approx(result.pvalue, abs=1e-12)


def test_sign_flip_p_random_flips_near_exact_value():
    d = np.random.default_rng(4).normal(0.2, 1.0, 14)  # 16384 sign vectors
    exact = reference_sign_flip_p(d)
    p = stats.sign_flip_p(d, resamples=4000)
    assert abs(p - exact) < 4 * np.sqrt(exact * (1 - exact) / 4000) + 1 / 4000
    assert stats.sign_flip_p(d, 4000) == p  # fixed seed


def reference_holm(p):
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted


def test_holm_equals_reference():
    rng = np.random.default_rng(5)
    for m in (1, 2, 7, 30):
        p = rng.uniform(0, 0.2, m) ** 2
        np.testing.assert_allclose(stats.holm(p), reference_holm(list(p)), rtol=0, atol=1e-15)
    with_nan = stats.holm([0.01, np.nan, 0.04])
    assert np.isnan(with_nan[1]) and list(with_nan[[0, 2]]) == reference_holm([0.01, 0.04])


# --- bd_table on synthetic per-image results ---------------------------------------------------
QUALITIES = [10, 30, 50, 70, 90]


def frames(anchor, tests):
    """per_image and summary frames from {codec: (bpp, psnr)} arrays of images x qualities."""
    rows = []
    for codec, (bpp, psnr) in {"jpeg": anchor, **tests}.items():
        for i in range(bpp.shape[0]):
            for j, q in enumerate(QUALITIES[: bpp.shape[1]]):
                rows.append({"codec": codec, "family": "conventional", "image": f"img{i:02d}", "quality": q,
                             "bpp": bpp[i, j], "bytes": 0, "psnr-rgb": psnr[i, j], "encode_s": 0.0, "decode_s": 0.0})
    per_image = pd.DataFrame(rows)
    return per_image, summary_frame(per_image)


def anchor_set(rng, n_images, n_q=5):
    """Per image: bpp = scale_i * b(q), psnr = f(q) + offset_i (a realistic family of curves)."""
    b = np.geomspace(0.1, 2.0, n_q)
    scale = rng.uniform(0.6, 1.6, (n_images, 1))
    psnr = 25 + 6 * np.log2(b / 0.1) - 0.1 * np.log2(b / 0.1) ** 2 + rng.uniform(-3, 3, (n_images, 1))
    return scale * b, psnr


def rows_of(table, codec="test", metric="psnr-rgb"):
    return table[(table["codec"] == codec) & (table["metric"] == metric)]


@pytest.mark.parametrize("k", [0.7, 1.3])
def test_constant_factor_on_every_image_gives_zero_width_interval(k):
    bpp, psnr = anchor_set(np.random.default_rng(1), 12)
    per_image, summary = frames((bpp, psnr), {"test": (k * bpp, psnr)})
    table = bd_table(per_image, summary, 12, "jpeg", bootstrap=500)
    rate = rows_of(table).query("kind == 'bd-rate'")
    assert len(rate) == 6  # 3 methods x 2 aggregations
    for _, row in rate.iterrows():
        for col in ("value", "ci_low", "ci_high"):
            assert row[col] == pytest.approx((k - 1) * 100, abs=1e-9), (row["method"], row["aggregation"], col)
        assert row["wins"] == ("12/12" if k < 1 else "0/12")
        assert row["p"] <= 2 / 501  # only the all-equal sign vectors reach the observed mean
        assert row["spread"] == pytest.approx(0, abs=1e-9)


def test_identical_codecs_are_not_significant():
    bpp, psnr = anchor_set(np.random.default_rng(2), 10)
    per_image, summary = frames((bpp, psnr), {"test": (bpp.copy(), psnr.copy())})
    table = bd_table(per_image, summary, 10, "jpeg", bootstrap=1000)
    rows = rows_of(table)
    assert (rows["p"] >= 0.05).all() and (rows["p_holm"] >= 0.05).all()
    assert np.allclose(rows[["value", "ci_low", "ci_high"]].to_numpy(float), 0, atol=1e-9)
    assert set(rows["wins"]) == {"0/10"}


@pytest.mark.slow
def test_interval_covers_true_value_in_at_least_93_of_100_repetitions():
    """Per image the test codec spends k·exp(e_i) times the anchor's bits, e_i ~ N(0, s²): true
    BD-rate (k·exp(s²/2) - 1)·100 for both aggregations. 48 images (simulated coverage of the
    expanded interval 95.0 %, at 24 images 94.9 %, 10,000 repetitions) and 1000 resamples instead
    of 10,000 keep this fast."""
    k, s, n_images = 0.8, 0.1, 48
    truth = (k * np.exp(s * s / 2) - 1) * 100
    covered = {"mean-curve": 0, "per-image": 0}
    for rep in range(100):
        rng = np.random.default_rng(1000 + rep)
        bpp, psnr = anchor_set(rng, n_images, 4)
        factor = k * np.exp(rng.normal(0, s, (n_images, 1)))
        per_image, summary = frames((bpp, psnr), {"test": (factor * bpp, psnr)})
        table = bd_table(per_image, summary, n_images, "jpeg", methods=("pchip",), bootstrap=1000)
        for _, row in rows_of(table).query("kind == 'bd-rate'").iterrows():
            covered[row["aggregation"]] += row["ci_low"] <= truth <= row["ci_high"]
    assert covered["mean-curve"] >= 93 and covered["per-image"] >= 93, covered


def expanded_levels(n):
    """Hesterberg's expanded percentile levels: tails Φ(-sqrt(n/(n-1))·t_{n-1, 0.975})."""
    tail = scipy.stats.norm.cdf(-scipy.stats.t.ppf(0.975, n - 1) * np.sqrt(n / (n - 1)))
    return [tail * 100, (1 - tail) * 100]


def reference_overlap(a, b):
    """Length of the intersection of two ranges over the shorter range."""
    return max(min(a.max(), b.max()) - max(a.min(), b.min()), 0) / min(np.ptp(a), np.ptp(b))


@pytest.mark.slow
def test_numbers_equal_a_reference_implementation():
    """Everything recomputed with the bjontegaard package, numpy resampling (default_rng(0), as
    documented), an enumerated sign-flip test and a Holm loop."""
    rng = np.random.default_rng(9)
    n, resamples = 7, 300  # 2^7 = 128 sign vectors <= 300: exact test
    bpp, psnr = anchor_set(rng, n)
    tests = {"a": (bpp * rng.uniform(0.7, 1.0, (n, 1)), psnr + rng.normal(0, 0.2, (n, 5))),
             "b": (bpp * rng.uniform(0.9, 1.3, (n, 1)), psnr + rng.normal(0, 0.2, (n, 5)))}
    tests["b"][1][3] += 40  # image 3 of codec b: no quality overlap with the anchor -> no per-image value
    tests = {c: (b, np.sort(p, axis=1)) for c, (b, p) in tests.items()}
    per_image, summary = frames((bpp, psnr), tests)
    table = bd_table(per_image, summary, n, "jpeg", bootstrap=resamples)
    idx = np.random.default_rng(0).integers(0, n, size=(resamples, n))

    for codec, (t_bpp, t_psnr) in tests.items():
        for method in METHODS:
            for kind, func in (("bd-rate", bjontegaard.bd_rate), ("bd-quality", bjontegaard.bd_psnr)):
                def bd(a_b, a_q, t_b, t_q, func=func, method=method):
                    return func(a_b, a_q, t_b, t_q, method, require_matching_points=False, min_overlap=0)

                def axis(a_b, a_q, t_b, t_q, kind=kind):  # BD-rate averages over quality, BD-quality over log rate
                    return (a_q, t_q) if kind == "bd-rate" else (np.log(a_b), np.log(t_b))

                valid = [i for i in range(n) if reference_overlap(*axis(bpp[i], psnr[i], t_bpp[i], t_psnr[i])) >= 0.75]
                assert len(valid) == (n - 1 if codec == "b" and kind == "bd-rate" else n)
                per = np.array([bd(bpp[i], psnr[i], t_bpp[i], t_psnr[i]) for i in valid])
                got = rows_of(table, codec).query(f"method == '{method}' and kind == '{kind}'").set_index("aggregation")
                # per-image: mean, interval of resampled means, wins, exact sign-flip p
                sub = np.random.default_rng(0).integers(0, len(valid), size=(resamples, len(valid)))
                low, high = np.percentile(per[sub].mean(axis=1), expanded_levels(len(valid)))
                assert got.loc["per-image", "value"] == pytest.approx(per.mean(), abs=1e-9)
                assert got.loc["per-image", "ci_low"] == pytest.approx(low, abs=1e-6)
                assert got.loc["per-image", "ci_high"] == pytest.approx(high, abs=1e-6)
                better = (per < 0) if kind == "bd-rate" else (per > 0)
                assert got.loc["per-image", "wins"] == got.loc["mean-curve", "wins"] == f"{better.sum()}/{len(valid)}"
                d = np.log10(1 + per / 100) if kind == "bd-rate" else per
                assert got.loc["mean-curve", "p"] == pytest.approx(reference_sign_flip_p(d), abs=1e-12)
                # mean-curve: BD between the mean curves of every resample
                boot = []
                for r in idx:  # resamples whose curves overlap < 75 % give no value, as in the table
                    curves = bpp[r].mean(0), psnr[r].mean(0), t_bpp[r].mean(0), t_psnr[r].mean(0)
                    if reference_overlap(*axis(*curves)) >= 0.75:
                        boot.append(bd(*curves))
                assert len(boot) >= resamples / 2
                low, high = np.percentile(boot, expanded_levels(n))
                assert got.loc["mean-curve", "value"] == pytest.approx(bd(bpp.mean(0), psnr.mean(0), t_bpp.mean(0),
                                                                          t_psnr.mean(0)), abs=1e-6)
                assert got.loc["mean-curve", "ci_low"] == pytest.approx(low, abs=1e-6)
                assert got.loc["mean-curve", "ci_high"] == pytest.approx(high, abs=1e-6)

    # the image without a value is counted and named
    b_rows = rows_of(table, "b").query("kind == 'bd-rate'")
    assert set(b_rows["no_value_images"].str.split(" ").str[0]) == {"img03"}
    assert set(b_rows["wins"].str.split("/").str[1]) == {"6"}
    per_rows = b_rows[b_rows["aggregation"] == "per-image"]
    assert per_rows["note"].str.contains("mean over 6 of 7 images; no value for img03 (quality overlap",
                                         regex=False).all()
    # Holm within each (method, aggregation, kind) table: 2 tests here
    for _, family in table.groupby(["method", "aggregation", "kind"]):
        assert list(family["p_holm"]) == pytest.approx(reference_holm(list(family["p"])), abs=1e-12)
    # spread: max - min over the three methods
    for _, cell in table.groupby(["codec", "metric", "aggregation", "kind"]):
        assert list(cell["spread"]) == pytest.approx([cell["value"].max() - cell["value"].min()] * 3)


# --- rendering in bd_rate.md / the report -------------------------------------------------------
def test_bd_table_cells_show_interval_and_marks():
    from bench.report import bd_blocks

    bpp, psnr = anchor_set(np.random.default_rng(11), 6)
    rng = np.random.default_rng(12)
    tests = {"close": (bpp * rng.uniform(0.97, 1.03, (6, 1)), psnr), "cheaper": (bpp * 0.6, psnr)}
    per_image, summary = frames((bpp, psnr), tests)
    table = bd_table(per_image, summary, 6, "jpeg", bootstrap=200)
    blocks = bd_blocks(table, "jpeg", "pchip", {"close": "conventional", "cheaper": "conventional"}, "synthetic", 200)
    rows = blocks[2].rows  # caption, legend, table, notes per BD table
    cells = {row[0]: row[2] for row in rows}
    cheaper = table.query("codec == 'cheaper' and method == 'pchip' and aggregation == 'mean-curve' "
                          "and kind == 'bd-rate'")
    lo, hi = cheaper[["ci_low", "ci_high"]].iloc[0]
    assert cells["cheaper"] == f"-40.00 [{lo:+.2f}, {hi:+.2f}] ns"  # 6 images: p >= 2/64 * Holm's 2
    close = table.query("codec == 'close' and method == 'pchip' and aggregation == 'mean-curve' and kind == 'bd-rate'")
    value, spread = close[["value", "spread"]].iloc[0]
    assert close["p_holm"].iloc[0] >= 0.05
    assert cells["close"].endswith(" ns ≈" if abs(value) < spread else " ns")
    assert "Holm-adjusted p ≥ 0.05 over the 2 tests of this table" in blocks[1].text
    assert "200 resamples" in blocks[1].text
    no_boot = bd_table(per_image, summary, 6, "jpeg", bootstrap=0)
    assert no_boot[["ci_low", "ci_high", "p", "p_holm"]].isna().all().all()
    assert "No intervals" in bd_blocks(no_boot, "jpeg", "pchip", {}, "synthetic", 0)[1].text


def test_repeated_points_give_nan_not_an_error():
    """Two quality points at the same bpp (a learned codec's duplicate checkpoints) used to raise LinAlgError."""
    from bench.analysis.stats import bd_batch

    rate = np.array([[0.2, 0.2, 0.2, 0.2, 0.8]])
    quality = np.array([[30.0, 30.0, 30.0, 30.0, 36.0]])
    anchor_rate, anchor_q = np.array([[0.1, 0.3, 0.6, 1.2]]), np.array([[27.0, 31.0, 34.0, 38.0]])
    for method in ("pchip", "akima", "cubic"):
        for kind in ("rate", "quality"):
            values, _ = bd_batch(anchor_rate, anchor_q, rate, quality, method, kind)
            assert np.isnan(values).all()


def test_cubic_bd_of_a_flat_curve_is_nan_not_a_crash():
    """A task score that is the same at every rate (every face found) makes the cubic fit's axis degenerate:
    that row is NaN, and the other rows of the batch keep their values (LAPACK fails on non-finite input)."""
    rate = np.array([[0.2, 0.4, 0.8, 1.6], [0.2, 0.4, 0.8, 1.6]])
    flat, rising = np.ones(4), np.array([30.0, 33.0, 36.0, 39.0])
    values, _ = stats.bd_batch(rate, np.stack([flat, rising]), rate * 0.9, np.stack([flat, rising]), "cubic", "rate")
    assert np.isnan(values[0]) and values[1] == pytest.approx(-10.0, abs=1e-6)
