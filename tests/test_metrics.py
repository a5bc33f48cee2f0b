"""The metrics themselves: clustering ACC/NMI/ARI, the FactorVAE score, the Frechet distance."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.linalg

from trainer.evaluate.clustering import (ari, cluster_accuracy, clustering_report, contingency,
                                         matched_confusion, nmi, save_confusion_png)
from trainer.evaluate.factorvae import FactorVAEProtocol, factorvae_score, grid_source
from trainer.evaluate.fid import frechet_distance, statistics


# -- clustering ------------------------------------------------------------------------------
def test_accuracy_of_permuted_labels_is_one():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 500)
    perm = rng.permutation(10)
    acc, mapping = cluster_accuracy(perm[labels], labels)
    assert acc == 1.0
    assert mapping == {int(perm[j]): j for j in range(10)}
    assert nmi(perm[labels], labels) == pytest.approx(1.0)
    assert ari(perm[labels], labels) == pytest.approx(1.0)


def test_known_confusion_gives_known_accuracy():
    # counts[cluster, label]; the best one-to-one map is 0->1, 1->0, 2->2: (40 + 30 + 25) / 130
    counts = np.array([[5, 40, 0], [30, 10, 5], [0, 15, 25]])
    pred = np.concatenate([np.full(n, i) for (i, j), n in np.ndenumerate(counts)])
    labels = np.concatenate([np.full(n, j) for (i, j), n in np.ndenumerate(counts)])
    np.testing.assert_array_equal(contingency(pred, labels), counts)
    acc, mapping = cluster_accuracy(pred, labels)
    assert mapping == {0: 1, 1: 0, 2: 2}
    assert acc == pytest.approx(95 / 130)
    matrix, names = matched_confusion(pred, labels, mapping)
    assert np.trace(matrix) == 95 and matrix.sum() == 130
    assert names == ["0 (s=1)", "1 (s=0)", "2 (s=2)"]


def test_extra_clusters_count_as_errors():
    labels = np.array([0, 0, 1, 1, 1, 1])
    pred = np.array([0, 0, 1, 1, 2, 2])  # 3 clusters, 2 labels: one cluster stays unmatched
    acc, mapping = cluster_accuracy(pred, labels)
    assert acc == pytest.approx(4 / 6) and len(mapping) == 2
    matrix, names = matched_confusion(pred, labels, mapping)
    assert names[-1] == "unmatched" and matrix[:, -1].sum() == 2


def _nmi_by_definition(a, b):
    p = lambda *conds: np.mean(np.logical_and.reduce(conds))  # noqa: E731
    ha = -sum(p(a == i) * math.log(p(a == i)) for i in set(a))
    hb = -sum(p(b == j) * math.log(p(b == j)) for j in set(b))
    mi = sum(p(a == i, b == j) * math.log(p(a == i, b == j) / (p(a == i) * p(b == j)))
             for i in set(a) for j in set(b) if p(a == i, b == j) > 0)
    return mi / ((ha + hb) / 2)


def _ari_by_pairs(a, b):
    """Rand-index agreement counted over every pair, then Hubert & Arabie's chance correction."""
    pairs = list(itertools.combinations(range(len(a)), 2))
    same_a = np.array([a[i] == a[j] for i, j in pairs])
    same_b = np.array([b[i] == b[j] for i, j in pairs])
    both, na, nb, total = (same_a & same_b).sum(), same_a.sum(), same_b.sum(), len(pairs)
    expected = na * nb / total
    return (both - expected) / ((na + nb) / 2 - expected)


def test_nmi_and_ari_match_their_definitions():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 4, 60)
    b = np.where(rng.random(60) < 0.6, a, rng.integers(0, 3, 60))
    assert nmi(a, b) == pytest.approx(_nmi_by_definition(a, b))
    assert ari(a, b) == pytest.approx(_ari_by_pairs(a, b))


def test_random_clusters_score_near_zero():
    rng = np.random.default_rng(2)
    a, b = rng.integers(0, 10, 20_000), rng.integers(0, 10, 20_000)
    assert abs(ari(a, b)) < 0.01 and nmi(a, b) < 0.01
    report = clustering_report(a, b)
    assert report["n"] == 20_000 and set(report["cluster_to_label"]) == {str(i) for i in range(10)}


def test_confusion_png(tmp_path):
    from PIL import Image

    matrix = np.array([[8, 2], [1, 9]])
    path = save_confusion_png(matrix, tmp_path / "c.png", ["0 (s=1)", "1 (s=0)"])
    with Image.open(path) as img:
        assert img.format == "PNG" and img.width >= 2 * 44 and img.height >= 2 * 44


# -- FactorVAE score --------------------------------------------------------------------------
SIZES = (3, 6, 40, 32, 32)
SMALL = FactorVAEProtocol(n_train_votes=300, n_eval_votes=300, n_variance_samples=2000)


def identity(factors):
    return factors


def test_oracle_encoder_scores_one():
    result = factorvae_score(SIZES, identity, lambda f: f.astype(float), SMALL)
    assert result["eval_accuracy"] == 1.0 and result["train_accuracy"] == 1.0
    assert result["classifier"] == {str(k): k for k in range(5)}
    # the same factors permuted, rescaled, plus a constant (pruned) dim: still perfect
    result = factorvae_score(SIZES, identity, lambda f: np.c_[np.zeros(len(f)), 7.0 * f[:, ::-1]], SMALL)
    assert result["eval_accuracy"] == 1.0
    assert result["active_dims"] == [1, 2, 3, 4, 5]
    assert result["classifier"] == {str(d): 5 - d for d in range(1, 6)}


def test_factorvae_protocol_takes_keywords_only():
    with pytest.raises(TypeError):
        FactorVAEProtocol(1000, 500, 5000)  # positionally this would read as batch size 1000


def test_factorvae_progress_bar_counts_every_vote_and_changes_no_result(capsys):
    noisy = np.random.default_rng(0)
    quiet = factorvae_score(SIZES, identity, lambda f: f + noisy.normal(size=f.shape), SMALL)
    noisy = np.random.default_rng(0)
    shown = factorvae_score(SIZES, identity, lambda f: f + noisy.normal(size=f.shape), SMALL, progress=True)
    assert shown["eval_votes"] == quiet["eval_votes"] and shown["train_votes"] == quiet["train_votes"]
    votes = SMALL.n_train_votes + SMALL.n_eval_votes
    assert f"{votes}/{votes}" in capsys.readouterr().err  # the bar ends full
    assert votes == sum(map(sum, shown["train_votes"])) + sum(map(sum, shown["eval_votes"]))


def test_random_codes_score_near_chance():
    rng = np.random.default_rng(3)
    protocol = FactorVAEProtocol(n_train_votes=500, n_eval_votes=1000, n_variance_samples=2000)
    result = factorvae_score(SIZES, identity, lambda f: rng.normal(size=(len(f), 10)), protocol)
    assert abs(result["eval_accuracy"] - 1 / 5) < 0.08


def test_entangled_code_scores_below_oracle():
    # two dims each mixing shape and scale equally: fixing either factor cannot be told apart
    mix = lambda f: np.c_[f[:, 0] + f[:, 1] / 2, f[:, 0] - f[:, 1] / 2, f[:, 2:]]  # noqa: E731
    score = factorvae_score(SIZES, identity, mix, SMALL)["eval_accuracy"]
    assert 0.5 < score < 0.95


def test_single_valued_factors_never_vote_and_collapsed_codes_score_zero():
    result = factorvae_score((1, 4, 4), identity, lambda f: f.astype(float), SMALL)
    assert np.asarray(result["train_votes"])[0].sum() == 0 and result["eval_accuracy"] == 1.0
    collapsed = factorvae_score((4, 4), identity, lambda f: np.full((len(f), 3), 0.5), SMALL)
    assert collapsed["num_active_dims"] == 0 and collapsed["eval_accuracy"] == 0.0
    protocol = collapsed["protocol"]
    assert protocol["batch_size"] == 64 and protocol["prune_std"] == 0.05 and protocol["factor_sizes"] == [4, 4]


def test_protocol_defaults_are_disentanglement_libs():
    p = FactorVAEProtocol()
    assert (p.batch_size, p.n_train_votes, p.n_eval_votes, p.n_variance_samples, p.prune_std) == \
        (64, 10_000, 5_000, 10_000, 0.05)


def test_grid_source_renumbers_a_subsampled_grid():
    classes = np.array(list(itertools.product([0, 1], [0, 4, 8], [0, 2])))  # like orientation every 4th
    images = np.arange(len(classes))
    sizes, observe = grid_source(images, classes)
    assert sizes == (2, 3, 2)
    np.testing.assert_array_equal(observe(np.array([[1, 2, 1], [0, 0, 0]])).numpy(), [11, 0])
    with pytest.raises(ValueError, match="full factorial"):
        grid_source(images[:-1], classes[:-1])


# -- Frechet distance --------------------------------------------------------------------------
def test_frechet_distance_closed_form_diagonal():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    v1, v2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    # diagonal Gaussians: |mu1 - mu2|^2 + sum (sqrt(v1) - sqrt(v2))^2
    expected = 5.0 + ((np.sqrt(v1) - np.sqrt(v2)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected)
    assert frechet_distance([0.0], [[1.0]], [3.0], [[4.0]]) == pytest.approx(9 + 1)


def test_frechet_distance_matches_scipy_sqrtm():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(2, 12, 12))
    s1, s2 = a @ a.T + 0.1 * np.eye(12), b @ b.T + 0.1 * np.eye(12)
    mu1, mu2 = rng.normal(size=(2, 12))
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)


def test_fid_of_a_set_with_itself_is_zero_even_when_singular():
    feats = np.random.default_rng(5).normal(size=(40, 64))  # fewer samples than dims: singular cov
    mu, sigma = statistics(feats)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(mu, sigma, mu + 1.0, sigma) == pytest.approx(64.0, rel=1e-6)
    with pytest.raises(ValueError):
        frechet_distance(mu, sigma, mu[:3], sigma[:3, :3])
    with pytest.raises(ValueError):
        statistics(feats[:1])
