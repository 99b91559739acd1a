"""Inference on files and folders: read (JPEG, PNG, DICOM), preprocess as training did, score.

A file goes through the dataset builder's own reader (`image_files.prepare_for_storage`, which
also turns DICOM into grey) and then the training pipeline's `decode_and_resize`, so it gets
the probability it would get in evaluation. A bad file costs its own row, never the others.
"""

import dataclasses
import functools
import json
import os
from typing import Dict, List, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from bonefrac import augment, calibration, export, input_pipeline, ood, tables  # noqa: F401 (Temperature)
from bonefrac.errors import UserError
from bonefrac_tfds.bone_fracture import image_files

FOLDER_SUFFIXES = image_files.IMAGE_SUFFIXES  # what a folder walk picks up (.dcm included)


@dataclasses.dataclass
class Prediction:
  path: str
  probability: Optional[float] = None
  error: Optional[str] = None
  ood_score: Optional[float] = None  # distance to the training features over its threshold
  in_distribution: Optional[bool] = None
  ood_reason: Optional[str] = None  # why it was flagged


@dataclasses.dataclass
class LoadedModel:
  """A Keras model (Grad-CAM possible) or a SavedModel signature, and its thresholds."""

  source: str
  thresholds: Dict[str, float]  # "threshold" (the model's), maybe "high_sensitivity"
  keras_model: Optional[keras.Model] = None
  signature: Optional[object] = None  # decodes and resizes inside

  def probabilities(self, encoded: Sequence[bytes]) -> np.ndarray:
    return self.scores(encoded)[0]

  def scores(self, encoded: Sequence[bytes]):
    """(Fracture probabilities, out-of-distribution flags or None, distances or None)."""
    if self.keras_model is None:
      out = self.signature(images=tf.constant(list(encoded)))
      probabilities = out[export.OUTPUT].numpy().reshape(-1).astype(float)
      if export.OOD_SCORE not in out:
        return probabilities, None, None
      return (probabilities, out[export.IN_DISTRIBUTION].numpy().astype(bool),
              out[export.OOD_SCORE].numpy().astype(float))
    score = self._ood_scorer
    if score is None:
      return self.keras_model.predict_on_batch(self.pixels(encoded)).reshape(-1).astype(float), None, None
    probabilities, ood_scores = score(self.pixels(encoded))
    return probabilities.astype(float), ood_scores <= 1.0, ood_scores

  @functools.cached_property
  def _ood_scorer(self):
    """Built once: a new Keras model per batch would retrace its predict function each time."""
    return ood.scorer(self.keras_model)

  def pixels(self, encoded: Sequence[bytes]) -> np.ndarray:
    """uint8 [n, size, size, 1] for the Keras model, exactly as evaluation makes them: with the
    size and padding or stretching the model carries (`augment.input_settings`)."""
    settings = augment.input_settings(self.keras_model)
    return np.stack([input_pipeline.decode_and_resize(e, settings["image_size"],
                                                      keep_aspect=settings["keep_aspect"]).numpy()
                     for e in encoded])


def load_model(path: str) -> LoadedModel:
  """A training workdir, a `.keras` file or an `export/` SavedModel; Keras files in safe mode."""
  if os.path.isdir(path) and os.path.exists(os.path.join(path, "model.keras")):
    return _load_keras(os.path.join(path, "model.keras"), os.path.join(path, "report.json"))
  if os.path.isfile(path) and path.endswith(".keras"):
    return _load_keras(path, os.path.join(os.path.dirname(path), "report.json"))
  if os.path.isdir(path) and os.path.exists(os.path.join(path, "saved_model.pb")):
    signature = tf.saved_model.load(path).signatures[export.SIGNATURE]
    report = os.path.join(os.path.dirname(os.path.abspath(path)), "report.json")
    return LoadedModel(path, _thresholds(report), signature=signature)
  raise UserError(f"--model_dir={path}: not a training workdir (with model.keras), a .keras file "
                  "or an export/ SavedModel; pass one, or train one first (python -m bonefrac.train: "
                  "runs/latest is its folder)")


def _load_keras(path: str, report_path: str) -> LoadedModel:
  try:
    model = keras.models.load_model(path, safe_mode=True, compile=False)
  except Exception as e:
    raise UserError(f"cannot load {path} ({type(e).__name__}: {str(e).splitlines()[0]})") from None
  return LoadedModel(path, _thresholds(report_path), keras_model=model)


def _thresholds(report_path: str) -> Dict[str, float]:
  """The report's threshold (0.5 without one) and its high-sensitivity threshold, if any."""
  if not os.path.exists(report_path):
    return {"threshold": 0.5}
  with open(report_path) as f:
    report = json.load(f)
  thresholds = {"threshold": float(report.get("threshold", 0.5))}
  high = report.get("high_sensitivity") or {}
  if high.get("threshold") is not None:
    thresholds["high_sensitivity"] = float(high["threshold"])
  return thresholds


def find_files(inputs: Sequence[str]) -> List[str]:
  """Files as given, and folders walked recursively for image and DICOM files (sorted)."""
  files = []
  for item in inputs:
    if os.path.isdir(item):
      for root, dirs, names in os.walk(item):
        dirs[:] = sorted(d for d in dirs if not image_files.is_junk_name(d))
        files += [os.path.join(root, n) for n in sorted(names)
                  if not image_files.is_junk_name(n) and image_files.looks_like_image_name(n)]
    else:
      files.append(item)  # missing or odd files get their own error row
  return files


def read_for_model(path: str) -> bytes:
  """The bytes the dataset would store for this file (checked, grey; DICOM converted)."""
  with open(path, "rb") as f:
    return image_files.prepare_for_storage(f.read())


def predict_files(model: LoadedModel, files: Sequence[str], batch_size: int = 32) -> List[Prediction]:
  """One Prediction per file, in order; unreadable files carry their error instead. With an
  out-of-distribution reference (or a DICOM header that is not a radiograph's), each file
  also says whether it looks like the training data."""
  predictions = [Prediction(path) for path in files]
  encoded, index = [], []
  for i, prediction in enumerate(predictions):
    try:
      with open(prediction.path, "rb") as f:
        data = f.read()
      prediction.ood_reason = ood.dicom_modality_problem(data)
      encoded.append(image_files.prepare_for_storage(data))
      index.append(i)
    except (OSError, image_files.ImageRejected) as e:
      prediction.error = getattr(e, "strerror", None) or str(e)
  for start in range(0, len(encoded), batch_size):
    probabilities, inside, distances = model.scores(encoded[start:start + batch_size])
    for k, i in enumerate(index[start:start + batch_size]):
      p = predictions[i]
      p.probability = float(probabilities[k])
      if distances is not None:
        p.ood_score, p.in_distribution = float(distances[k]), bool(inside[k])
        if not p.in_distribution and not p.ood_reason:
          p.ood_reason = "its features are far from the training images'"
      if p.ood_reason:
        p.in_distribution = False
  return predictions


def rows(predictions: Sequence[Prediction], thresholds: Dict[str, float],
         skip_out_of_distribution: bool = False) -> List[Dict]:
  """Table rows: file, probability, the decision at each threshold, the out-of-distribution
  score and flag (when any file has them), or the error. Skipped files keep their row, empty."""
  flagged = any(p.in_distribution is not None for p in predictions)
  out = []
  for p in predictions:
    skipped = skip_out_of_distribution and p.in_distribution is False
    probability = None if skipped else p.probability
    row = {"file": p.path, "fracture_probability": probability}
    for name, value in thresholds.items():
      key = "fractured" if name == "threshold" else f"fractured_at_{name}"
      row[key] = None if probability is None else probability >= value
    if flagged:
      row.update(ood_score=p.ood_score, in_distribution=p.in_distribution)
    row["error"] = p.error
    out.append(row)
  return out


def write_output(table: List[Dict], path: str) -> None:
  """CSV or JSON, chosen by the file's extension."""
  if path.lower().endswith(".json"):
    with open(path, "w") as f:
      json.dump(table, f, indent=2)
    return
  tables.write_csv(table, path, empty_header=["file"])
