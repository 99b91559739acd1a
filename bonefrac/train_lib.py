"""Importable training: data and model under the strategy, callbacks, fit, evaluation, export.

`train(TrainConfig(...))` is what `python -m bonefrac.train` runs; everything it writes lands in
`config.workdir` (see README.md, "Where outputs go").
"""

import csv
import dataclasses
import json
import os
import shutil
import statistics
import sys
import time
from typing import Dict, List, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

import bonefrac_tfds  # noqa: F401  (registers bone_fracture)
from bonefrac import augment, distribute, export, input_pipeline, models, report, summaries
from bonefrac.cli import UserError

PATIENCE = {"cnn": 5, "vgg16": 3}  # the original's early-stopping patience
VGG16_NOTOP = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
MONITOR = "val_auc"


@dataclasses.dataclass
class TrainConfig:
  """Everything a training run depends on; the flags of `bonefrac.train` map onto it."""

  model: str = "cnn"
  dataset: str = "bone_fracture/synthetic"
  data_dir: Optional[str] = None
  manual_dir: Optional[str] = None  # for building bone_fracture/kaggle on the fly
  workdir: str = "runs/bonefrac"
  epochs: int = 12
  batch_size: int = 16  # global: split over the replicas (16: see BUILD_NOTES.md, recipe)
  image_size: int = 224
  learning_rate: float = 1e-3
  dropout: float = 0.3
  dense_units: Sequence[int] = (256, 128)
  augment: bool = True
  vgg16_weights: str = "imagenet"
  fine_tune_epochs: int = 0  # VGG16: then this many epochs with the top conv block unfrozen
  fine_tune_learning_rate: float = 1e-5
  strategy: str = "auto"
  all_reduce: str = "auto"
  precision: str = "auto"
  jit_compile: bool = False
  seed: int = 0
  patience: Optional[int] = None  # None: 5 for the CNN, 3 for VGG16
  balance_classes: bool = False
  keep_aspect: bool = False
  cache: Optional[str] = "memory"
  verbose: int = 1
  cpu_replicas: int = 1  # recorded only; `distribute.split_cpu` must run before TensorFlow starts

  def hparams(self) -> Dict:
    """The hyper-parameters shown on TensorBoard's HParams dashboard."""
    keys = ("model", "epochs", "batch_size", "image_size", "learning_rate", "dropout",
            "dense_units", "augment", "fine_tune_epochs", "strategy", "precision", "seed")
    return {k: getattr(self, k) for k in keys}


class Paths:
  """Where a run's outputs go inside its workdir."""

  def __init__(self, workdir: str):
    join = lambda *parts: os.path.join(workdir, *parts)  # noqa: E731
    self.workdir = workdir
    self.logs, self.backup, self.backup_fine_tune = join("logs"), join("backup"), join("backup_ft")
    self.best = join("checkpoints", "best.weights.h5")
    self.phase1 = join("checkpoints", "phase1.weights.h5")  # exists only while phase 2 runs
    self.history, self.report = join("training_log.csv"), join("report.json")
    self.model, self.export = join("model.keras"), join("export")


# --- setup -----------------------------------------------------------------------------------

def prepare_workdir(workdir: str) -> Paths:
  """Creates the workdir (and checks it is writable)."""
  try:
    os.makedirs(os.path.join(workdir, "checkpoints"), exist_ok=True)
    probe = os.path.join(workdir, ".writable")
    with open(probe, "w"):
      pass
    os.remove(probe)
  except OSError as e:
    raise UserError(f"cannot write to --workdir={workdir} ({e.strerror}); "
                    "choose a folder you can write to") from None
  return Paths(workdir)


def load_builder(dataset: str, data_dir: Optional[str],
                 manual_dir: Optional[str] = None) -> tfds.core.DatasetBuilder:
  """The TFDS builder of `dataset`, built first when needed (the synthetic config needs no data)."""
  try:
    builder = tfds.builder(dataset, data_dir=data_dir)
  except Exception as e:  # unknown name or config: TFDS's message says which
    raise UserError(f"unknown --dataset={dataset}: {str(e).splitlines()[0]}") from None
  if builder.is_prepared():
    return builder
  print(f"Building {dataset} in {builder.data_dir} (first use) ...", flush=True)
  config = tfds.download.DownloadConfig(manual_dir=manual_dir)
  try:
    builder.download_and_prepare(download_config=config)
  except Exception as e:
    shutil.rmtree(builder.data_dir, ignore_errors=True)
    first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise UserError(
        f"{dataset} is not built in {builder.data_dir} and could not be built ({first_line}); "
        f"build it with `tfds build {dataset.split('/')[0]} --imports bonefrac_tfds "
        f"--config {builder.builder_config.name} --manual_dir DIR` or pass --data_dir") from None
  return builder


def vgg16_weights(value: str) -> Optional[str]:
  """`imagenet` (cached or downloaded by Keras), `none`, or a local .h5 path."""
  if value.lower() == "none":
    return None
  if value == "imagenet":
    return value
  if not os.path.isfile(value):
    raise UserError(f"--vgg16_weights={value}: no such file; pass imagenet, none or an .h5 path")
  return value


def keras_cache_dir() -> str:
  return os.path.join(os.environ.get("KERAS_HOME", os.path.expanduser("~/.keras")), "models")


def build_model(config: TrainConfig) -> keras.Model:
  """The model named by `config.model`, uncompiled (call under the strategy's scope)."""
  model_config = models.ModelConfig(
      image_size=config.image_size, dropout=config.dropout, dense_units=tuple(config.dense_units),
      augmentation=augment.AugmentConfig() if config.augment else None)
  if config.model == "cnn":
    return models.create_cnn(model_config, seed=config.seed)
  if config.model != "vgg16":
    raise UserError(f"--model={config.model} is not one of {', '.join(models.MODELS)}")
  weights = vgg16_weights(config.vgg16_weights)
  try:
    return models.create_vgg16(model_config, weights=weights, seed=config.seed)
  except Exception as e:
    if weights != "imagenet" or os.path.isfile(os.path.join(keras_cache_dir(), VGG16_NOTOP)):
      raise
    raise UserError(
        f"could not download the ImageNet weights for VGG16 ({type(e).__name__}); put "
        f"{VGG16_NOTOP} in {keras_cache_dir()}, or pass --vgg16_weights=none to train from "
        "scratch or --vgg16_weights=PATH for a local .h5 file") from None


def compile_model(model: keras.Model, learning_rate: float, jit_compile: bool = False) -> None:
  """Adam on binary cross-entropy; AUC (the checkpoint's monitor) and the confusion counts."""
  model.compile(
      optimizer=keras.optimizers.Adam(learning_rate),
      loss="binary_crossentropy",
      metrics=["accuracy", keras.metrics.AUC(name="auc"), keras.metrics.Precision(name="precision"),
               keras.metrics.Recall(name="sensitivity"),
               keras.metrics.TrueNegatives(name="tn"), keras.metrics.FalsePositives(name="fp"),
               keras.metrics.FalseNegatives(name="fn"), keras.metrics.TruePositives(name="tp")],
      jit_compile=jit_compile)


# --- data ------------------------------------------------------------------------------------

def distributed_datasets(strategy, builder, config: TrainConfig):
  """(train, validation) through `distribute_datasets_from_function`, and steps per epoch."""
  try:
    input_pipeline.per_replica_batch_size(config.batch_size, strategy.num_replicas_in_sync)
  except ValueError as e:
    raise UserError(str(e)) from None
  steps = num_examples(builder, "train") // config.batch_size
  if steps < 1:
    raise UserError(f"--batch_size={config.batch_size} is larger than the train split "
                    f"({num_examples(builder, 'train')} examples); use a smaller batch")
  weights = (input_pipeline.balanced_example_weights(builder, "train")
             if config.balance_classes else None)
  common = dict(batch_size=config.batch_size, image_size=config.image_size,
                keep_aspect=config.keep_aspect, cache=config.cache)

  def train_fn(context):
    return input_pipeline.create_dataset(builder, "train", training=True, input_context=context,
                                         repeat=True, seed=config.seed, example_weights=weights,
                                         **common)

  def validation_fn(context):
    return input_pipeline.create_dataset(builder, "validation", training=False,
                                         input_context=context, **common)

  return (strategy.distribute_datasets_from_function(train_fn),
          strategy.distribute_datasets_from_function(validation_fn), steps)


def num_examples(builder, split: str) -> int:
  return int(builder.info.splits[split].num_examples) if split in builder.info.splits else 0


def sample_images(builder, config: TrainConfig, count: int = 16) -> np.ndarray:
  """A few training images (uint8 [n, size, size, 1]) for TensorBoard's augmentation grid."""
  ds = input_pipeline.create_dataset(builder, "train", batch_size=count, training=False,
                                     image_size=config.image_size, cache=None)
  images, _ = next(iter(ds))
  return images.numpy()


def labels_and_filenames(builder, split: str):
  """Labels and filenames of `split` in the evaluation order of `create_dataset`."""
  ds = builder.as_dataset(split=split, shuffle_files=False,
                          decoders={"image": tfds.decode.SkipDecoding()})
  labels, names = [], []
  for ex in tfds.as_numpy(ds.map(lambda ex: (ex["label"], ex["filename"]))):
    labels.append(int(ex[0]))
    names.append(ex[1].decode())
  return np.array(labels, int), names


# --- callbacks -------------------------------------------------------------------------------

class Throughput(keras.callbacks.Callback):
  """Training images/s per epoch (validation excluded), added to the logs and TensorBoard."""

  def __init__(self, global_batch: int, steps: int):
    super().__init__()
    self.images = global_batch * steps
    self.per_epoch: List[float] = []
    self._start = self._end = None

  def on_epoch_begin(self, epoch, logs=None):
    self._start, self._end = time.perf_counter(), None

  def on_test_begin(self, logs=None):
    if self._start is not None and self._end is None:
      self._end = time.perf_counter()

  def on_epoch_end(self, epoch, logs=None):
    end = self._end or time.perf_counter()
    self.per_epoch.append(self.images / max(end - self._start, 1e-9))
    if logs is not None:
      logs["images_per_second"] = self.per_epoch[-1]

  def steady(self) -> Optional[float]:
    """Median over the epochs after the first (which traces the graph and fills the cache)."""
    rates = self.per_epoch[1:] or self.per_epoch
    return float(statistics.median(rates)) if rates else None


def create_callbacks(config: TrainConfig, paths: Paths, throughput: Throughput,
                     images: Optional[np.ndarray], backup: str) -> list:
  patience = config.patience if config.patience is not None else PATIENCE[config.model]
  earlier = read_history(paths.history).get(MONITOR)  # epochs before a restart
  best_so_far = max(earlier) if earlier else None
  callbacks = [
      keras.callbacks.BackupAndRestore(backup),  # first: restores before the others start
      throughput,
      keras.callbacks.EarlyStopping(monitor=MONITOR, mode="max", patience=patience,
                                    restore_best_weights=True, verbose=1),
      # After a restart the checkpoint must still beat the best epoch before it.
      keras.callbacks.ModelCheckpoint(paths.best, monitor=MONITOR, mode="max", save_best_only=True,
                                      save_weights_only=True, initial_value_threshold=best_so_far),
      keras.callbacks.CSVLogger(paths.history, append=True),
      summaries.ConfusionMatrixImages(paths.logs),
      keras.callbacks.TensorBoard(paths.logs, write_graph=False),
  ]
  if images is not None:
    callbacks.append(summaries.AugmentedImages(paths.logs, images, seed=config.seed))
  return callbacks


# --- the run ---------------------------------------------------------------------------------

def train(config: TrainConfig, extra_callbacks: Sequence[keras.callbacks.Callback] = ()) -> Dict:
  """Trains, evaluates and exports one model; returns the report (also in report.json)."""
  start = time.time()
  paths = prepare_workdir(config.workdir)
  try:
    policy = distribute.set_precision(config.precision)
    strategy = distribute.create_strategy(config.strategy, all_reduce=config.all_reduce)
  except ValueError as e:
    raise UserError(str(e)) from None
  if config.model not in models.MODELS:
    raise UserError(f"--model={config.model} is not one of {', '.join(models.MODELS)}")
  if config.jit_compile and config.augment:
    print("WARNING: Keras compiles no model holding random preprocessing layers with XLA; "
          "--jit_compile takes effect with --noaugment only", file=sys.stderr, flush=True)
  keras.utils.set_random_seed(config.seed)
  builder = load_builder(config.dataset, config.data_dir, config.manual_dir)
  if num_examples(builder, "validation") == 0:
    raise UserError(f"{config.dataset} has no validation split; the checkpoint needs one")
  _start_fresh_unless_resuming(paths)
  train_ds, val_ds, steps = distributed_datasets(strategy, builder, config)
  print(f"Training {config.model} on {config.dataset}: {strategy.num_replicas_in_sync} "
        f"replica(s) under {type(strategy).__name__}, precision {policy}, "
        f"{steps} steps of {config.batch_size} per epoch; outputs in {config.workdir}", flush=True)
  summaries.write_hparams(paths.logs, {**config.hparams(), "precision": policy},
                          run_name=os.path.basename(os.path.abspath(config.workdir)))

  with strategy.scope():
    model = build_model(config)
    compile_model(model, config.learning_rate, config.jit_compile)
  throughput = Throughput(config.batch_size, steps)
  images = sample_images(builder, config)
  fit_args = dict(validation_data=val_ds, steps_per_epoch=steps, verbose=config.verbose,
                  shuffle=False)  # the dataset shuffles
  if os.path.exists(paths.phase1):  # phase one finished before a restart
    model.load_weights(paths.phase1)
  else:
    model.fit(train_ds, epochs=config.epochs, **fit_args,
              callbacks=[*create_callbacks(config, paths, throughput, images, paths.backup),
                         *extra_callbacks])
    _load_best(model, paths)
    if config.model == "vgg16" and config.fine_tune_epochs > 0:
      model.save_weights(paths.phase1)
  if config.model == "vgg16" and config.fine_tune_epochs > 0:
    with strategy.scope():
      unfrozen = models.unfreeze_top_block(model)
      compile_model(model, config.fine_tune_learning_rate, config.jit_compile)
    print(f"Fine-tuning: {unfrozen} layers of VGG16's top block unfrozen, learning rate "
          f"{config.fine_tune_learning_rate}", flush=True)
    epochs_so_far = len(read_history(paths.history).get("epoch", []))
    model.fit(train_ds, epochs=epochs_so_far + config.fine_tune_epochs,
              initial_epoch=epochs_so_far, **fit_args,
              callbacks=[*create_callbacks(config, paths, throughput, None, paths.backup_fine_tune),
                         *extra_callbacks])
    _load_best(model, paths)

  if os.path.exists(paths.phase1):
    os.remove(paths.phase1)  # the run is finished: a new run in this workdir starts afresh
  result = evaluate_and_report(model, builder, config, paths, policy, strategy, throughput)
  result["wall_seconds"] = round(time.time() - start, 1)
  report.write_report(config.workdir, result)
  return result


def evaluate_and_report(model, builder, config: TrainConfig, paths: Paths, policy: str,
                        strategy, throughput: Throughput) -> Dict:
  """Evaluates on test (validation when there is none), writes plots, exports; the report."""
  split = "test" if num_examples(builder, "test") else "validation"
  if split != "test":
    print(f"WARNING: {config.dataset} has no test split; evaluating on validation, "
          "which also chose the checkpoint (optimistic)", file=sys.stderr, flush=True)
  labels, names = labels_and_filenames(builder, split)
  probabilities = predict(model, builder, split, config)
  val_labels, _ = labels_and_filenames(builder, "validation")
  val_probabilities = predict(model, builder, "validation", config)
  metrics = report.evaluate(labels, probabilities, validation_labels=val_labels,
                            validation_probabilities=val_probabilities)
  history = read_history(paths.history)
  write_predictions(os.path.join(config.workdir, f"predictions_{split}.csv"), names, labels,
                    probabilities)
  plots = report.write_plots(config.workdir, labels, probabilities, metrics["confusion_matrix"],
                             history)
  epochs_run = len(history.get("epoch", []))
  summaries.write_pr_curve(os.path.join(paths.logs, "evaluation"), labels, probabilities,
                           step=epochs_run, name=split)
  model.save(paths.model)
  export.export_saved_model(model, paths.export, config.image_size)
  val_auc = history.get(MONITOR, [])
  best_epoch = int(np.argmax(val_auc)) + 1 if val_auc else None
  return {
      "model": config.model, "dataset": config.dataset, "split": split, **metrics,
      "epochs_run": epochs_run, "best_epoch": best_epoch,
      "best_val_auc": float(max(val_auc)) if val_auc else None,
      "train_images_per_second": throughput.steady(),
      "parameters": int(model.count_params()),
      "trainable_parameters": int(sum(np.prod(w.shape) for w in model.trainable_weights)),
      "strategy": type(strategy).__name__, "replicas": strategy.num_replicas_in_sync,
      "devices": replica_devices(strategy),
      "dtype_policy": policy, "config": _jsonable(dataclasses.asdict(config)),
      "outputs": {"model": "model.keras", "export": "export", "logs": "logs", "plots": plots,
                  "predictions": f"predictions_{split}.csv", "history": "training_log.csv"},
  }


def replica_devices(strategy) -> List[str]:
  """The devices the replicas ran on (the default strategy: the one device TensorFlow picks)."""
  try:
    return list(strategy.extended.worker_devices)
  except RuntimeError:
    return [tf.config.list_logical_devices()[0].name]


def predict(model, builder, split: str, config: TrainConfig) -> np.ndarray:
  """Fracture probabilities of `split` in its evaluation order."""
  ds = input_pipeline.create_dataset(builder, split, batch_size=config.batch_size, training=False,
                                     image_size=config.image_size, keep_aspect=config.keep_aspect,
                                     cache=None)
  return model.predict(ds, verbose=0).reshape(-1).astype(float)


def read_history(path: str) -> Dict[str, List[float]]:
  """The CSVLogger's per-epoch log (across restarts) as {column: values}."""
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    rows = list(csv.DictReader(f))
  return {key: [float(row[key]) for row in rows if row.get(key) not in (None, "")]
          for key in (rows[0] if rows else {})}


def write_predictions(path: str, names, labels, probabilities) -> None:
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["filename", "label", "fracture_probability"])
    writer.writerows((n, int(y), f"{p:.6f}") for n, y, p in zip(names, labels, probabilities))


def _load_best(model, paths: Paths) -> None:
  """The best epoch by validation AUC (EarlyStopping's copy is lost when a run restarts)."""
  if os.path.exists(paths.best):
    model.load_weights(paths.best)


def _start_fresh_unless_resuming(paths: Paths) -> None:
  """A workdir holding a finished run is reused from scratch; an interrupted one resumes."""
  if any(os.path.exists(p) for p in (paths.backup, paths.backup_fine_tune, paths.phase1)):
    print(f"Resuming the interrupted run in {paths.workdir}", flush=True)
    return
  for old in (paths.history, paths.best, paths.report):
    if os.path.exists(old):
      os.remove(old)
  shutil.rmtree(paths.logs, ignore_errors=True)


def _jsonable(value):
  return json.loads(json.dumps(value, default=list))
