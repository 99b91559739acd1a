"""Evaluation of a held-out split with scikit-learn: operating points, report.json, plots."""

import json
import os
from typing import Dict, Mapping, Optional

import numpy as np
from sklearn import metrics as skm

from bonefrac import plots, stats

HIGH_SENSITIVITY = 0.95  # a missed fracture costs more than a false alarm
HIGH_SENSITIVITY_RULE = ("the highest threshold whose one-sided 95% Clopper-Pearson lower bound "
                         "of sensitivity on the validation positives reaches the target")
BALANCED_RULE = ("the threshold of the largest sensitivity + specificity - 1 on validation (Youden's "
                 "J), halfway down to the next lower validation score")


def operating_point(labels, probabilities, threshold: float) -> dict:
  """Accuracy, precision, sensitivity, specificity, F1 and the confusion matrix at `threshold`."""
  labels = np.asarray(labels).astype(int)
  predicted = (np.asarray(probabilities) >= threshold).astype(int)
  (tn, fp), (fn, tp) = skm.confusion_matrix(labels, predicted, labels=[0, 1]).tolist()
  return {
      "threshold": float(threshold),
      "n": int(labels.size),
      "accuracy": _ratio(tp + tn, labels.size),
      "precision": _ratio(tp, tp + fp),
      "sensitivity": _ratio(tp, tp + fn),
      "specificity": _ratio(tn, tn + fp),
      "f1": _ratio(2 * tp, 2 * tp + fp + fn),
      "confusion_matrix": [[tn, fp], [fn, tp]],
  }


def ranking_scores(labels, probabilities) -> dict:
  """ROC AUC and average precision (PR AUC); None when a class is missing."""
  labels = np.asarray(labels).astype(int)
  if labels.min() == labels.max():
    return {"auc": None, "pr_auc": None}
  return {"auc": float(skm.roc_auc_score(labels, probabilities)),
          "pr_auc": float(skm.average_precision_score(labels, probabilities))}


def evaluate(labels, probabilities, *, threshold: float = 0.5, validation_labels=None,
             validation_probabilities=None, groups=None, resamples: int = stats.RESAMPLES) -> dict:
  """The report's metric fields: the operating point at `threshold`, AUCs, the high-sensitivity
  and balanced operating points chosen on validation and measured on these examples, and 95%
  intervals of all of them (`ci95`; a cluster bootstrap over `groups` when given)."""
  report = {**operating_point(labels, probabilities, threshold),
            **ranking_scores(labels, probabilities)}
  thresholds = {"default": threshold}
  validation_labels = None if validation_labels is None else np.asarray(validation_labels)
  if validation_labels is not None and 0 < validation_labels.sum() < validation_labels.size:
    chosen = stats.confident_threshold(validation_labels, validation_probabilities, HIGH_SENSITIVITY)
    balanced = stats.youden_threshold(validation_labels, validation_probabilities)
    report["high_sensitivity"] = {
        "target_sensitivity": HIGH_SENSITIVITY, "chosen_on": "validation", "rule": HIGH_SENSITIVITY_RULE,
        "validation": {k: v for k, v in chosen.items() if k != "threshold"},
        **operating_point(labels, probabilities, chosen["threshold"])}
    report["balanced"] = {"chosen_on": "validation", "rule": BALANCED_RULE,
                          **operating_point(labels, probabilities, balanced)}
    thresholds.update(high_sensitivity=chosen["threshold"], balanced=balanced)
  intervals = stats.bootstrap_intervals(labels, probabilities, thresholds, groups, resamples)
  # Per metric at the default threshold, and each chosen point's inside it.
  report["ci95"] = {"method": intervals["method"], **intervals["default"],
                    "auc": intervals["auc"], "pr_auc": intervals["pr_auc"]}
  for name in ("high_sensitivity", "balanced"):
    if name in report:
      report[name]["ci95"] = intervals[name]
  return report


def summary_rows(report: Mapping) -> list:
  """One row per operating point, each figure with its 95% interval (what training prints)."""
  rows = []
  for name, point in (("default", report), ("high_sensitivity", report.get("high_sensitivity")),
                      ("balanced", report.get("balanced"))):
    if point:
      rows.append({"operating point": name.replace("_", " "), "threshold": f"{point['threshold']:.3f}",
                   **{metric: with_interval(point[metric], point.get("ci95", {}).get(metric))
                      for metric in stats.RATES}})
  return rows


def summary_line(report: Mapping) -> str:
  """The evaluated split, its AUCs with intervals, and how the intervals were made."""
  ci = report.get("ci95", {})
  return (f"{report.get('split', 'evaluated split')} ({report['n']} images): ROC AUC "
          f"{with_interval(report.get('auc'), ci.get('auc'))}, PR AUC "
          f"{with_interval(report.get('pr_auc'), ci.get('pr_auc'))}; 95% intervals: "
          f"{ci.get('method', 'none')}")


def with_interval(value, interval) -> str:
  """0.955 [0.925, 0.980]."""
  if value is None:
    return "-"
  return f"{value:.3f}" + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "")


def write_report(workdir: str, report: Mapping) -> str:
  path = os.path.join(workdir, "report.json")
  with open(path, "w") as f:
    json.dump(report, f, indent=2)
    f.write("\n")
  return path


def write_plots(workdir: str, labels, probabilities, confusion_matrix,
                history: Optional[Mapping] = None, metrics: Optional[Mapping] = None) -> list:
  """confusion_matrix.png, roc_curve.png, pr_curve.png and training_curves.png in `workdir`;
  with `metrics` (report.json's), their titles carry the figures with 95% intervals."""
  titles = _plot_titles(metrics or {})
  figures = {"confusion_matrix.png": plots.confusion_matrix_figure(confusion_matrix,
                                                                   titles["confusion"])}
  if np.asarray(labels).min() != np.asarray(labels).max():
    figures["roc_curve.png"] = plots.roc_figure(labels, probabilities, titles["roc"])
    figures["pr_curve.png"] = plots.precision_recall_figure(labels, probabilities, titles["pr"])
  if history:
    figures["training_curves.png"] = plots.training_curves_figure(history)
  for name, fig in figures.items():
    plots.save_png(fig, os.path.join(workdir, name))
  return sorted(figures)


def _plot_titles(metrics: Mapping) -> Dict[str, str]:
  ci = metrics.get("ci95", {})

  def figure(name, key):
    return f"{name} {with_interval(metrics[key], ci.get(key))}" if metrics.get(key) is not None else name

  return {"confusion": figure("Confusion matrix at 0.5\naccuracy", "accuracy"),
          "roc": figure("ROC curve, AUC", "auc"), "pr": figure("Precision-recall curve, AP", "pr_auc")}


def _ratio(numerator, denominator) -> float:
  return float(numerator / denominator) if denominator else 0.0
