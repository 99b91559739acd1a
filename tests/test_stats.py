"""Operating-point rules, bootstrap intervals and DeLong's test (bonefrac.stats)."""

import numpy as np
import pytest
from sklearn import metrics as skm

from bonefrac import stats


def test_every_positive_score_is_a_candidate_threshold():
  # roc_curve(drop_intermediate=True) drops 0.8 here and the old rule answered 0.6.
  labels, scores = [1, 1, 1, 1, 0, 0], [.9, .8, .7, .6, .5, .1]
  assert stats.highest_threshold_reaching(labels, scores, 0.5) == 0.8
  assert stats.highest_threshold_reaching(labels, scores, 0.75) == 0.7
  assert stats.highest_threshold_reaching(labels, scores, 1.0) == 0.6


def test_the_confident_rule_holds_its_target_on_new_data_where_the_naive_rule_does_not():
  # Positive scores uniform on [0, 1]: a threshold t has true sensitivity 1 - t.
  target, naive_held, confident_held = 0.95, [], []
  for seed in range(300):
    positives = np.random.default_rng(seed).random(100)
    labels = np.r_[np.ones(100), np.zeros(5)]
    scores = np.r_[positives, np.zeros(5)]
    naive_held.append(1 - stats.highest_threshold_reaching(labels, scores, target) >= target)
    chosen = stats.confident_threshold(labels, scores, target)
    confident_held.append(1 - chosen["threshold"] >= target)
  assert np.mean(naive_held) < 0.7
  assert np.mean(confident_held) >= 0.9


def test_too_few_positives_for_the_target_says_so():
  chosen = stats.confident_threshold([1] * 10 + [0] * 3, list(np.linspace(.5, 1, 10)) + [0] * 3, .95)
  assert not chosen["target_met"] and chosen["threshold"] == 0.5
  assert chosen["validation_lower_bound"] < 0.95


def test_youden_picks_the_threshold_that_separates_best_with_a_margin():
  labels = [0, 0, 0, 1, 1, 1]
  assert stats.youden_threshold(labels, [.1, .2, .3, .7, .8, .9]) == pytest.approx(0.5)
  # J ties between 0.8 and 0.55 (2/3 each): the higher, halfway down to 0.6
  assert stats.youden_threshold(labels, [.1, .2, .6, .55, .8, .9]) == pytest.approx(0.7)


def _sample(n, seed=0):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 2, n)
  return labels, np.clip(labels * 0.3 + rng.random(n) * 0.7, 0, 1)


def test_intervals_hold_the_estimate_shrink_with_n_and_repeat_with_a_seed():
  widths = []
  for n in (60, 600):
    labels, scores = _sample(n)
    ci = stats.bootstrap_intervals(labels, scores, {"at_0.5": 0.5}, resamples=400, seed=3)
    accuracy = np.mean((scores >= 0.5) == labels)
    assert ci["at_0.5"]["accuracy"][0] <= accuracy <= ci["at_0.5"]["accuracy"][1]
    auc = skm.roc_auc_score(labels, scores)
    assert ci["auc"][0] <= auc <= ci["auc"][1]
    widths.append(ci["auc"][1] - ci["auc"][0])
    again = stats.bootstrap_intervals(labels, scores, {"at_0.5": 0.5}, resamples=400, seed=3)
    assert again == ci
  assert widths[1] < widths[0] / 2


def test_a_cluster_bootstrap_draws_copies_together_and_is_wider():
  labels, scores = _sample(100)
  labels, scores = np.repeat(labels, 3), np.repeat(scores, 3)  # each radiograph three times
  groups = np.repeat(np.arange(100), 3)
  weights = stats.resample_weights(300, groups, resamples=50)
  assert (weights.reshape(50, 100, 3) == weights.reshape(50, 100, 3)[..., :1]).all()
  clustered = stats.bootstrap_intervals(labels, scores, {"p": .5}, groups, resamples=400)
  naive = stats.bootstrap_intervals(labels, scores, {"p": .5}, resamples=400)
  assert "cluster" in clustered["method"]

  def width(ci):
    return ci[1] - ci[0]
  assert width(clustered["auc"]) > 1.4 * width(naive["auc"])


def _delong_variance_by_definition(labels, a, b):
  """DeLong's covariance from its definition, O(m n): the reference for the fast form."""
  def components(scores):
    pos, neg = scores[labels == 1], scores[labels == 0]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    return psi.mean(axis=1), psi.mean(axis=0)
  (va10, va01), (vb10, vb01) = components(a), components(b)
  s10, s01 = np.cov(np.vstack([va10, vb10])), np.cov(np.vstack([va01, vb01]))
  cov = s10 / len(va10) + s01 / len(va01)
  return cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]


def test_delong_matches_its_definition_and_sklearn():
  labels, a = _sample(80, seed=1)
  b = np.round(np.clip(a + np.random.default_rng(2).normal(0, .2, 80), 0, 1), 1)  # with ties
  result = stats.delong(labels, a, b)
  assert result["auc_a"] == pytest.approx(skm.roc_auc_score(labels, a))
  assert result["auc_b"] == pytest.approx(skm.roc_auc_score(labels, b))
  half = (result["ci95"][1] - result["ci95"][0]) / 2
  assert half == pytest.approx(1.959964 * np.sqrt(_delong_variance_by_definition(labels, a, b)))
  labels, a = _sample(400, seed=1)
  b = np.clip(a + np.random.default_rng(2).normal(0, .3, 400), 0, 1)
  assert 0 < stats.delong(labels, a, b)["p_value"] < 0.001  # b: a much noisier copy of a
  same = stats.delong(labels, a, a)
  assert same["difference"] == 0 and same["p_value"] == 1.0


def test_weighted_ranking_scores_match_scikit_learn_with_sample_weights():
  labels, scores = _sample(150, seed=4)
  scores = np.round(scores, 1)  # ties
  weights = np.random.default_rng(5).integers(0, 3, (20, 150)).astype(float)
  aucs, aps = stats.weighted_ranking_scores(labels, scores, weights, block=7)
  for w, auc, ap in zip(weights, aucs, aps):
    assert auc == pytest.approx(skm.roc_auc_score(labels, scores, sample_weight=w))
    assert ap == pytest.approx(skm.average_precision_score(labels, scores, sample_weight=w))
