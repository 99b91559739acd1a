"""bonefrac.predict: the same probabilities as evaluation, folders and formats, bad files, Grad-CAM."""

import csv
import io
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from bonefrac import gradcam, models, predict_lib, train_lib
from bonefrac_tfds.bone_fracture import synthetic
from conftest import dicom_bytes

DATASET = "bone_fracture/synthetic_small"
ENV = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3"}


@pytest.fixture(scope="module")
def run(small_data_dir, tmp_path_factory):
  """A tiny trained workdir and the test split written out as the files it came from."""
  workdir = tmp_path_factory.mktemp("run")
  train_lib.train(train_lib.TrainConfig(dataset=DATASET, data_dir=small_data_dir,
                                        workdir=str(workdir), epochs=1, batch_size=8,
                                        image_size=32, dense_units=(16,), verbose=0))
  files = tmp_path_factory.mktemp("test_files")
  builder = tfds.builder(DATASET, data_dir=small_data_dir)
  ds = builder.as_dataset(split="test", decoders={"image": tfds.decode.SkipDecoding()})
  for ex in tfds.as_numpy(ds):
    path = files / ex["filename"].decode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(ex["image"])
  return workdir, files


def predict_cli(*args):
  return subprocess.run([sys.executable, "-m", "bonefrac.predict", *map(str, args)],
                        capture_output=True, text=True, timeout=300, env=ENV)


def test_predictions_equal_the_training_reports_evaluation(run, tmp_path):
  workdir, files = run
  result = predict_cli(files, f"--model_dir={workdir}", f"--output={tmp_path / 'p.json'}")
  assert result.returncode == 0, result.stderr[-2000:]
  predicted = {os.path.relpath(r["file"], files): r["fracture_probability"]
               for r in json.loads((tmp_path / "p.json").read_text())}
  with open(workdir / "predictions_test.csv") as f:
    evaluated = {r["filename"]: float(r["fracture_probability"]) for r in csv.DictReader(f)}
  assert predicted.keys() == evaluated.keys()
  for name, p in evaluated.items():
    assert predicted[name] == pytest.approx(p, abs=1e-5), name


def test_the_export_and_the_keras_file_give_the_same_probabilities(run):
  workdir, files = run
  some = predict_lib.find_files([files])[:4]
  keras_file = predict_lib.predict_files(predict_lib.load_model(str(workdir / "model.keras")), some)
  exported = predict_lib.predict_files(predict_lib.load_model(str(workdir / "export")), some)
  np.testing.assert_allclose([p.probability for p in exported],
                             [p.probability for p in keras_file], atol=1e-5)


def _png(array, mode=None):
  buffer = io.BytesIO()
  (Image.fromarray(array, mode) if mode else Image.fromarray(array)).save(buffer, format="PNG")
  return buffer.getvalue()


def test_folders_mixed_formats_and_a_bad_file(run, tmp_path):
  workdir, _ = run
  grey = synthetic.generate_radiograph(3, fractured=True).image
  (tmp_path / "a" / "b").mkdir(parents=True)
  (tmp_path / "a" / "x.jpg").write_bytes(synthetic.encode_jpeg(grey))
  (tmp_path / "a" / "b" / "y16.png").write_bytes(_png((grey.astype(np.uint16) * 16), "I;16"))
  (tmp_path / "a" / "b" / "rgba.PNG").write_bytes(_png(np.dstack([grey] * 3 + [grey * 0 + 255])))
  (tmp_path / "a" / "b" / "scan.dcm").write_bytes(dicom_bytes(grey.astype(np.uint16) * 16,
                                                              bits_stored=12))
  (tmp_path / "a" / "b" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
  (tmp_path / "a" / ".DS_Store").write_bytes(b"junk")
  result = predict_cli(tmp_path / "a", tmp_path / "missing.jpg", f"--model_dir={workdir}",
                       f"--output={tmp_path / 'out.csv'}")
  assert result.returncode == 1  # some files failed; the others were scored
  with open(tmp_path / "out.csv") as f:
    rows = {os.path.basename(r["file"]): r for r in csv.DictReader(f)}
  assert set(rows) == {"x.jpg", "y16.png", "rgba.PNG", "scan.dcm", "broken.jpg", "missing.jpg"}
  scored = [rows[n]["fracture_probability"] for n in ("x.jpg", "y16.png", "rgba.PNG", "scan.dcm")]
  assert all(0.0 <= float(p) <= 1.0 for p in scored)
  # The same picture in four containers gets (nearly) the same probability.
  assert max(map(float, scored)) - min(map(float, scored)) < 0.02
  assert "undecodable" in rows["broken.jpg"]["error"] and rows["missing.jpg"]["error"]
  assert "error: " in result.stderr and "4 of 6 files scored" in result.stdout


def test_user_errors_exit_2(run, tmp_path):
  workdir, files = run
  assert predict_cli(files, f"--model_dir={tmp_path}").returncode == 2  # no model there
  assert predict_cli(f"--model_dir={workdir}").returncode == 2  # no files
  no_cam = predict_cli(files, f"--model_dir={workdir / 'export'}", f"--gradcam={tmp_path}")
  assert no_cam.returncode == 2 and "--gradcam needs a Keras model" in no_cam.stderr


def test_gradcam_writes_a_png_per_image(run, tmp_path):
  workdir, files = run
  result = predict_cli(files, f"--model_dir={workdir}", f"--gradcam={tmp_path / 'cam'}")
  assert result.returncode == 0, result.stderr[-2000:]
  pngs = sorted((tmp_path / "cam").glob("*.png"))
  assert len(pngs) == len(predict_lib.find_files([files]))
  assert Image.open(pngs[0]).size[0] > Image.open(pngs[0]).size[1]  # image and overlay side by side


def bar_images(n, rng, size=64):
  """Noise, and in odd images a bright 12x3 bar somewhere: a toy fracture with a known box."""
  images = rng.normal(100, 20, (n, size, size, 1))
  boxes = []
  for i in range(n):
    if i % 2:
      r, c = rng.integers(4, size - 16, 2)
      images[i, r:r + 12, c:c + 3] += 90
      boxes.append((r, c, r + 12, c + 3))
    else:
      boxes.append(None)
  return np.clip(images, 0, 255).astype(np.uint8), (np.arange(n) % 2).astype("float32"), boxes


def test_gradcam_follows_what_the_model_detects():
  keras.utils.set_random_seed(0)
  x, y, _ = bar_images(256, np.random.default_rng(0))
  model = models.create_cnn(models.ModelConfig(image_size=64, dense_units=(16,), dropout=0.0,
                                               augmentation=None))
  model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
  model.fit(x, y, batch_size=16, epochs=4, verbose=0)
  images, _, boxes = bar_images(32, np.random.default_rng(1))
  maps = gradcam.heatmaps(model, images)
  assert maps.shape == (32, 64, 64) and maps.dtype == np.float32
  assert 0.0 <= maps.min() and maps.max() <= 1.0
  hits = []
  for heat, box in zip(maps, boxes):
    if box is not None:
      inside = np.zeros(heat.shape, bool)
      inside[box[0]:box[2], box[1]:box[3]] = True
      hits.append(heat[inside].mean() > heat[~inside].mean())
  assert np.mean(hits) > 0.8  # chance: about half


def test_gradcam_finds_vgg16s_last_conv_inside_the_nested_model_in_float32():
  keras.mixed_precision.set_global_policy("mixed_bfloat16")
  try:
    model = models.create_vgg16(models.ModelConfig(image_size=32, dense_units=(8,),
                                                   augmentation=None), weights=None)
  finally:
    keras.mixed_precision.set_global_policy("float32")
  holder, conv = gradcam.last_conv_layer(model)
  assert holder.name == "vgg16" and conv.name == "block5_conv3"
  images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 1)).astype(np.uint8)
  maps = gradcam.heatmaps(model, images)
  assert maps.shape == (2, 32, 32) and maps.dtype == np.float32 and np.isfinite(maps).all()
