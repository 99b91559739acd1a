"""Sampling error of the figures a report gives: operating-point rules, bootstrap intervals, DeLong.

- Operating points are chosen on validation and measured on test. A threshold that only just
  reaches a target on 100 validation positives misses it on new data about half the time, so
  the high-sensitivity rule asks the one-sided 95% Clopper-Pearson lower bound to reach it.
- Intervals are percentile intervals of a seeded bootstrap that resamples whole duplicate
  groups where the dataset has them (a cluster bootstrap: copies of one radiograph are not
  independent evidence), and resamples images otherwise.
- Two models on the same test images are compared by DeLong's paired test of their ROC AUCs.
"""

import math
from typing import Dict, Mapping, Optional, Sequence

import numpy as np
from scipy import stats as scipy_stats
from sklearn import metrics as skm

RESAMPLES = 2000
CONFIDENCE = 0.95
RATES = ("accuracy", "precision", "sensitivity", "specificity", "f1")


def highest_threshold_reaching(labels, scores, target: float) -> float:
  """The highest threshold whose sensitivity on these examples is at least `target` (every
  positive's score is a candidate: nothing is dropped, unlike roc_curve's default)."""
  positives = _positive_scores(labels, scores)
  needed = max(1, math.ceil(target * len(positives) - 1e-9))
  return float(positives[needed - 1])


def confident_threshold(labels, scores, target: float, confidence: float = CONFIDENCE) -> Dict:
  """The highest threshold whose one-sided `confidence` Clopper-Pearson lower bound of
  sensitivity reaches `target`; the lowest positive score when none does (too few positives),
  with `"target_met": False`."""
  positives = _positive_scores(labels, scores)
  n = len(positives)
  detected = np.arange(1, n + 1)
  lower = scipy_stats.beta.ppf(1.0 - confidence, detected, n - detected + 1)
  reaching = np.flatnonzero(lower >= target)
  k = int(reaching[0]) + 1 if len(reaching) else n
  return {"threshold": float(positives[k - 1]), "target_met": bool(len(reaching)),
          "validation_sensitivity": k / n, "validation_lower_bound": float(lower[k - 1]),
          "validation_positives": n}


def youden_threshold(labels, scores) -> float:
  """The threshold of the largest sensitivity + specificity - 1 (Youden's J), placed halfway
  down to the next lower score: the J-maximising threshold is itself a validation score (a
  positive's), which a positive scoring a little lower on new data would fall under."""
  scores = np.asarray(scores, float)
  fpr, tpr, thresholds = skm.roc_curve(np.asarray(labels).astype(int), scores,
                                       drop_intermediate=False)
  j = tpr - fpr
  best = int(np.flatnonzero(j >= j.max() - 1e-12)[0])  # ties (float noise): the highest
  chosen = float(min(thresholds[best], 1.0))
  below = scores[scores < chosen]
  return (chosen + float(below.max())) / 2 if below.size else chosen


def reliability_bins(labels, probabilities, bins: int = 15):
  """(mean probability, share positive, count) of each non-empty equal-width probability bin:
  what the expected calibration error weighs and the reliability diagram draws."""
  labels, probabilities = np.asarray(labels, float), np.asarray(probabilities, float)
  which = np.minimum((probabilities * bins).astype(int), bins - 1)
  used = np.unique(which)
  return (np.array([probabilities[which == b].mean() for b in used]),
          np.array([labels[which == b].mean() for b in used]),
          np.array([(which == b).sum() for b in used]))


def _positive_scores(labels, scores) -> np.ndarray:
  labels = np.asarray(labels).astype(int)
  if not labels.any():
    raise ValueError("no fractured examples to choose a sensitivity threshold on")
  return np.sort(np.asarray(scores, float)[labels == 1])[::-1]


def resample_weights(n: int, groups: Optional[Sequence] = None, resamples: int = RESAMPLES,
                     seed: int = 0) -> np.ndarray:
  """[resamples, n] how many times each example is drawn: whole groups drawn with replacement
  when `groups` is given (a cluster bootstrap), single examples otherwise."""
  rng = np.random.default_rng(seed)
  if groups is None:
    return rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(float)
  _, cluster = np.unique(np.asarray(groups), return_inverse=True)
  k = int(cluster.max()) + 1
  drawn = rng.multinomial(k, np.full(k, 1.0 / k), size=resamples)
  return drawn[:, cluster].astype(float)


def weighted_rates(labels, predicted, weights: np.ndarray) -> Dict[str, np.ndarray]:
  """The RATES of 0/1 `predicted` against `labels`, one per row of `weights`."""
  labels, predicted = np.asarray(labels).astype(bool), np.asarray(predicted).astype(bool)
  tp, fp = weights @ (labels & predicted), weights @ (~labels & predicted)
  fn, tn = weights @ (labels & ~predicted), weights @ (~labels & ~predicted)
  with np.errstate(invalid="ignore", divide="ignore"):
    return {"accuracy": (tp + tn) / (tp + tn + fp + fn), "precision": tp / (tp + fp),
            "sensitivity": tp / (tp + fn), "specificity": tn / (tn + fp),
            "f1": 2 * tp / (2 * tp + fp + fn)}


def bootstrap_intervals(labels, scores, thresholds: Mapping[str, float],
                        groups: Optional[Sequence] = None, resamples: int = RESAMPLES,
                        seed: int = 0) -> Dict:
  """95% percentile intervals: {"auc": [lo, hi], "pr_auc": ..., "<point>": {"accuracy": ...}}
  for each named threshold, from one set of resamples shared by all of them."""
  labels, scores = np.asarray(labels).astype(int), np.asarray(scores, float)
  weights = resample_weights(len(labels), groups, resamples, seed)
  result: Dict = {"method": ("cluster bootstrap over duplicate groups" if groups is not None
                             else "bootstrap over images") + f", {resamples} resamples, seed {seed}"}
  for name, threshold in thresholds.items():
    rates = weighted_rates(labels, scores >= threshold, weights)
    result[name] = {metric: _percentiles(values) for metric, values in rates.items()}
  aucs, pr_aucs = weighted_ranking_scores(labels, scores, weights)
  result["auc"], result["pr_auc"] = _percentiles(aucs), _percentiles(pr_aucs)
  return result


def weighted_ranking_scores(labels, scores, weights: np.ndarray, block: int = 256):
  """(ROC AUC, average precision) for each row of `weights` (NaN where a class is absent), as
  scikit-learn's with `sample_weight`: ties count half in the AUC and form one step in the
  precision-recall curve. Vectorised over the rows, `block` at a time (bounded memory)."""
  labels, scores = np.asarray(labels).astype(bool), np.asarray(scores, float)
  order = np.argsort(-scores, kind="stable")
  sorted_scores, positive = scores[order], labels[order]
  starts = np.r_[0, np.flatnonzero(np.diff(sorted_scores)) + 1]  # levels, highest first
  aucs, precisions = [], []
  for rows in range(0, len(weights), block):
    w = weights[rows:rows + block][:, order]
    pos = np.add.reduceat(w * positive, starts, axis=1)  # [rows, levels]
    neg = np.add.reduceat(w * ~positive, starts, axis=1)
    total_pos, total_neg = pos.sum(axis=1), neg.sum(axis=1)
    negatives_below = total_neg[:, None] - np.cumsum(neg, axis=1)
    true_pos, false_pos = np.cumsum(pos, axis=1), np.cumsum(neg, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
      aucs.append((pos * (negatives_below + 0.5 * neg)).sum(axis=1) / (total_pos * total_neg))
      precision = np.where(true_pos + false_pos > 0, true_pos / (true_pos + false_pos), 0.0)
      ap = (pos * precision).sum(axis=1) / total_pos
      precisions.append(np.where(total_neg > 0, ap, np.nan))
  return np.concatenate(aucs), np.concatenate(precisions)


def _percentiles(values: np.ndarray):
  values = values[np.isfinite(values)]
  if not len(values):
    return None
  tail = 100 * (1 - CONFIDENCE) / 2
  return [float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))]


def delong(labels, scores_a, scores_b) -> Dict:
  """DeLong's paired test of two ROC AUCs on the same examples (the fast form of Sun and Xu,
  2014): both AUCs, their difference with a 95% interval, and the two-sided p-value."""
  labels = np.asarray(labels).astype(int)
  if labels.min() == labels.max():
    raise ValueError("DeLong's test needs both classes")
  aucs, v10, v01 = [], [], []
  for scores in (scores_a, scores_b):
    auc, structural_pos, structural_neg = _structural_components(labels, np.asarray(scores, float))
    aucs.append(auc)
    v10.append(structural_pos)
    v01.append(structural_neg)
  covariance = np.cov(np.array(v10)) / len(v10[0]) + np.cov(np.array(v01)) / len(v01[0])
  variance = covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1]
  difference = float(aucs[0] - aucs[1])
  z_crit = scipy_stats.norm.ppf(1 - (1 - CONFIDENCE) / 2)
  if variance <= 0:
    p_value = 1.0 if difference == 0 else 0.0
    half = 0.0
  else:
    p_value = float(2 * scipy_stats.norm.sf(abs(difference) / math.sqrt(variance)))
    half = float(z_crit * math.sqrt(variance))
  return {"auc_a": aucs[0], "auc_b": aucs[1], "difference": difference,
          "ci95": [difference - half, difference + half], "p_value": p_value}


def _structural_components(labels: np.ndarray, scores: np.ndarray):
  """(AUC, V10 per positive, V01 per negative): each positive's share of negatives it
  outranks and each negative's share of positives outranking it, ties counting half."""
  positives, negatives = scores[labels == 1], scores[labels == 0]
  ranks_all = scipy_stats.rankdata(np.concatenate([positives, negatives]))
  ranks_pos, ranks_neg = scipy_stats.rankdata(positives), scipy_stats.rankdata(negatives)
  m, n = len(positives), len(negatives)
  v10 = (ranks_all[:m] - ranks_pos) / n
  v01 = 1.0 - (ranks_all[m:] - ranks_neg) / m
  return float(v10.mean()), v10, v01
