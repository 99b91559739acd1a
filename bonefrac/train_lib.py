"""Importable training: data and model under the strategy, callbacks, fit, evaluation, export.

`train(TrainConfig(...))` is what `python -m bonefrac.train` runs; everything it writes lands in
`config.workdir` (see README.md, "Where outputs go").
"""

import dataclasses
import hashlib
import os
import sys
import tempfile
import time
from typing import Dict, Optional, Sequence, Tuple

import keras
import numpy as np

import bonefrac_tfds  # noqa: F401  (registers bone_fracture)
from bonefrac import (augment, callbacks, distribute, evaluate, input_pipeline, keras_compat,
                      model_card, models, report, summaries, workdir)
from bonefrac.errors import UserError
from bonefrac.fitting import compile_model, fit_phases  # noqa: F401  (compile_model: for tune, bench)

VGG16_NOTOP = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"


@dataclasses.dataclass
class TrainConfig:
  """Everything a training run depends on; the flags of `bonefrac.train` map onto it."""

  model: str = "cnn"
  dataset: str = "bone_fracture/synthetic"
  data_dir: Optional[str] = None
  manual_dir: Optional[str] = None  # for building bone_fracture/kaggle on the fly
  workdir: Optional[str] = None  # None: a folder of its own under runs/ (`choose_workdir`)
  epochs: int = 15  # the CNN finds the break at epoch 3-5 (BUILD_NOTES.md)
  batch_size: int = 16  # global: split over the replicas (16: see BUILD_NOTES.md, recipe)
  image_size: int = 224
  learning_rate: float = 1e-3
  dropout: float = 0.3
  dense_units: Sequence[int] = (256, 128)
  conv_dropout: float = 0.1  # the CNN's, after its second and third blocks
  sync_batch_norm: bool = True  # the same statistics whatever the number of replicas
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
  early_stopping_start: Optional[int] = None  # None: epoch 5 for the CNN, 0 for VGG16
  balance_classes: bool = False
  keep_aspect: bool = False
  cache: Optional[str] = "memory"
  overwrite: bool = False  # start afresh even where an interrupted run could resume
  verbose: int = 1
  cpu_replicas: int = 1  # recorded only; `distribute.split_cpu` must run before TensorFlow starts
  profile_batches: Optional[Tuple[int, int]] = None  # (first, last) training step to trace
  cache_features: bool = False  # VGG16 without augmentation: the head trains on the base's outputs

  def hparams(self) -> Dict:
    """The hyper-parameters shown on TensorBoard's HParams dashboard."""
    keys = ("model", "epochs", "batch_size", "image_size", "learning_rate", "dropout",
            "dense_units", "augment", "fine_tune_epochs", "strategy", "precision", "seed")
    return {k: getattr(self, k) for k in keys}


# --- setup -----------------------------------------------------------------------------------

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


def check_model_name(name: str) -> None:
  if name not in models.MODELS:
    raise UserError(f"--model={name} is not one of {', '.join(models.MODELS)}")


def check_cache_features(config: TrainConfig) -> None:
  """--cache_features needs a frozen base whose inputs do not change between epochs."""
  if not config.cache_features:
    return
  if config.model != "vgg16":
    raise UserError("--cache_features needs --model=vgg16: the CNN has no frozen base to cache")
  if config.augment:
    raise UserError("--cache_features needs --noaugment: augmented images differ every epoch, "
                    "so their features cannot be computed once")
  if config.strategy == "multi_worker_mirrored":
    raise UserError("--cache_features runs on one machine; drop it for multi_worker_mirrored")


def build_model(config: TrainConfig) -> keras.Model:
  """The model named by `config.model`, uncompiled (call under the strategy's scope)."""
  check_model_name(config.model)
  model_config = models.ModelConfig(
      image_size=config.image_size, keep_aspect=config.keep_aspect, dropout=config.dropout,
      dense_units=tuple(config.dense_units), conv_dropout=config.conv_dropout,
      sync_batch_norm=config.sync_batch_norm,
      augmentation=augment.AugmentConfig() if config.augment else None)
  if config.model == "cnn":
    return models.create_cnn(model_config, seed=config.seed)
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


# --- data ------------------------------------------------------------------------------------

def distributed_datasets(strategy, builder, config: TrainConfig):
  """(train, validation) through `distribute_datasets_from_function`, and steps per epoch."""
  try:
    input_pipeline.per_replica_batch_size(config.batch_size, strategy.num_replicas_in_sync)
  except ValueError as e:
    raise UserError(str(e)) from None
  examples = input_pipeline.num_examples(builder, "train")
  steps = examples // config.batch_size
  if steps < 1:
    raise UserError(f"--batch_size={config.batch_size} is larger than the train split "
                    f"({examples} examples); use a smaller batch")
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


# --- the run ---------------------------------------------------------------------------------

def train(config: TrainConfig, extra_callbacks: Sequence[keras.callbacks.Callback] = ()) -> Dict:
  """Trains, evaluates and exports one model; returns the report (also in report.json).

  Under multi_worker_mirrored every worker calls this; the chief writes the outputs and returns
  the report, the other workers write to temporary folders (removed) and return a summary.
  """
  start = time.time()
  folder, own = choose_workdir(config)
  config = dataclasses.replace(config, workdir=folder)
  paths, policy, strategy, builder = _set_up(config)
  if own:
    workdir.point_latest(config.workdir)
  train_ds, val_ds, steps = distributed_datasets(strategy, builder, config)
  print(f"Training {config.model} on {config.dataset}: {strategy.num_replicas_in_sync} "
        f"replica(s) under {type(strategy).__name__}, precision {policy}, "
        f"{steps} steps of {config.batch_size} per epoch; outputs in {config.workdir}", flush=True)
  summaries.write_hparams(paths.logs, {**config.hparams(), "precision": policy},
                          run_name=os.path.basename(os.path.abspath(config.workdir)))
  with strategy.scope():
    model = build_model(config)
    compile_model(model, config.learning_rate, config.jit_compile)
  throughput = callbacks.Throughput(config.batch_size, steps)
  try:
    fit_phases(model, strategy, builder, config, paths, throughput,
               dict(x=train_ds, validation_data=val_ds, steps_per_epoch=steps,
                    verbose=config.verbose, shuffle=False),  # the dataset shuffles
               extra_callbacks)
  finally:
    workdir.remove_worker_dir(paths)
  fingerprint = weights_fingerprint(model)
  print(f"Final weights fingerprint: {fingerprint}", flush=True)
  if not distribute.is_chief(strategy):
    return {"model": config.model, "chief": False, "weights_fingerprint": fingerprint}
  if keras_compat.is_multi_worker(strategy):
    model = local_copy(model, config)  # predicting under the strategy would need every worker
  result = evaluate.evaluate_and_report(model, builder, config, paths, policy, strategy,
                                        throughput)
  result.update(weights_fingerprint=fingerprint, wall_seconds=round(time.time() - start, 1))
  report.write_report(config.workdir, result)
  model_card.write(config.workdir, result)
  return result


def choose_workdir(config: TrainConfig) -> Tuple[str, bool]:
  """(the run's folder, whether it is one of runs/ chosen here): `config.workdir` when given;
  else the interrupted run runs/latest points to, when it was started with the same settings
  (not with `overwrite`: that starts afresh, and in a folder of its own nothing is replaced);
  else a new folder runs/<model>-<date>-<time>."""
  if config.workdir:
    return config.workdir, False
  if config.strategy == "multi_worker_mirrored":  # each worker would pick a folder of its own
    raise UserError("--strategy=multi_worker_mirrored needs --workdir: a folder every worker shares")
  try:
    settings = run_settings(config, distribute.choose_precision(config.precision))
  except ValueError as e:
    raise UserError(str(e)) from None
  latest = workdir.latest_run()
  if latest and not config.overwrite and workdir.resumable(latest, settings):
    return latest, True
  return workdir.new_run_dir(config.model), True


def _set_up(config: TrainConfig):
  """The run's paths, precision policy, strategy and dataset builder (built if needed)."""
  paths = workdir.prepare(config.workdir)
  policy, strategy = precision_and_strategy(config)
  check_model_name(config.model)
  check_cache_features(config)
  if config.jit_compile and config.augment:
    print("WARNING: Keras compiles no model holding random preprocessing layers with XLA; "
          "--jit_compile takes effect with --noaugment only", file=sys.stderr, flush=True)
  keras.utils.set_random_seed(config.seed)
  chief = distribute.is_chief(strategy)
  if chief:  # builds the dataset on first use, alone
    builder = input_pipeline.load_builder(config.dataset, config.data_dir, config.manual_dir)
    workdir.start_fresh_unless_resuming(paths, run_settings(config, policy), config.overwrite)
  distribute.barrier(strategy)
  if not chief:
    builder = input_pipeline.load_builder(config.dataset, config.data_dir, config.manual_dir)
    paths = workdir.worker_paths(config.workdir)
  if input_pipeline.num_examples(builder, "validation") == 0:
    raise UserError(f"{config.dataset} has no validation split; the checkpoint needs one")
  return paths, policy, strategy, builder


# What an interrupted run must have been started with to be resumed (not, say, the epochs).
RESUME_SETTINGS = ("model", "dataset", "image_size", "keep_aspect", "augment", "cache_features",
                   "dense_units", "dropout", "conv_dropout", "sync_batch_norm", "batch_size",
                   "learning_rate", "fine_tune_learning_rate", "balance_classes", "seed")


def run_settings(config: TrainConfig, policy: str) -> Dict:
  """The settings a resumed run must match: RESUME_SETTINGS and the precision policy in use."""
  return {**{k: getattr(config, k) for k in RESUME_SETTINGS}, "precision": policy}


def precision_and_strategy(config: TrainConfig):
  """Sets the dtype policy and creates the strategy the config names; (policy, strategy)."""
  try:
    return (distribute.set_precision(config.precision),
            distribute.create_strategy(config.strategy, all_reduce=config.all_reduce))
  except ValueError as e:
    raise UserError(str(e)) from None


def weights_fingerprint(model: keras.Model) -> str:
  """A short hash of every weight: equal on workers that ended in the same state."""
  digest = hashlib.sha256()
  for weight in model.get_weights():
    digest.update(np.ascontiguousarray(weight).tobytes())
  return digest.hexdigest()[:16]


def local_copy(model: keras.Model, config: TrainConfig) -> keras.Model:
  """The same model and weights outside any strategy (the chief's evaluation and export)."""
  copy = build_model(dataclasses.replace(config, vgg16_weights="none"))
  with tempfile.TemporaryDirectory() as folder:  # by layer names, whatever is trainable
    path = os.path.join(folder, "weights.weights.h5")
    model.save_weights(path)
    copy.load_weights(path)
  return copy
