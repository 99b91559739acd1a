"""The end of a training run: evaluate the held-out split, write predictions, plots, export."""

import dataclasses
import json
import os
import sys
from typing import Dict, List

import keras
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

import bonefrac

from bonefrac import (callbacks, calibration, export, input_pipeline, leakage, ood, report, summaries,
                      workdir)
from bonefrac import plots as plots_lib


def labels_and_filenames(builder, split: str):
  """Labels and filenames of `split` in the evaluation order of `create_dataset`."""
  ds = builder.as_dataset(split=split, shuffle_files=False, read_config=input_pipeline.READ_CONFIG,
                          decoders={"image": tfds.decode.SkipDecoding()})
  labels, names = [], []
  for ex in tfds.as_numpy(ds.map(lambda ex: (ex["label"], ex["filename"]))):
    labels.append(int(ex[0]))
    names.append(ex[1].decode())
  return np.array(labels, int), names


def evaluate_and_report(model, builder, config, paths: workdir.Paths, policy: str,
                        strategy, throughput: callbacks.Throughput) -> Dict:
  """Evaluates on test (validation when there is none), writes plots, exports; the report."""
  split = "test" if input_pipeline.num_examples(builder, "test") else "validation"
  if split != "test":
    print(f"WARNING: {config.dataset} has no test split; evaluating on validation, "
          "which also chose the checkpoint (optimistic)", file=sys.stderr, flush=True)
  labels, names = labels_and_filenames(builder, split)
  logits, features, val_labels, val_logits, references = _logits_and_references(
      model, builder, split, labels, config)
  temperature, bias = calibration.fit(val_labels, val_logits)
  probabilities = calibration.calibrated(logits, temperature, bias)
  val_probabilities = calibration.calibrated(val_logits, temperature, bias)
  # Copies of one radiograph are one piece of evidence: intervals resample whole groups.
  groups = leakage.split_groups(builder, split) if "group" in builder.info.features else None
  metrics = report.evaluate(labels, probabilities, validation_labels=val_labels,
                            validation_probabilities=val_probabilities, groups=groups)
  metrics["calibration"] = calibration.report_section(temperature, bias, val_labels, val_logits,
                                                      labels, logits)
  metrics["out_of_distribution"] = ood.report_section(references, features)
  leak = leakage.section(builder, split, labels, probabilities, groups)
  if leak:
    leakage.warn(config.dataset, leak)
    metrics["leakage"] = leak
  history = workdir.read_history(paths.history)
  workdir.write_predictions(os.path.join(config.workdir, f"predictions_{split}.csv"), names,
                            labels, probabilities)
  plots = report.write_plots(config.workdir, labels, probabilities, metrics["confusion_matrix"],
                             history, metrics)
  epochs_run = workdir.epochs_done(paths.history)
  summaries.write_pr_curve(os.path.join(paths.logs, "evaluation"), labels, probabilities,
                           step=epochs_run, name=split)
  plots.append(_reliability_diagram(labels, logits, (temperature, bias), config.workdir,
                                    os.path.join(paths.logs, "evaluation"), epochs_run, split))
  served = ood.with_reference(calibration.with_temperature(model, temperature, bias), references)
  served.save(paths.model)
  export.export_saved_model(served, paths.export)
  best = workdir.read_best_epoch(paths.best_epoch)
  return {
      "model": config.model, "dataset": config.dataset, "split": split, **metrics,
      "data": data_facts(builder, groups is not None),
      "epochs_run": epochs_run, "best_epoch": int(best["epoch"]) + 1 if best else None,
      "best_val_auc": best.get("val_auc") if best else None,
      "train_images_per_second": throughput.steady(),
      "parameters": int(model.count_params()),
      "trainable_parameters": int(sum(np.prod(w.shape) for w in model.trainable_weights)),
      "strategy": type(strategy).__name__, "replicas": strategy.num_replicas_in_sync,
      "devices": replica_devices(strategy),
      "dtype_policy": policy, "config": _jsonable(dataclasses.asdict(config)),
      "outputs": {"model": "model.keras", "export": "export", "logs": "logs", "plots": plots,
                  "predictions": f"predictions_{split}.csv", "history": "training_log.csv",
                  "model_card": "model_card.md"},
  }


def _logits_and_references(model, builder, split: str, labels, config):
  """(logits and features of `split`, validation's labels and logits, the out-of-distribution
  references fitted on train and validation)."""
  # The logit and the features the out-of-distribution check uses, in one pass; built outside
  # the strategy, it predicts on one device.
  head = keras.Model(model.inputs,
                     [calibration.logit_model(model).output, ood.feature_taps(model)])
  logits, features = predict_head(head, builder, split, config)
  val_labels, val_logits, val_features = labels, logits, features
  if split != "validation":
    val_labels = labels_and_filenames(builder, "validation")[0]
    val_logits, val_features = predict_head(head, builder, "validation", config)
  references = ood.fit(predict_head(head, builder, "train", config, ood.TRAIN_IMAGES)[1], val_features)
  return logits, features, val_labels, val_logits, references


def data_facts(builder, group_feature: bool) -> Dict:
  """report.json's `data`: the dataset's version, split sizes, whether it has groups."""
  return {"version": str(builder.info.version), "group_feature": group_feature,
          "splits": {name: int(info.num_examples) for name, info in builder.info.splits.items()},
          "bonefrac_version": bonefrac.__version__}


def replica_devices(strategy) -> List[str]:
  """The devices the replicas ran on (the default strategy: the one device TensorFlow picks)."""
  try:
    return list(strategy.extended.worker_devices)
  except RuntimeError:
    return [tf.config.list_logical_devices()[0].name]


def predict_head(head, builder, split: str, config, limit: int = 0):
  """(Fracture logits, {tap: features}) of `split` in its evaluation order; its first `limit`
  images only when `limit` is given."""
  ds = input_pipeline.create_dataset(builder, split, batch_size=config.batch_size, training=False,
                                     image_size=config.image_size, keep_aspect=config.keep_aspect,
                                     cache=None)
  if limit:
    ds = ds.take(-(-limit // config.batch_size))
  logits, features = head.predict(ds, verbose=0)
  return logits.reshape(-1).astype(float), {tap: f.astype(np.float64) for tap, f in features.items()}


def _reliability_diagram(labels, logits, scaling, folder, logdir, step, split) -> str:
  """reliability_diagram.png in `folder` and the same image in TensorBoard; its name."""
  png = plots_lib.to_png(plots_lib.reliability_figure(
      labels, calibration.sigmoid(logits), calibration.calibrated(logits, *scaling),
      title=f"Reliability on {split} (temperature {scaling[0]:.2f}, bias {scaling[1]:+.2f})"))
  with open(os.path.join(folder, "reliability_diagram.png"), "wb") as f:
    f.write(png)
  summaries.write_png(logdir, "reliability_diagram", png, step)
  return "reliability_diagram.png"


def _jsonable(value):
  return json.loads(json.dumps(value, default=list))
