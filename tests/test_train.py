"""bonefrac.train end to end on tiny data: outputs, TensorBoard, export, resuming, user errors."""

import csv
import dataclasses
import io
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tensorboard.backend.event_processing import event_accumulator

from bonefrac import callbacks, errors, input_pipeline, train_lib
from conftest import SMALL_SPLITS

DATASET = "bone_fracture/synthetic_small"
SIZE = 32


def tiny_config(data_dir, workdir, **overrides):
  values = dict(dataset=DATASET, data_dir=data_dir, workdir=workdir and str(workdir), epochs=1, batch_size=8,
                image_size=SIZE, dense_units=(16,), verbose=0)
  return train_lib.TrainConfig(**{**values, **overrides})


def test_report_fields_agree_with_the_confusion_matrix(cnn_run):
  workdir, report = cnn_run
  with open(workdir / "report.json") as f:
    assert json.load(f) == report
  for key in ("model", "dataset", "split", "n", "accuracy", "precision", "sensitivity",
              "specificity", "f1", "auc", "pr_auc", "threshold", "confusion_matrix", "epochs_run"):
    assert key in report, key
  (tn, fp), (fn, tp) = report["confusion_matrix"]
  assert report["split"] == "test" and report["n"] == tn + fp + fn + tp == dict(SMALL_SPLITS)["test"]
  assert report["accuracy"] == pytest.approx((tp + tn) / report["n"])
  assert report["sensitivity"] == pytest.approx(tp / (tp + fn))
  assert report["specificity"] == pytest.approx(tn / (tn + fp))
  assert report["epochs_run"] == 2 and report["replicas"] == 1
  high = report["high_sensitivity"]
  assert high["chosen_on"] == "validation" and 0.0 <= high["threshold"] <= 1.0


def test_outputs_land_in_the_workdir(cnn_run):
  workdir, report = cnn_run
  for name in ("model.keras", "export/saved_model.pb", "confusion_matrix.png", "roc_curve.png",
               "pr_curve.png", "training_curves.png", "training_log.csv", "predictions_test.csv",
               "reliability_diagram.png"):
    assert (workdir / name).exists(), name
  lines = (workdir / "predictions_test.csv").read_text().splitlines()
  assert lines[0] == "filename,label,fracture_probability" and len(lines) == 1 + report["n"]
  with open(workdir / "training_log.csv") as f:
    rows = list(csv.DictReader(f))
  scores = np.float32([row[callbacks.MONITOR] for row in rows])  # Keras compares in float32
  best = rows[int(np.argmax(scores))]  # the first best, as the checkpoint keeps it
  assert report["best_epoch"] == int(best["epoch"]) + 1
  assert report["best_val_auc"] == pytest.approx(float(best["val_auc"]))


def test_the_checkpoint_prefers_higher_auc_then_lower_loss():
  score = callbacks.selection_score
  assert score(0.995, 0.02) > score(0.990, 0.0)  # AUC first, whatever the loss
  assert score(1.0, 0.02) > score(1.0, 0.3)  # a tie on AUC: the better-calibrated epoch
  assert score(0.99981, 0.02) > score(0.99992, 0.3)  # 1e-4 in AUC is a pair or two: a tie
  assert score(1.0, 5.0) > score(0.999, 0.0)


def test_the_progress_bar_leaves_the_confusion_counts_to_the_logs(capsys):
  inputs = keras.Input((4,))
  model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(inputs))
  train_lib.compile_model(model, 1e-3)
  x, y = np.random.default_rng(0).random((16, 4)), np.arange(16) % 2
  for verbose in (1, 2):
    history = model.fit(x, y, validation_data=(x, y), epochs=1, batch_size=8, verbose=verbose,
                        callbacks=[callbacks.ProgressBar()])
    shown = capsys.readouterr().out
    assert "loss:" in shown and "val_auc:" in shown
    assert not any(f"{name}:" in shown for name in ("tp", "fp", "tn", "fn", "val_fp")), shown
    assert {"tp", "fp", "val_tn", "val_fn"} <= set(history.history)  # TensorBoard, CSV


def _tags(path):
  acc = event_accumulator.EventAccumulator(str(path), size_guidance={"tensors": 0, "images": 0})
  acc.Reload()
  return acc.Tags()


def test_tensorboard_events_hold_scalars_images_pr_curve_and_hparams(cnn_run):
  workdir, _ = cnn_run
  logs = workdir / "logs"
  train_tags, val_tags = _tags(logs / "train"), _tags(logs / "validation")
  scalars = set(train_tags["tensors"]) | set(train_tags["scalars"])
  for tag in ("epoch_loss", "epoch_auc", "epoch_learning_rate", "epoch_images_per_second"):
    assert tag in scalars, tag
  assert "epoch_auc" in set(val_tags["tensors"]) | set(val_tags["scalars"])
  assert "augmented_training_images" in set(train_tags["tensors"]) | set(train_tags["images"])
  assert "confusion_matrix" in set(val_tags["tensors"]) | set(val_tags["images"])
  assert "test/pr_curves" in _tags(logs / "evaluation")["tensors"]
  assert "_hparams_/session_start_info" in _tags(logs)["tensors"]


def _encode(array, fmt):
  buffer = io.BytesIO()
  Image.fromarray(array, mode="L").save(buffer, format=fmt)
  return buffer.getvalue()


def test_export_signature_equals_model_predict_on_jpeg_and_png(cnn_run):
  workdir, _ = cnn_run
  rng = np.random.default_rng(0)
  encoded = [_encode(rng.integers(0, 256, (90, 70), dtype=np.uint8), fmt) for fmt in ("JPEG", "PNG")]
  served = tf.saved_model.load(str(workdir / "export")).signatures["serving_default"](
      images=tf.constant(encoded))["fracture_probability"].numpy()
  model = keras.models.load_model(workdir / "model.keras")  # safe_mode: no Lambda, no pickles
  pixels = np.stack([input_pipeline.decode_and_resize(e, SIZE).numpy() for e in encoded])
  np.testing.assert_allclose(served, model.predict(pixels, verbose=0).reshape(-1), atol=1e-5)


def test_vgg16_trains_one_epoch_from_scratch(small_data_dir, tmp_path):
  report = train_lib.train(tiny_config(small_data_dir, tmp_path, model="vgg16",
                                       vgg16_weights="none", fine_tune_epochs=1))
  assert report["model"] == "vgg16" and report["epochs_run"] == 2  # head, then block5 unfrozen
  assert report["trainable_parameters"] < report["parameters"]


class Crash(keras.callbacks.Callback):
  def on_epoch_end(self, epoch, logs=None):
    raise RuntimeError("killed")


class EpochsSeen(keras.callbacks.Callback):
  def __init__(self):
    super().__init__()
    self.epochs = []

  def on_epoch_begin(self, epoch, logs=None):
    self.epochs.append(epoch)


def test_a_run_stopped_after_its_first_epoch_resumes_at_the_second(small_data_dir, tmp_path):
  config = tiny_config(small_data_dir, tmp_path, epochs=2)
  with pytest.raises(RuntimeError, match="killed"):
    train_lib.train(config, extra_callbacks=[Crash()])
  seen = EpochsSeen()
  report = train_lib.train(config, extra_callbacks=[seen])
  assert seen.epochs == [1]
  assert report["epochs_run"] == 2 and not (tmp_path / "backup").exists()


def test_an_interrupted_run_is_not_resumed_with_another_model(small_data_dir, tmp_path):
  with pytest.raises(RuntimeError, match="killed"):
    train_lib.train(tiny_config(small_data_dir, tmp_path, epochs=2), extra_callbacks=[Crash()])
  result = _cli("--model=vgg16", "--vgg16_weights=none", "--batch_size=8", data_dir=small_data_dir,
                workdir=tmp_path)
  assert result.returncode == 2 and "Traceback" not in result.stderr
  assert result.stderr.strip().splitlines()[-1].startswith(
      f"error: --workdir={tmp_path} holds an interrupted run with model=cnn (now vgg16)")
  assert (tmp_path / "backup").is_dir()  # nothing of the interrupted run was touched
  seen = EpochsSeen()
  report = train_lib.train(tiny_config(small_data_dir, tmp_path, model="vgg16",
                                       vgg16_weights="none", overwrite=True),
                           extra_callbacks=[seen])
  assert seen.epochs == [0] and report["model"] == "vgg16"  # afresh, as asked


def test_mirrored_runs_two_cpu_replicas(small_data_dir, tmp_path):
  result = _cli("--strategy=mirrored", "--cpu_replicas=2", "--batch_size=8",
                data_dir=small_data_dir, workdir=tmp_path)
  assert result.returncode == 0, result.stderr[-2000:]
  report = json.loads((tmp_path / "report.json").read_text())
  assert report["strategy"] == "MirroredStrategy" and report["replicas"] == 2
  assert report["devices"] == ["/job:localhost/replica:0/task:0/device:CPU:0",
                               "/job:localhost/replica:0/task:0/device:CPU:1"]


def test_multi_worker_mirrored_runs_as_one_worker_without_tf_config(small_data_dir, tmp_path):
  result = _cli("--strategy=multi_worker_mirrored", data_dir=small_data_dir, workdir=tmp_path)
  assert result.returncode == 0, result.stderr[-2000:]
  report = json.loads((tmp_path / "report.json").read_text())
  assert report["strategy"] == "CollectiveAllReduceStrategy" and report["replicas"] == 1


@pytest.mark.parametrize("flag, message", [
    ("--model=resnet", "--model=resnet"),
    ("--precision=float8", "--precision=float8"),
])
def test_bad_flag_values_exit_2_with_one_line(flag, message, small_data_dir, tmp_path):
  result = _cli(flag, data_dir=small_data_dir, workdir=tmp_path)
  assert result.returncode == 2
  errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
  # TensorFlow's own start-up lines may precede it; ours is one line, last, no traceback.
  assert len(errors) == 1 and message in errors[0] and "Traceback" not in result.stderr
  assert result.stderr.strip().splitlines()[-1] == errors[0]


def test_a_new_user_sees_our_line_and_no_tensorflow_start_up_noise(tmp_path):
  env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
  result = subprocess.run([sys.executable, "-m", "bonefrac.train", "--model=resnet"],
                          capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == [
      "error: flag --model=resnet: value should be one of <cnn|vgg16>. See --helpshort."]


def test_no_partly_read_cache_warning(small_data_dir, tmp_path):
  # TFDS auto-caches small datasets; the first images (for TensorBoard) read part of one.
  result = subprocess.run(
      [sys.executable, "-m", "bonefrac.train", f"--dataset={DATASET}", f"--data_dir={small_data_dir}",
       f"--workdir={tmp_path}", "--epochs=1", f"--image_size={SIZE}", "--dense_units=16",
       "--batch_size=8", "--verbose=0"],
      capture_output=True, text=True, timeout=300,
      env={**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "1"})  # warnings on
  assert result.returncode == 0, result.stderr[-2000:]
  assert "did not fully read the dataset being cached" not in result.stderr


def test_batch_not_divisible_by_replicas_exits_2(small_data_dir, tmp_path):
  result = _cli("--strategy=mirrored", "--cpu_replicas=2", "--batch_size=7",
                data_dir=small_data_dir, workdir=tmp_path)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1].startswith("error: --batch_size=7 must be")


def test_user_errors_say_what_to_do(small_data_dir, tmp_path, monkeypatch):
  blocker = tmp_path / "a_file"
  blocker.write_text("")
  with pytest.raises(errors.UserError, match="cannot write to --workdir"):
    train_lib.train(tiny_config(small_data_dir, blocker / "run"))
  with pytest.raises(errors.UserError, match="not built .* could not be built.*tfds build"):
    train_lib.train(tiny_config(str(tmp_path / "empty"), tmp_path / "r1",
                                dataset="bone_fracture/kaggle"))
  with pytest.raises(errors.UserError, match="unknown --dataset"):
    train_lib.train(tiny_config(small_data_dir, tmp_path / "r2", dataset="no_such_dataset"))
  with pytest.raises(errors.UserError, match="no such file"):
    train_lib.train(tiny_config(small_data_dir, tmp_path / "r3", model="vgg16",
                                vgg16_weights=str(tmp_path / "missing.h5")))


def test_offline_imagenet_weights_name_the_cache_and_the_alternatives(small_data_dir, tmp_path,
                                                                      monkeypatch):
  monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
  for proxy in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
    monkeypatch.setenv(proxy, "http://127.0.0.1:9")  # nothing listens there: offline
  with pytest.raises(errors.UserError) as error:
    train_lib.build_model(tiny_config(small_data_dir, tmp_path, model="vgg16"))
  message = str(error.value)
  assert str(tmp_path / "keras" / "models") in message
  assert "--vgg16_weights=none" in message and "--vgg16_weights=PATH" in message


def test_hparams_file_overrides_the_head(tmp_path):
  from bonefrac import train
  path = tmp_path / "best.json"
  path.write_text(json.dumps({"dropout": 0.1, "dense_units": [64, 32], "learning_rate": 3e-4}))
  config = train.apply_hparams(train_lib.TrainConfig(), str(path))
  assert (config.dropout, config.dense_units, config.learning_rate) == (0.1, (64, 32), 3e-4)


def _cli(*flags, data_dir, workdir):
  command = [sys.executable, "-m", "bonefrac.train", f"--dataset={DATASET}", f"--data_dir={data_dir}",
             f"--workdir={workdir}", "--epochs=1", f"--image_size={SIZE}", "--dense_units=16",
             "--verbose=2", *flags]
  return subprocess.run(command, capture_output=True, text=True, timeout=300,
                        env={**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3"})


def test_profile_batches_write_a_trace_the_profile_plugin_reads(small_data_dir, tmp_path):
  from xprof.convert import raw_to_tool_data  # tensorboard-plugin-profile's reader
  train_lib.train(tiny_config(small_data_dir, tmp_path, profile_batches=(2, 3)))
  traces = [str(p) for p in (tmp_path / "logs" / "train" / "plugins" / "profile").glob("*/*.xplane.pb")]
  assert len(traces) == 1
  assert "input_pipeline_analyzer" in raw_to_tool_data.xspace_to_tool_names(traces)
  trace, _ = raw_to_tool_data.xspace_to_tool_data(traces, "trace_viewer", {})
  names = {event.get("name", "") for event in json.loads(trace)["traceEvents"]}
  assert any(name.startswith("Iterator::") for name in names)  # tf.data's steps are in it
  analysis, _ = raw_to_tool_data.xspace_to_tool_data(traces, "input_pipeline_analyzer", {})
  assert json.loads(analysis)[1]["cols"][0]["id"] == "stepnum"
  from bonefrac import common_flags
  assert common_flags.profile_batches("10,15") == (10, 15) and common_flags.profile_batches("4") == (4, 4)
  for bad in ("0,3", "5,2", "a,b", "1,2,3"):
    with pytest.raises(errors.UserError, match=f"--profile_batches={bad}: give START,END"):
      common_flags.profile_batches(bad)


def test_config_is_a_dataclass_with_the_contract_flags():
  names = {f.name for f in dataclasses.fields(train_lib.TrainConfig)}
  assert {"model", "strategy", "precision", "dataset", "data_dir", "workdir", "epochs", "batch_size",
          "image_size", "learning_rate", "dropout", "dense_units", "vgg16_weights", "cpu_replicas",
          "seed"} <= names
