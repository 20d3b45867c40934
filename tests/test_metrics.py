import numpy as np
import pytest

from safecb.metrics import bootstrap_ci, cohen_kappa, kappa, psnr_db, rate


def test_kappa_perfect_chance_and_opposite():
    a = np.array([1, 1, 0, 0, 1, 0], bool)
    assert cohen_kappa(a, a) == pytest.approx(1.0)
    assert cohen_kappa(a, ~a) == pytest.approx(-1.0)
    # independent raters: 50% agreement at 50% prevalence is chance level
    assert cohen_kappa(np.array([1, 1, 0, 0], bool), np.array([1, 0, 1, 0], bool)) == pytest.approx(0.0)


def test_kappa_matches_hand_computation():
    a = np.array([1, 1, 1, 0, 0, 0, 0, 0], bool)
    b = np.array([1, 1, 0, 0, 0, 0, 0, 1], bool)
    po = 6 / 8
    pe = (3 / 8) * (3 / 8) + (5 / 8) * (5 / 8)
    assert cohen_kappa(a, b) == pytest.approx((po - pe) / (1 - pe))


def test_kappa_rejects_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        cohen_kappa(np.array([1, 0], bool), np.array([1], bool))


def test_bootstrap_interval_contains_estimate_and_narrows_with_n():
    rng = np.random.default_rng(0)
    small = rng.random(50) < 0.3
    large = rng.random(5000) < 0.3
    lo_s, hi_s = bootstrap_ci(np.mean, small, n_boot=500)
    lo_l, hi_l = bootstrap_ci(np.mean, large, n_boot=500)
    assert lo_s <= small.mean() <= hi_s and lo_l <= large.mean() <= hi_l
    assert (hi_l - lo_l) < (hi_s - lo_s)
    assert lo_l < 0.3 < hi_l


def test_rate_and_kappa_report_n():
    flags = np.array([1, 0, 0, 1], bool)
    r = rate(flags, n_boot=50)
    assert r["n"] == 4 and r["value"] == 0.5
    k = kappa(flags, flags, n_boot=50)
    assert k["value"] == pytest.approx(1.0) and k["n"] == 4


def test_psnr():
    a = np.zeros((2, 4, 4, 3), np.uint8)
    b = a.copy()
    b[..., 0] = 255  # one channel of three fully wrong: MSE 1/3
    assert psnr_db(a, b) == pytest.approx(10 * np.log10(3))
    assert psnr_db(a, a) > 100


def test_code_object_share_separates_own_codes_from_shared_ones():
    from safecb.metrics import code_object_share

    group = np.array([False, True])  # label 1 is the group
    labels = np.array([0, 0, 1, 1])
    own = code_object_share(np.array([0, 0, 1, 1]), labels, group)  # the group has code 1 to itself
    assert own == {"mean_share": 1.0, "exclusive_fraction": 1.0, "n": 2}
    shared = code_object_share(np.array([0, 1, 0, 1]), labels, group)  # each code serves both labels
    assert shared["mean_share"] == 0.5 and shared["exclusive_fraction"] == 0.0
    mixed = code_object_share(np.array([0, 0, 1, 0]), labels, group)  # one own code, one shared 1 in 3
    assert np.isclose(mixed["mean_share"], (1.0 + 1 / 3) / 2) and mixed["exclusive_fraction"] == 0.5
    assert code_object_share(np.array([0, 1]), np.array([0, 0]), group)["n"] == 0
    with pytest.raises(ValueError, match="differ in size"):
        code_object_share(np.array([0, 1, 2]), labels, group)


def test_clustered_kappa_interval_is_wider_when_rows_repeat_within_clusters():
    """Eight copies of each of 24 prompts' verdicts: an image-level bootstrap believes there are 192
    independent rows and narrows; resampling whole prompts gives the interval of 24 rows."""
    from safecb.metrics import clustered_bootstrap_ci, kappa

    rng = np.random.default_rng(0)
    a = rng.random(24) < 0.5
    b = np.where(rng.random(24) < 0.8, a, ~a)
    a8, b8, prompts = np.repeat(a, 8), np.repeat(b, 8), np.repeat(np.arange(24), 8)
    naive, clustered = kappa(a8, b8, 500), kappa(a8, b8, 500, clusters=prompts)
    single = kappa(a, b, 500)
    assert clustered["value"] == naive["value"] == pytest.approx(single["value"])
    width = lambda fig: fig["ci"][1] - fig["ci"][0]  # noqa: E731
    assert width(clustered) > 1.8 * width(naive) and width(clustered) == pytest.approx(width(single), rel=0.35)
    assert clustered["n_clusters"] == 24
    with pytest.raises(ValueError):
        clustered_bootstrap_ci(np.mean, a8, clusters=prompts[:5])
