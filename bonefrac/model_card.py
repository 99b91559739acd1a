"""model_card.md: what a trained model is, what it was trained and measured on, and what it is not for.

Its sections follow Google's Model Card Toolkit (model details, model parameters, quantitative
analysis, considerations) and the items of the CLAIM checklist that a run can answer for
itself (data source and splits, reference standard, partitions without overlap, performance
with confidence intervals, calibration, intended use, limitations). Everything comes from the
run's report.json, so the card says no more than was measured.
"""

import os
from typing import Dict, Mapping

from bonefrac import report as report_lib
from bonefrac import tables

NOT_A_DEVICE = ("No model trained with bonefrac is a medical device. It has not been validated "
                "clinically and must not be used to diagnose, treat or triage patients.")
SYNTHETIC = ("This model was trained and tested on synthetic radiographs (generated drawings "
             "of a long bone with or without a fracture line). Its figures show that the "
             "software works; they say nothing about real patients or real X-rays.")


def render(report: Mapping) -> str:
  """The card as Markdown, from a run's report."""
  config, data = report.get("config", {}), report.get("data", {})
  lines = [f"# Model card: {report['model']} on {report['dataset']}", "",
           "## Model details", "",
           f"- Architecture: `{report['model']}` ({_architecture(report['model'])}), "
           f"{report.get('parameters', 0):,} parameters "
           f"({report.get('trainable_parameters', 0):,} trainable at the end).",
           f"- Output: the calibrated probability that the radiograph shows a fracture "
           f"(Platt scaling: temperature {report.get('calibration', {}).get('temperature', 1.0):.3f}, "
           f"bias {report.get('calibration', {}).get('bias', 0.0):+.3f}).",
           f"- Trained with bonefrac {data.get('bonefrac_version', '?')}; files: `model.keras`, "
           "`export/` (TensorFlow Serving), report in `report.json`.", "",
           "## Intended use", "",
           "- Research and teaching: training and comparing fracture classifiers, checking a "
           "dataset for leakage, studying what a network attends to (Grad-CAM).",
           f"- {NOT_A_DEVICE}"]
  if report["dataset"].split("/")[-1].startswith("synthetic"):
    lines.append(f"- {SYNTHETIC}")
  lines += ["", "## Training data", ""] + _data_lines(report, data)
  lines += ["", "## Training settings", "",
            f"- {report.get('epochs_run')} epochs run, the weights of epoch "
            f"{report.get('best_epoch')} kept (best validation AUC); batch "
            f"{config.get('batch_size')}, learning rate {config.get('learning_rate')}, image size "
            f"{config.get('image_size')} px, precision {report.get('dtype_policy')}, "
            f"{report.get('strategy')} over {report.get('replicas')} replica(s), seed "
            f"{config.get('seed')}."]
  lines += ["", "## Quantitative analysis", ""] + _metric_lines(report)
  lines += ["", "## Limitations", ""] + _limitations(report)
  return "\n".join(lines) + "\n"


def _architecture(model: str) -> str:
  return {"cnn": "a custom convolutional network", "vgg16": "VGG16 with a new head"}.get(model, model)


def _data_lines(report: Mapping, data: Mapping):
  splits = ", ".join(f"{name} {n:,}" for name, n in data.get("splits", {}).items())
  lines = [f"- Dataset `{report['dataset']}`, version {data.get('version', '?')}; images per "
           f"split: {splits or 'unknown'}.",
           "- Reference standard: the label of the folder (or generator) each image came from: "
           "fractured or not fractured; no radiologist's second reading."]
  leak = report.get("leakage")
  if leak:
    lines.append(f"- **Leakage**: {leak['images_with_a_copy_in_train']} of {leak['of']} "
                 f"{leak['split']} images have a copy in train; the figures below are inflated "
                 "(report.json's `leakage.clean` has them without the copies).")
  elif data.get("group_feature"):
    lines.append(f"- No {report.get('split')} image shares a duplicate group with train (the "
                 "dataset's `group` feature).")
  else:
    lines.append("- Duplicates across splits were not checked (the dataset has no `group` "
                 "feature).")
  return lines


def _metric_lines(report: Mapping):
  lines = [f"On the {report.get('split')} split ({report['n']} images, not used for training "
           "or for choosing anything). " + report_lib.summary_line(report), "",
           tables.markdown_table(report_lib.summary_rows(report)).rstrip("\n"), ""]
  calibration = report.get("calibration")
  if calibration:
    lines.append(f"Calibration ({calibration['method']}): expected calibration error "
                 f"{calibration['ece']['before']:.3f} before, {calibration['ece']['after']:.3f} "
                 f"after; Brier score {calibration['brier']['before']:.3f} before, "
                 f"{calibration['brier']['after']:.3f} after.")
  for name in ("high_sensitivity", "balanced"):
    if name in report:
      lines.append(f"- {name.replace('_', ' ')}: {report[name]['rule']}.")
  return lines


def _limitations(report: Mapping):
  lines = ["- Figures hold for images like the test split; other hospitals, machines, body "
           "parts or patient groups can do much worse. The intervals cover sampling error only.",
           "- One label per image: the model does not locate the fracture (Grad-CAM shows "
           "where it looked, which is not a localisation).",
           "- Images that are not bone radiographs still get a probability; the "
           "out-of-distribution check (`bonefrac.predict`'s `in_distribution`) flags many "
           "of them, not all."]
  if report.get("high_sensitivity", {}).get("validation", {}).get("target_met") is False:
    lines.append("- The validation split has too few fractured images to show 95% sensitivity "
                 "with 95% confidence; the high-sensitivity point is the lowest fractured score.")
  return lines


def write(workdir: str, report: Mapping) -> str:
  path = os.path.join(workdir, "model_card.md")
  with open(path, "w") as f:
    f.write(render(report))
  return path


def comparison_section(reports: Dict[str, Mapping]) -> str:
  """comparison.md's section: each model's card in one line, and where the whole card is."""
  lines = ["", "## Model cards", ""]
  for name, r in reports.items():
    lines.append(f"- `{name}/model_card.md`: {r['model']} on {r['dataset']}, "
                 + report_lib.summary_line(r))
  lines.append(f"- {NOT_A_DEVICE}")
  return "\n".join(lines) + "\n"
