"""The fast evaluation path (issue 16) gives the numbers of the straightforward one.

``evaluate_sets`` now extracts features once from a cached pool of distinct real images, shares
k-NN radii between a score and its floor, reads the synthetic features for class consistency and
memorisation, caches the real-only memorisation distances and filters SSIM with matrix products.
The reference below is the computation as it was before: every set through the extractor on its
own, every score from the plain per-pair functions, SSIM with a 1-channel convolution. FD and KID
must agree within 1e-6 relative, every count (precision/recall/density/coverage, memorisation,
class consistency) exactly, cold and warm cache alike.
"""
from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import synthetic_xrays
from xraygan.metrics.evaluate import Images, evaluate_sets

OPTS = {"n": 40, "seed": 3, "kid_subsets": 7, "kid_subset_size": 15, "ssim_pairs": 60, "device": "cpu", "features": "xray"}


@pytest.fixture(scope="module")
def sets():
    real = np.concatenate([synthetic_xrays(60, 16, 0, 1), synthetic_xrays(60, 16, 1, 2)])
    lab = np.repeat([0, 1], 60)
    rng = np.random.default_rng(0)
    train_idx = np.sort(rng.permutation(120)[:80])
    held_idx = np.setdiff1d(np.arange(120), train_idx)
    noisy = np.clip(real[rng.permutation(120)[:50]].astype(int) + rng.integers(-30, 31, (50, 16, 16)), 0, 255).astype(np.uint8)
    copies = real[train_idx[:6]]  # planted copies of training images: memorisation must count them
    fake = np.concatenate([noisy, copies])
    fake_lab = np.concatenate([lab[rng.permutation(120)[:50]], lab[train_idx[:6]]])
    classes = ["NORMAL", "PNEUMONIA"]
    return (Images(real, lab, classes), Images(fake, fake_lab, classes),
            Images(real[train_idx], lab[train_idx], classes), Images(real[held_idx], lab[held_idx], classes))


def _ssim_conv(pix: np.ndarray, pairs: int, seed: int) -> float:
    """Mean single-scale SSIM of random pairs with the plain 1-channel convolution (the old filter)."""
    import torch
    import torch.nn.functional as F

    from xraygan.metrics.diversity import _K1, _K2, _gaussian_window, window_size

    x = torch.from_numpy(pix.astype(np.float32) / 255).unsqueeze(1)
    rng = np.random.default_rng(seed)
    i = rng.integers(0, len(x), pairs)
    j = (i + rng.integers(1, len(x), pairs)) % len(x)
    taps = _gaussian_window(window_size(x.shape[-1]))
    filt = lambda t: F.conv2d(F.conv2d(t, taps.view(1, 1, 1, -1)), taps.view(1, 1, -1, 1))  # noqa: E731
    a, b = x[i], x[j]
    ma, mb = filt(a), filt(b)
    saa, sbb, sab = filt(a * a) - ma**2, filt(b * b) - mb**2, filt(a * b) - ma * mb
    cs = (2 * sab + _K2**2) / (saa + sbb + _K2**2)
    lum = (2 * ma * mb + _K1**2) / (ma**2 + mb**2 + _K1**2)
    return float((lum * cs).flatten(1).double().mean(1).mean())


def _reference(real: Images, fake: Images, train: Images, held: Images) -> dict:
    """The overall scores, class consistency and memorisation as computed before issue 16."""
    from xraygan.metrics.evaluate import draw_sample, head_mapping, heldout_subset
    from xraygan.metrics.features import get_extractor, to_tensor
    from xraygan.metrics.frechet import frechet_distance_features, kernel_inception_distance
    from xraygan.metrics.memorisation import nearest, train_nn_radius
    from xraygan.metrics.prdc import density_coverage, precision_recall

    ex = get_extractor("xray")
    feat = lambda p: ex.features(to_tensor(p, 16))  # noqa: E731
    s = draw_sample(real.labels, fake.labels, OPTS["n"], OPTS["seed"])
    fa, fb, ff = feat(real.pixels[s.a]), feat(real.pixels[s.b]), feat(fake.pixels[s.fake])
    out = {}
    for key, cand in (("value", ff), ("floor", fb)):
        kid = kernel_inception_distance(fa, cand, OPTS["kid_subsets"], OPTS["kid_subset_size"], OPTS["seed"])
        out[key] = {"fd": frechet_distance_features(fa, cand), "kid": kid[0], **precision_recall(fa, cand, 3), **density_coverage(fa, cand, 5)}
    out["ssim"] = _ssim_conv(fake.pixels[s.fake], OPTS["ssim_pairs"], OPTS["seed"]), _ssim_conv(real.pixels[s.a], OPTS["ssim_pairs"], OPTS["seed"])
    mapping = head_mapping(ex.classes, real.classes, ex.class_groups)
    pf, ph = ex.predict(to_tensor(fake.pixels[s.fake], 16)), ex.predict(to_tensor(held.pixels, 16))
    fl, hl = fake.labels[s.fake], held.labels
    out["cc"] = {c: (float(np.isin(pf[fl == ci], list(mapping[ci])).mean()), float(np.isin(ph[hl == ci], list(mapping[ci])).mean()))
                 for ci, c in enumerate(real.classes)}
    held_pix = held.pixels[heldout_subset(len(held.pixels), max(s.n, 2), OPTS["seed"])]
    for space, conv in (("pixel", lambda p: p.reshape(len(p), -1).astype(np.float32) / 255), ("feature", feat)):
        f, t, h = (np.asarray(conv(p), np.float64) for p in (fake.pixels[s.fake], train.pixels, held_pix))
        (d_f, i_f), (d_h, i_h), rad = nearest(f, t), nearest(h, t), train_nn_radius(t)
        thr = np.percentile(d_h, 1.0)
        out[space] = {"threshold": thr, "fake_below": int((d_f < thr).sum()), "heldout_below_share": float((d_h < thr).mean()),
                      "fake_median_nn": float(np.median(d_f)), "authenticity": float((d_f > rad[i_f]).mean()),
                      "authenticity_heldout": float((d_h > rad[i_h]).mean())}
    return out


def _check(res: dict, ref: dict) -> None:
    o = res["overall"]
    for key in ("value", "floor"):
        for m in ("fd", "kid"):
            assert o[m][key] == pytest.approx(ref[key][m], rel=1e-6, abs=1e-12), (m, key)
        for m in ("precision", "recall", "density", "coverage"):
            assert o[m][key] == ref[key][m], (m, key)  # shares of counts: identical
    assert o["ssim"]["value"] == pytest.approx(ref["ssim"][0], abs=1e-6)
    assert o["ssim"]["floor"] == pytest.approx(ref["ssim"][1], abs=1e-6)
    assert {c: (v["value"], v["floor"]) for c, v in res["class_consistency"].items()} == ref["cc"]
    for space in ("pixel", "feature"):
        got, want = res["memorisation"][space], ref[space]
        assert got["fake_below"] == want["fake_below"] and got["heldout_below_share"] == want["heldout_below_share"]
        assert got["authenticity"] == want["authenticity"] and got["authenticity_heldout"] == want["authenticity_heldout"]
        assert got["threshold"] == pytest.approx(want["threshold"], rel=1e-9)
        assert got["fake_median_nn"] == pytest.approx(want["fake_median_nn"], rel=1e-9)
    assert res["memorisation"]["pixel"]["fake_below"] > 0  # planted copies of training images are in the sample


def test_fast_evaluation_matches_the_straightforward_one_cold_and_warm(sets, tmp_path):
    real, fake, train, held = sets
    ref = _reference(real, fake, train, held)
    cold = evaluate_sets(real, fake, train=train, heldout=held, cache=tmp_path / "cache", **OPTS)
    _check(cold, ref)
    assert sorted(p.name.split("-")[0] for p in (tmp_path / "cache").iterdir()) == ["memo", "memo", "xray"]
    warm = evaluate_sets(real, fake, train=train, heldout=held, cache=tmp_path / "cache", **OPTS)
    _check(warm, ref)
    for k in ("overall", "per_class", "class_consistency", "memorisation"):
        assert warm[k] == cold[k]
    assert set(cold["timings"]) == {"extractor", "features", "scores", "ssim", "class_consistency", "memorisation"}


def test_the_real_feature_pool_reads_each_distinct_image_once(sets, tmp_path, monkeypatch):
    from xraygan.metrics.features import RealFeatures, get_extractor, to_tensor

    real, _, train, held = sets
    ex = get_extractor("xray")
    seen = []
    plain = ex.features
    monkeypatch.setattr(ex, "features", lambda x: seen.append(len(x)) or plain(x))
    parts = [real.pixels[50:80], train.pixels[:30], held.pixels[:20], real.pixels[50:80]]  # overlapping parts
    pool = RealFeatures(parts, ex, 16, tmp_path)
    assert seen == [len({p.tobytes() for part in parts for p in part})]  # one pass over the distinct images
    for i, p in enumerate(parts):
        np.testing.assert_array_equal(pool.part(i), plain(to_tensor(p, 16)))  # rows as separate passes give them
    seen.clear()
    again = RealFeatures(parts[::-1], ex, 16, tmp_path)  # another order of the same images: a cache hit
    assert seen == [] and np.array_equal(again.part(0), pool.part(3))
