"""Evaluation of a held-out split with scikit-learn: operating points, report.json, plots."""

import json
import os
from typing import Mapping, Optional

import numpy as np
from sklearn import metrics as skm

from bonefrac import plots

HIGH_SENSITIVITY = 0.95  # a missed fracture costs more than a false alarm


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


def threshold_for_sensitivity(labels, probabilities, target: float = HIGH_SENSITIVITY) -> float:
  """The highest threshold whose sensitivity on these examples is at least `target`."""
  labels = np.asarray(labels).astype(int)
  if not labels.any():
    raise ValueError("no fractured examples to choose a sensitivity threshold on")
  _, tpr, thresholds = skm.roc_curve(labels, probabilities)
  first = int(np.argmax(tpr >= target))  # tpr rises as the threshold falls
  return float(min(thresholds[first], 1.0))  # roc_curve's first threshold is +inf


def ranking_scores(labels, probabilities) -> dict:
  """ROC AUC and average precision (PR AUC); None when a class is missing."""
  labels = np.asarray(labels).astype(int)
  if labels.min() == labels.max():
    return {"auc": None, "pr_auc": None}
  return {"auc": float(skm.roc_auc_score(labels, probabilities)),
          "pr_auc": float(skm.average_precision_score(labels, probabilities))}


def evaluate(labels, probabilities, *, threshold: float = 0.5, validation_labels=None,
             validation_probabilities=None) -> dict:
  """The report's metric fields: the operating point at `threshold`, AUCs, and the
  high-sensitivity operating point chosen on validation and measured on these examples."""
  report = {**operating_point(labels, probabilities, threshold),
            **ranking_scores(labels, probabilities)}
  if validation_labels is not None and np.asarray(validation_labels).any():
    chosen = threshold_for_sensitivity(validation_labels, validation_probabilities)
    report["high_sensitivity"] = {
        "target_sensitivity": HIGH_SENSITIVITY,
        "chosen_on": "validation",
        **operating_point(labels, probabilities, chosen)}
  return report


def write_report(workdir: str, report: Mapping) -> str:
  path = os.path.join(workdir, "report.json")
  with open(path, "w") as f:
    json.dump(report, f, indent=2)
    f.write("\n")
  return path


def write_plots(workdir: str, labels, probabilities, confusion_matrix,
                history: Optional[Mapping] = None) -> list:
  """confusion_matrix.png, roc_curve.png, pr_curve.png and training_curves.png in `workdir`."""
  figures = {"confusion_matrix.png": plots.confusion_matrix_figure(confusion_matrix)}
  if np.asarray(labels).min() != np.asarray(labels).max():
    figures["roc_curve.png"] = plots.roc_figure(labels, probabilities)
    figures["pr_curve.png"] = plots.precision_recall_figure(labels, probabilities)
  if history:
    figures["training_curves.png"] = plots.training_curves_figure(history)
  for name, fig in figures.items():
    plots.save_png(fig, os.path.join(workdir, name))
  return sorted(figures)


def _ratio(numerator, denominator) -> float:
  return float(numerator / denominator) if denominator else 0.0
