"""KerasTuner search over the head: a hypermodel on train_lib's builders, the tuner, its results.

A trial builds and compiles its model with `train_lib.build_model` / `compile_model` (the same
augmentation, normalisation, precision and metrics as `bonefrac.train`) and trains on the same
distributed datasets; only the head's dropout and widths (and optionally the learning rate)
change between trials.
"""

import dataclasses
import json
import os
import shutil
from typing import Dict, List, Optional, Tuple

import keras
import keras_tuner
import tensorflow as tf
from keras_tuner.src.distribute import utils as dist_utils
from keras_tuner.src.engine import tuner_utils
from tensorboard.plugins.hparams import api as hparams_api

from bonefrac import input_pipeline, summaries, tables, train_lib
from bonefrac import workdir as workdir_lib
from bonefrac.callbacks import EARLY_STOPPING_START, PATIENCE, ProgressBar
from bonefrac.errors import UserError

TUNERS = ("hyperband", "bayesian", "random")
DROPOUT = dict(min_value=0.0, max_value=0.6, step=0.1)
DENSE_LAYERS = dict(min_value=1, max_value=3)
UNITS = [64, 128, 256, 512]
LEARNING_RATE = dict(min_value=1e-4, max_value=3e-3, sampling="log")
PROJECT = "search"  # KerasTuner's folder inside the workdir: oracle state and one folder per trial


@dataclasses.dataclass
class SearchConfig:
  """What a search depends on besides the training settings its trials share."""

  tuner: str = "hyperband"
  max_trials: int = 10  # bayesian and random; hyperband's count follows from max_epochs
  max_epochs: int = 27  # per trial (hyperband: of the longest bracket, 3^3)
  objective: str = "val_auc"
  tune_learning_rate: bool = False
  overwrite: bool = False
  hyperband_factor: int = 3


class HeadHyperModel(keras_tuner.HyperModel):
  """Samples the head's dropout and dense widths (and the learning rate when asked)."""

  def __init__(self, train_config: train_lib.TrainConfig, tune_learning_rate: bool = False):
    super().__init__(name=f"{train_config.model}_head")
    self.train_config = train_config
    self.tune_learning_rate = tune_learning_rate

  def build(self, hp: keras_tuner.HyperParameters) -> keras.Model:
    # KerasTuner calls this under its distribution strategy's scope.
    values = sample_head(hp, self.tune_learning_rate)
    config = dataclasses.replace(self.train_config, **values)
    strategy = tf.distribute.get_strategy()
    print(f"Building {config.model} with {values} under {type(strategy).__name__} "
          f"({strategy.num_replicas_in_sync} replica(s))", flush=True)
    model = train_lib.build_model(config)
    train_lib.compile_model(model, config.learning_rate, config.jit_compile)
    return model


def sample_head(hp: keras_tuner.HyperParameters, tune_learning_rate: bool) -> Dict:
  """The head's hyper-parameters drawn from `hp`, as `TrainConfig` fields."""
  values = {"dropout": round(hp.Float("dropout", **DROPOUT), 2)}
  layers = hp.Int("dense_layers", **DENSE_LAYERS)
  # Every width is declared, so that every trial's row on the HParams dashboard has them all.
  widths = [hp.Choice(f"units_{i}", UNITS) for i in range(DENSE_LAYERS["max_value"])]
  values["dense_units"] = tuple(widths[:layers])
  if tune_learning_rate:
    values["learning_rate"] = hp.Float("learning_rate", **LEARNING_RATE)
  return values


def head_values(hp_values: Dict) -> Dict:
  """`TrainConfig` fields from a trial's hyper-parameter values (the inverse of `sample_head`)."""
  values = {"dropout": round(float(hp_values["dropout"]), 2),
            "dense_units": [int(hp_values[f"units_{i}"])
                            for i in range(int(hp_values["dense_layers"]))]}
  if "learning_rate" in hp_values:
    values["learning_rate"] = float(hp_values["learning_rate"])
  return values


def objective(name: str) -> keras_tuner.Objective:
  """A metric the trials log (`val_auc`, `auc`, `val_loss`, ...); losses are minimised."""
  metrics = ["loss", "accuracy", "auc", "precision", "sensitivity", *summaries.CONFUSION_METRICS]
  known = [prefix + m for prefix in ("val_", "") for m in metrics]
  if name not in known:
    raise UserError(f"--objective={name} is not a logged metric; use one of {', '.join(known)}")
  minimise = name.endswith("loss") or name.endswith("fp") or name.endswith("fn")
  return keras_tuner.Objective(name, direction="min" if minimise else "max")


def create_tuner(search: SearchConfig, hypermodel: HeadHyperModel, workdir: str, strategy,
                 seed: int) -> keras_tuner.Tuner:
  """The KerasTuner tuner named by `search.tuner`, keeping its state in `workdir/search`."""
  if search.tuner not in TUNERS:
    raise UserError(f"--tuner={search.tuner} is not one of {', '.join(TUNERS)}")
  common = dict(objective=objective(search.objective), directory=workdir, project_name=PROJECT,
                overwrite=search.overwrite, seed=seed, distribution_strategy=strategy)
  if search.tuner == "hyperband":
    return keras_tuner.Hyperband(hypermodel, max_epochs=search.max_epochs,
                                 factor=search.hyperband_factor, **common)
  tuner_class = {"bayesian": keras_tuner.BayesianOptimization,
                 "random": keras_tuner.RandomSearch}[search.tuner]
  return tuner_class(hypermodel, max_trials=search.max_trials, **common)


def trial_callbacks(logs: str, model_name: str, goal: keras_tuner.Objective,
                    profile: Optional[Tuple[int, int]] = None) -> List:
  """Deep-copied by KerasTuner for every trial; the TensorBoard one must be exactly Keras' class
  for KerasTuner to give each trial its own log folder and HParams session (and its trace of
  the `profile` steps)."""
  return [keras.callbacks.TensorBoard(logs, write_graph=False, profile_batch=profile or 0),
          keras.callbacks.EarlyStopping(monitor=goal.name, mode=goal.direction,
                                        patience=PATIENCE[model_name],
                                        start_from_epoch=EARLY_STOPPING_START[model_name]),
          ProgressBar()]


def is_reporting_process() -> bool:
  """True where the search's results live: the chief, or the only process."""
  return not dist_utils.has_chief_oracle() or dist_utils.is_chief_oracle()


def check_workdir(workdir: str, settings: Dict, overwrite: bool) -> None:
  """The chief's (or the only process's) check of the workdir: with `overwrite` it clears an
  earlier search; it refuses to continue a search started with other settings; it records them.
  Workers never call this: they wait for the chief (`wait_for_chief`)."""
  path = os.path.join(workdir, "search_settings.json")
  if overwrite:
    for old in (os.path.join(workdir, "logs"), os.path.join(workdir, PROJECT), path):
      if os.path.isdir(old):
        shutil.rmtree(old)
      elif os.path.exists(old):
        os.remove(old)
  os.makedirs(workdir, exist_ok=True)
  workdir_lib.check_settings(path, settings, "a search")
  workdir_lib.write_settings(path, settings)


def claim_workdir(workdir: str, settings: Dict, overwrite: bool) -> bool:
  """Every process of a search gets the same flags, but only the chief (or the only process)
  checks and, with `overwrite`, clears the shared workdir; the workers wait for it. Returns
  whether this process's tuner may overwrite its project folder."""
  if is_reporting_process():
    check_workdir(workdir, settings, overwrite)
    return overwrite
  wait_for_chief()
  return False


def wait_for_chief(timeout: Optional[float] = None) -> None:
  """Blocks a worker until the chief's oracle answers: the chief serves it only from
  `tuner.search`, after it has checked (and with --overwrite cleared) the shared workdir."""
  import grpc  # keras-tuner's own dependency for chief/worker searches
  address = f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}"
  with grpc.insecure_channel(address) as channel:
    grpc.channel_ready_future(channel).result(timeout=timeout)


def write_hparams_config(logdir: str, space: keras_tuner.HyperParameters) -> None:
  """The search as one HParams experiment: each tuned hyper-parameter with its domain and the
  metrics to show against them (KerasTuner itself writes only each trial's values)."""
  hparams = tuner_utils.convert_hyperparams_to_hparams(space, hparams_api)
  metrics = [hparams_api.Metric(f"epoch_{name}", group=group, display_name=f"{group} {name}")
             for group in ("validation", "train") for name in ("auc", "accuracy", "loss")]
  with tf.summary.create_file_writer(logdir).as_default():
    hparams_api.hparams_config(hparams=list(hparams), metrics=metrics)


def trial_rows(tuner: keras_tuner.Tuner) -> List[Dict]:
  """One row per trial, best first (finished trials), then the others in trial order."""
  oracle = tuner.oracle
  direction = oracle.objective.direction
  rows = []
  for trial in oracle.trials.values():
    score = trial.score
    rows.append({"trial": trial.trial_id, "status": trial.status,
                 **head_values(trial.hyperparameters.values),
                 oracle.objective.name: None if score is None else round(float(score), 4),
                 "best_epoch": None if trial.best_step is None else int(trial.best_step) + 1})
    if "tuner/epochs" in trial.hyperparameters.values:  # hyperband's budget for the trial
      rows[-1]["epochs"] = trial.hyperparameters.values["tuner/epochs"]
  name = oracle.objective.name
  scored = sorted((r for r in rows if r[name] is not None), reverse=direction == "max",
                  key=lambda r: r[name])
  return scored + sorted((r for r in rows if r[name] is None), key=lambda r: r["trial"])


def write_results(tuner: keras_tuner.Tuner, workdir: str, model_name: str) -> Optional[Dict]:
  """Prints the trial table and writes it (trials.md, trials.csv), and best_hparams.json (for
  `bonefrac.train --hparams`); returns the best trial's hyper-parameters."""
  rows = trial_rows(tuner)
  table = tables.markdown_table(rows)
  print(table, flush=True)
  with open(os.path.join(workdir, "trials.md"), "w") as f:
    f.write(table)
  tables.write_csv(rows, os.path.join(workdir, "trials.csv"), empty_header=["trial"])
  name = tuner.oracle.objective.name
  if not rows or rows[0][name] is None:
    return None
  best = rows[0]
  result = {"model": model_name, **{k: best[k] for k in ("dropout", "dense_units")},
            **({"learning_rate": best["learning_rate"]} if "learning_rate" in best else {}),
            "objective": name, "score": best[name], "trial": best["trial"]}
  with open(os.path.join(workdir, "best_hparams.json"), "w") as f:
    json.dump(result, f, indent=2)
  return result


def search(config: train_lib.TrainConfig, search_config: SearchConfig) -> Optional[Dict]:
  """Runs (or continues) the search in `config.workdir`; the best trial's hyper-parameters from
  the process that holds the results (the chief, or the only process), None from workers."""
  if config.strategy == "multi_worker_mirrored":
    raise UserError("--strategy=multi_worker_mirrored does not run inside a tuner; scale a search "
                    "out with KerasTuner's chief/worker mode (launch/tune_local.py)")
  policy, strategy = train_lib.precision_and_strategy(config)
  train_lib.check_model_name(config.model)
  objective(search_config.objective)  # a bad name fails before anything is built
  chief = is_reporting_process()
  overwrite = claim_workdir(config.workdir, search_settings(config, search_config),
                            search_config.overwrite)
  search_config = dataclasses.replace(search_config, overwrite=overwrite)
  keras.utils.set_random_seed(config.seed)
  replicas = strategy.num_replicas_in_sync
  if chief:
    print(f"Searching {config.model}'s head with {search_config.tuner} on {config.dataset}: "
          f"{replicas} replica(s) per trial, precision {policy}; outputs in {config.workdir}",
          flush=True)
  # The chief starts its oracle only in `tuner.search`, after it has built the dataset, and
  # workers wait for it above: so workers never build it concurrently.
  tuner = create_tuner(search_config, HeadHyperModel(config, search_config.tune_learning_rate),
                       config.workdir, strategy if replicas > 1 else None, config.seed)
  builder = input_pipeline.load_builder(config.dataset, config.data_dir, config.manual_dir)
  train_ds, val_ds, steps = train_lib.distributed_datasets(strategy, builder, config)
  logs = os.path.join(config.workdir, "logs")
  if chief:
    write_hparams_config(logs, tuner.oracle.get_space())
  callbacks = trial_callbacks(logs, config.model, tuner.oracle.objective, config.profile_batches)
  tuner.search(train_ds, validation_data=val_ds, steps_per_epoch=steps,
               epochs=search_config.max_epochs, callbacks=callbacks, verbose=config.verbose,
               shuffle=False)  # the dataset shuffles
  if not chief:
    return None
  return write_results(tuner, config.workdir, config.model)


def search_settings(config: train_lib.TrainConfig, search_config: SearchConfig) -> Dict:
  """What must not change when a search is continued in the same workdir."""
  keys = ("model", "dataset", "image_size", "batch_size", "augment", "learning_rate")
  settings = {k: getattr(config, k) for k in keys}
  settings.update({k: getattr(search_config, k) for k in
                   ("tuner", "objective", "tune_learning_rate", "max_epochs", "hyperband_factor")})
  return settings
