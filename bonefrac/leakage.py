"""Whether an evaluated split shares duplicate groups with training: report.json's `leakage`.

A test image that is a copy (rotated, cropped, re-encoded, ...) of a training image measures
memory, not diagnosis. With the dataset's `group` feature (bone_fracture 1.1.0 and later) the
report counts such images and gives the metrics on the clean subset beside those on all.
"""

import sys
from typing import Dict, Optional

import numpy as np
import tensorflow_datasets as tfds

from bonefrac import input_pipeline, report


def split_groups(builder, split: str) -> np.ndarray:
  """The `group` of every example of `split`, in the evaluation order of `create_dataset`."""
  ds = builder.as_dataset(split=split, shuffle_files=False, read_config=input_pipeline.READ_CONFIG,
                          decoders={"image": tfds.decode.SkipDecoding()})
  return np.array([int(g) for g in tfds.as_numpy(ds.map(lambda ex: ex["group"]))], np.int64)


def section(builder, split: str, labels, probabilities, groups=None) -> Optional[Dict]:
  """report.json's `leakage` when `split` shares groups with train (else None): how many of its
  images have a copy in train, the same for validation (which chose the checkpoint), and the
  metrics at 0.5 and the AUCs on the clean subset. `groups`: the split's, if already read."""
  if "group" not in builder.info.features or "train" not in builder.info.splits:
    return None
  train = split_groups(builder, "train")
  leaked = np.isin(split_groups(builder, split) if groups is None else groups, train)
  if not leaked.any():
    return None
  labels, probabilities = np.asarray(labels), np.asarray(probabilities)
  clean = ~leaked
  result = {"split": split, "images_with_a_copy_in_train": int(leaked.sum()), "of": int(leaked.size),
            "share": round(float(leaked.mean()), 4),
            "clean": {**report.operating_point(labels[clean], probabilities[clean], 0.5),
                      **report.ranking_scores(labels[clean], probabilities[clean])}}
  if split != "validation" and "validation" in builder.info.splits:
    validation = np.isin(split_groups(builder, "validation"), train)
    result["validation_images_with_a_copy_in_train"] = int(validation.sum())
  return result


def warn(dataset: str, leak: Dict) -> None:
  """One line on stderr: the figures are inflated, where the clean ones are, what to use."""
  config = dataset.split("/")[-1]
  fix = (f"; train on {dataset.replace(config, 'kaggle_grouped')} for splits without copies"
         if config == "kaggle" else "")
  print(f"WARNING: {leak['images_with_a_copy_in_train']} of {leak['of']} {leak['split']} images "
        f"have a copy in train, so these figures are inflated; report.json's leakage.clean has "
        f"them without the copies{fix}", file=sys.stderr, flush=True)
