"""Matplotlib figures of an evaluation and a training history, as PNG files or bytes."""

import io
from typing import Mapping, Sequence

import matplotlib
import numpy as np

matplotlib.use("Agg")  # no display: files and TensorBoard images only
from matplotlib import pyplot as plt  # noqa: E402
from sklearn import metrics as skm  # noqa: E402

from bonefrac import stats  # noqa: E402

CLASS_NAMES = ("not fractured", "fractured")


def confusion_matrix_figure(matrix: Sequence[Sequence[int]], title: str = "Confusion matrix"):
  """A 2x2 confusion matrix `[[tn, fp], [fn, tp]]` with counts in the cells."""
  fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
  skm.ConfusionMatrixDisplay(confusion_matrix=np.asarray(matrix), display_labels=CLASS_NAMES).plot(
      ax=ax, colorbar=False, cmap="Blues", values_format="d")
  ax.set_title(title, fontsize=9)
  fig.tight_layout()
  return fig


def roc_figure(labels, probabilities, title: str = "ROC curve"):
  fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=100)
  skm.RocCurveDisplay.from_predictions(labels, probabilities, ax=ax, name="fractured")
  ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
  ax.set_title(title, fontsize=9)
  fig.tight_layout()
  return fig


def precision_recall_figure(labels, probabilities, title: str = "Precision-recall curve"):
  fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=100)
  skm.PrecisionRecallDisplay.from_predictions(labels, probabilities, ax=ax, name="fractured")
  ax.set_title(title, fontsize=9)
  fig.tight_layout()
  return fig


def reliability_figure(labels, before, after, bins: int = 15, title: str = "Reliability"):
  """Share fractured against mean predicted probability per equal-width bin, before and after
  calibration, with the diagonal a calibrated model would follow."""
  fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=100)
  for name, probabilities, style in (("before", before, "o--"), ("after", after, "s-")):
    mean, share, _ = stats.reliability_bins(labels, probabilities, bins)
    ax.plot(mean, share, style, label=f"{name} calibration")
  ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
  ax.set(xlabel="mean predicted fracture probability", ylabel="share fractured", title=title,
         xlim=(0, 1), ylim=(0, 1))
  ax.legend(loc="upper left")
  fig.tight_layout()
  return fig


def training_curves_figure(history: Mapping[str, Sequence[float]]):
  """Loss, accuracy and AUC per epoch, training against validation."""
  names = [n for n in ("loss", "accuracy", "auc") if n in history]
  fig, axes = plt.subplots(1, max(1, len(names)), figsize=(4 * max(1, len(names)), 3.5), dpi=100,
                           squeeze=False)
  for ax, name in zip(axes[0], names):
    epochs = range(1, len(history[name]) + 1)
    ax.plot(epochs, history[name], marker="o", label="training")
    if f"val_{name}" in history:
      ax.plot(epochs, history[f"val_{name}"], marker="o", label="validation")
    ax.set_xlabel("epoch")
    ax.set_title(name)
    ax.legend()
  fig.tight_layout()
  return fig


def gradcam_figure(image: np.ndarray, heatmap: np.ndarray, title: str):
  """The grey image [h, w, 1] and the same image under its Grad-CAM map [h, w], side by side."""
  fig, axes = plt.subplots(1, 2, figsize=(8, 4.4), dpi=100)
  grey = np.asarray(image)[..., 0]
  for ax in axes:
    ax.imshow(grey, cmap="gray", vmin=0, vmax=255)
    ax.axis("off")
  axes[1].imshow(heatmap, cmap="jet", alpha=0.45, vmin=0.0, vmax=1.0)
  axes[0].set_title("image")
  axes[1].set_title("Grad-CAM of the fracture probability")
  fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  return fig


def to_png(fig) -> bytes:
  """Renders and closes `fig`."""
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png")
  plt.close(fig)
  return buffer.getvalue()


def save_png(fig, path: str) -> None:
  with open(path, "wb") as f:
    f.write(to_png(fig))
