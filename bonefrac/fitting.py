"""Fitting a model: compiling it, its phases (VGG16: then its top block), and VGG16's head trained
on cached features of its frozen base (`--cache_features`)."""

import os
from typing import Dict, Tuple

import keras
import numpy as np
import tensorflow as tf

from bonefrac import callbacks, distribute, input_pipeline, models, summaries, workdir


def compile_model(model: keras.Model, learning_rate: float, jit_compile: bool = False) -> None:
  """Adam on binary cross-entropy; AUC (the checkpoint's monitor) and the confusion counts."""
  model.compile(
      optimizer=keras.optimizers.Adam(learning_rate),
      loss="binary_crossentropy",
      metrics=["accuracy", keras.metrics.AUC(name="auc"), keras.metrics.Precision(name="precision"),
               keras.metrics.Recall(name="sensitivity"),
               *(metric(name=name) for name, metric in summaries.CONFUSION_METRICS.items())],
      jit_compile=jit_compile)


def fit_phases(model, strategy, builder, config, paths: workdir.Paths,
               throughput: callbacks.Throughput, fit_args: Dict, extra_callbacks) -> None:
  """Trains the model (VGG16: then its top block too), ending on the best epoch's weights.

  With `config.cache_features` (VGG16, no augmentation) phase one trains the head alone on the
  frozen base's outputs, computed once (`cached_features`); the head's layers are the model's.
  Resume state (backups, the phase-one weights, the history, the best checkpoint) is read from
  `paths.resume`: the chief's files, also on the other workers of a multi-worker run.
  """
  fine_tune = config.model == "vgg16" and config.fine_tune_epochs > 0
  resume = paths.resume

  def fit_phase(trained, data, images, backup, restore_from, profile=None, **epochs):
    trained.fit(**epochs, **{**fit_args, **data}, callbacks=[
        *callbacks.create_callbacks(config.model, paths, throughput, images, backup,
                                    restore_from, config.patience, config.early_stopping_start,
                                    profile),
        *extra_callbacks])
    distribute.barrier(strategy)  # the chief has written its checkpoint and history
    _load_best(trained, resume)

  if os.path.exists(resume.phase1):  # phase one finished before a restart
    model.load_weights(resume.phase1)
  else:
    if config.cache_features:  # no augmentation, so no grid of augmented images either
      trained, data, images = *cached_features(model, strategy, builder, config), None
    else:
      trained, data, images = model, {}, input_pipeline.sample_images(builder, config.image_size)
    fit_phase(trained, data, images, paths.backup, resume.backup, config.profile_batches,
              epochs=config.epochs)
    if fine_tune:
      model.save_weights(paths.phase1)
  if fine_tune:
    with strategy.scope():
      unfrozen = models.unfreeze_top_block(model)
      compile_model(model, config.fine_tune_learning_rate, config.jit_compile)
    print(f"Fine-tuning: {unfrozen} layers of VGG16's top block unfrozen, learning rate "
          f"{config.fine_tune_learning_rate}", flush=True)
    epochs_so_far = workdir.epochs_done(resume.history)
    fit_phase(model, {}, None, paths.backup_fine_tune, resume.backup_fine_tune,
              epochs=epochs_so_far + config.fine_tune_epochs, initial_epoch=epochs_so_far)
  distribute.barrier(strategy)  # every worker is past reading the phase-one weights
  if os.path.exists(paths.phase1):
    os.remove(paths.phase1)  # the run is finished: a new run in this workdir starts afresh


def _load_best(model, paths: workdir.Paths) -> None:
  """The best epoch by validation AUC (EarlyStopping's copy is lost when a run restarts)."""
  if os.path.exists(paths.best):
    model.load_weights(paths.best)


def cached_features(model: keras.Model, strategy, builder, config) -> Tuple[keras.Model, Dict]:
  """(the head alone, {"x": train, "validation_data": validation} of the frozen base's outputs).

  The base runs once over each split through the evaluation pipeline (no augmentation: the
  caller refuses it); the head is a model from the base's output to the probability, built of
  the model's own layers, so training it trains the model. The training features are shuffled
  again every epoch (seeded), in batches of the global batch, as the images would be.
  """
  base_output = keras.layers.Layer.output.fget(model.get_layer("vgg16"))
  base = keras.Model(model.inputs, base_output)

  def features(split):
    ds = input_pipeline.create_dataset(
        builder, split, batch_size=config.batch_size, image_size=config.image_size,
        training=False, keep_aspect=config.keep_aspect, cache=None,
        example_weights=(input_pipeline.balanced_example_weights(builder, "train")
                         if config.balance_classes and split == "train" else None))
    batches = [(base.predict_on_batch(images), *[t.numpy() for t in rest]) for images, *rest in ds]
    columns = [np.concatenate(column) for column in zip(*batches)]  # outputs, labels[, weights]
    return tf.data.Dataset.from_tensor_slices(tuple(columns)), len(columns[0])

  train, examples = features("train")
  validation, _ = features("validation")
  train = train.shuffle(examples, seed=config.seed, reshuffle_each_iteration=True).repeat()
  train = train.batch(config.batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
  with strategy.scope():
    head = keras.Model(base_output, model.output, name=f"{model.name}_head")
    compile_model(head, config.learning_rate, config.jit_compile)
  print(f"Cached the frozen VGG16 base's outputs of {examples} training images; the head trains "
        "on them", flush=True)
  return head, {"x": train, "validation_data": validation.batch(config.batch_size)}
