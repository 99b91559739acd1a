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
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from bonefrac import export, gradcam, input_pipeline, models, predict_lib, train_lib
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
  names = ("x.jpg", "y16.png", "rgba.PNG", "scan.dcm")
  scored = {n: float(rows[n]["fracture_probability"]) for n in names}
  assert all(0.0 <= p <= 1.0 for p in scored.values())
  # The same picture in three lossless containers: the same pixels, but for the 12-bit files'
  # scaling by 255/4095 (at most one grey level), and the same pixels score the same.
  model = predict_lib.load_model(str(workdir))
  pixels = {n: model.pixels([predict_lib.read_for_model(str(p))])[0].astype(int)
            for n, p in (("y16.png", tmp_path / "a" / "b" / "y16.png"),
                         ("rgba.PNG", tmp_path / "a" / "b" / "rgba.PNG"),
                         ("scan.dcm", tmp_path / "a" / "b" / "scan.dcm"))}
  assert np.array_equal(pixels["y16.png"], pixels["scan.dcm"])
  assert np.abs(pixels["y16.png"] - pixels["rgba.PNG"]).max() <= 1
  assert scored["y16.png"] == pytest.approx(scored["scan.dcm"], abs=1e-6)
  assert "undecodable" in rows["broken.jpg"]["error"] and rows["missing.jpg"]["error"]
  assert "error: " in result.stderr and "4 of 6 files scored" in result.stdout


def _unlike_the_training_data(folder):
  from sklearn.datasets import load_sample_image  # a photograph shipped with scikit-learn
  rng = np.random.default_rng(0)
  folder.mkdir()
  (folder / "noise.png").write_bytes(_png(rng.integers(0, 256, (96, 96), dtype=np.uint8)))
  (folder / "blank.png").write_bytes(_png(np.full((96, 96), 255, np.uint8)))
  (folder / "photo.png").write_bytes(_png(load_sample_image("china.jpg")))
  radiograph_like = synthetic.generate_radiograph(99, fractured=True).image  # but an MR header
  (folder / "head_mr.dcm").write_bytes(dicom_bytes(radiograph_like, modality="MR"))
  return {"noise.png", "blank.png", "photo.png", "head_mr.dcm"}


def test_predict_reports_each_images_distance_to_the_training_data(run, tmp_path):
  # A model of one epoch on 40 images cannot tell noise from a radiograph (test_ood.py checks
  # the flags with features that can); this checks the columns, the DICOM header, the modes
  # and that the export agrees with the Keras file.
  workdir, files = run
  odd = _unlike_the_training_data(tmp_path / "odd")
  result = predict_cli(tmp_path / "odd", files, f"--model_dir={workdir}", f"--output={tmp_path / 'p.json'}")
  assert result.returncode == 0, result.stderr[-2000:]
  rows = json.loads((tmp_path / "p.json").read_text())
  assert all(isinstance(r["ood_score"], float) and isinstance(r["in_distribution"], bool) for r in rows)
  by_name = {os.path.basename(r["file"]): r for r in rows}
  assert by_name["head_mr.dcm"]["in_distribution"] is False
  warning = "head_mr.dcm is not like the training images (DICOM Modality MR is not a radiograph)"
  assert warning in result.stderr
  own = [r["in_distribution"] for r in rows if os.path.basename(r["file"]) not in odd]
  assert np.mean(own) >= 0.8  # the threshold: the 99th percentile of 16 validation images
  flagged = sum(not r["in_distribution"] for r in rows if os.path.basename(r["file"]) in odd)
  skipped = predict_cli(tmp_path / "odd", f"--model_dir={workdir}", "--ood=skip")
  assert skipped.returncode == 0 and skipped.stderr.count("; skipped") == flagged
  silent = predict_cli(tmp_path / "odd", f"--model_dir={workdir}", "--ood=ignore")
  assert "not like the training images" not in silent.stderr
  some = predict_lib.find_files([tmp_path / "odd"])
  keras_file = predict_lib.predict_files(predict_lib.load_model(str(workdir / "model.keras")), some)
  exported = predict_lib.predict_files(predict_lib.load_model(str(workdir / "export")), some)
  assert [p.in_distribution for p in exported] == [p.in_distribution for p in keras_file]
  np.testing.assert_allclose([p.ood_score for p in exported], [p.ood_score for p in keras_file],
                             rtol=1e-4)


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


def test_earlier_results_are_replaced_only_with_overwrite(run, tmp_path):
  workdir, files = run
  table, cams = tmp_path / "p.csv", tmp_path / "cam"
  table.write_text("earlier")
  cams.mkdir()
  (cams / "0000_earlier.png").write_bytes(b"earlier")
  refused = predict_cli(files, f"--model_dir={workdir}", f"--output={table}")
  assert refused.returncode == 2 and refused.stderr.strip().splitlines()[-1] == (
      f"error: --output={table} exists; name another file, or pass --overwrite to replace it")
  refused = predict_cli(files, f"--model_dir={workdir}", f"--gradcam={cams}")
  assert refused.returncode == 2 and "holds 1 earlier overlays" in refused.stderr
  assert table.read_text() == "earlier" and (cams / "0000_earlier.png").read_bytes() == b"earlier"
  replaced = predict_cli(files, f"--model_dir={workdir}", f"--output={table}", f"--gradcam={cams}",
                         "--overwrite")
  assert replaced.returncode == 0, replaced.stderr[-2000:]
  assert f"--overwrite: replacing {table}" in replaced.stdout
  assert f"--overwrite: replacing 1 earlier overlays in {cams}" in replaced.stdout
  assert table.read_text().startswith("file,") and not (cams / "0000_earlier.png").exists()


def twin_crops(n, seed, size=64):
  """`n` pairs of 64 px crops of synthetic radiographs: fractured, and its unfractured twin (the
  same pose, the same crop), on the break at a random offset from the crop's centre; with the
  break's box in crop coordinates."""
  rng = np.random.default_rng(seed)
  fractured, unfractured, boxes = [], [], []
  for i in range(n):
    twins = [synthetic.generate_radiograph([seed, i], f) for f in (True, False)]
    y0, x0, y1, x1 = twins[0].fracture_box
    dy, dx = rng.integers(-16, 17, 2)
    top = int(np.clip((y0 + y1) // 2 - size // 2 + dy, 0, twins[0].image.shape[0] - size))
    left = int(np.clip((x0 + x1) // 2 - size // 2 + dx, 0, twins[0].image.shape[1] - size))
    fractured.append(twins[0].image[top:top + size, left:left + size, None])
    unfractured.append(twins[1].image[top:top + size, left:left + size, None])
    boxes.append((max(y0 - top, 0), max(x0 - left, 0), y1 - top, x1 - left))
  return np.stack(fractured), np.stack(unfractured), boxes


def _more_on_the_break_than_the_twin(maps_fractured, maps_twin, boxes):
  """Per pair: whether the fractured image's map puts a larger share of its mass in the break's
  box than its unfractured twin's map does. A map that lights up the bone, or the crop's
  centre, is the same for both twins: never more."""
  def share(heat, box):
    return heat[box[0]:box[2], box[1]:box[3]].sum() / max(heat.sum(), 1e-9)
  return [share(a, box) > share(b, box) for a, b, box in zip(maps_fractured, maps_twin, boxes)]


def test_gradcam_lies_on_the_break_of_synthetic_fractures():
  keras.utils.set_random_seed(0)
  fractured, unfractured, _ = twin_crops(100, seed=1)
  x, y = np.concatenate([fractured, unfractured]), np.repeat([1.0, 0.0], 100).astype("float32")
  model = models.create_cnn(models.ModelConfig(image_size=64, dense_units=(16,), dropout=0.0,
                                               augmentation=None, stem_stride=1))
  model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
  model.fit(x, y, batch_size=16, epochs=6, verbose=0, shuffle=True)
  fractured, unfractured, boxes = twin_crops(20, seed=2)
  maps = gradcam.heatmaps(model, fractured)
  assert maps.shape == (20, 64, 64) and maps.dtype == np.float32
  assert 0.0 <= maps.min() and maps.max() <= 1.0
  hits = _more_on_the_break_than_the_twin(maps, gradcam.heatmaps(model, unfractured), boxes)
  assert np.mean(hits) >= 0.8  # a map blind to the break: 0 (measured: 20 of 20)
  yy, xx = np.mgrid[0:64, 0:64]
  centre = np.exp(-((yy - 31.5) ** 2 + (xx - 31.5) ** 2) / (2 * 12.0 ** 2))
  for blind in (lambda image: centre, lambda image: image[..., 0] / 255.0):  # the criterion's own check
    assert np.mean(_more_on_the_break_than_the_twin(
        [blind(im) for im in fractured], [blind(im) for im in unfractured], boxes)) < 0.5


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


def test_gradcam_of_a_saturated_model_is_not_empty():
  # A confident model outputs exactly 1.0 in float32; the probability's gradient is then 0.
  model = models.create_cnn(models.ModelConfig(image_size=32, dense_units=(8,), augmentation=None))
  output = model.get_layer("linear_logit")
  output.bias.assign(output.bias + 100.0)
  images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 1)).astype(np.uint8)
  assert (model.predict(images, verbose=0) == 1.0).all()
  maps = gradcam.heatmaps(model, images)
  assert np.isfinite(maps).all() and (maps.max(axis=(1, 2)) > 0.99).all()


def test_a_keep_aspect_model_is_served_padded_as_it_was_evaluated(tmp_path):
  model = models.create_cnn(models.ModelConfig(image_size=32, keep_aspect=True, dense_units=(8,),
                                               augmentation=None))
  model.save(tmp_path / "model.keras")
  export.export_saved_model(model, str(tmp_path / "export"))
  wide = _png(np.random.default_rng(0).integers(0, 256, (30, 90), dtype=np.uint8))
  padded = input_pipeline.decode_and_resize(wide, 32, keep_aspect=True).numpy()
  stretched = input_pipeline.decode_and_resize(wide, 32).numpy()
  evaluated, other = model.predict(np.stack([padded, stretched]), verbose=0).reshape(-1)
  assert abs(evaluated - other) > 1e-4  # the check below can tell padding from stretching
  keras_file = predict_lib.load_model(str(tmp_path / "model.keras"))
  assert np.array_equal(keras_file.pixels([wide])[0], padded)
  for loaded in (keras_file, predict_lib.load_model(str(tmp_path / "export"))):
    assert loaded.probabilities([wide])[0] == pytest.approx(evaluated, abs=1e-5)
  settings = export.saved_input_settings(tf.saved_model.load(str(tmp_path / "export")))
  assert settings == {"image_size": 32, "keep_aspect": True, "normalisation": "cnn"}
