"""The kaggle config on quirky downloads: what is kept, skipped, ignored, and the layout errors."""

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

import bonefrac_tfds
from bonefrac_tfds.bone_fracture import build_report
from bonefrac_tfds.bone_fracture import fake_download
from bonefrac_tfds.bone_fracture import layout

PER_CLASS = {"train": 3, "validation": 2, "test": 1}


def build(manual_dir, data_dir):
  builder = bonefrac_tfds.BoneFracture(config="kaggle", data_dir=str(data_dir))
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
  return builder


def examples(builder, split):
  return list(tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)))


@pytest.fixture(scope="module")
def quirky(tmp_path_factory):
  manual = tmp_path_factory.mktemp("manual")
  fake_download.write_kaggle_tree(manual, PER_CLASS, side=72)
  return manual, build(manual, tmp_path_factory.mktemp("data"))


def test_every_decodable_image_is_kept(quirky):
  _, builder = quirky
  for split, n in PER_CLASS.items():
    names = {ex["filename"].decode() for ex in examples(builder, split)}
    plain = {f"{folder}/{i}.jpg" for folder in ("fractured", "not fractured") for i in range(n)}
    odd = {f"fractured/{name}" for name in fake_download.ODD_GOOD}
    assert names == plain | odd


def test_labels_follow_the_class_folders(quirky):
  _, builder = quirky
  for ex in examples(builder, "train"):
    assert ex["label"] == (0 if ex["filename"].startswith(b"not fractured/") else 1)


def test_odd_images_decode_to_the_same_grey_picture(quirky):
  _, builder = quirky
  images = {ex["filename"].decode(): ex["image"] for ex in examples(builder, "train")}
  reference = images["fractured/png named.jpg"].astype(int)  # lossless copy of the source
  for name in fake_download.ODD_GOOD:
    image = images[f"fractured/{name}"]
    assert image.dtype == np.uint8 and image.shape == reference.shape, name
    assert np.abs(image.astype(int) - reference).mean() < 3, name


def test_every_bad_file_is_skipped_and_reported_with_its_reason(quirky):
  _, builder = quirky
  report = build_report.read(builder.data_dir)
  for split in PER_CLASS:
    skipped = {os.path.basename(s["file"]): s["reason"]
               for s in report["splits"][split]["skipped_files"]}
    assert skipped == fake_download.BAD
    assert report["splits"][split]["kept"] == 2 * PER_CLASS[split] + len(fake_download.ODD_GOOD)
  ignored = [i["file"] for i in report["ignored"]]
  assert any(f.endswith("train/labels.csv") for f in ignored)
  assert not any("DS_Store" in f or "Thumbs" in f or "._" in f for f in ignored)


def test_keys_and_report_paths_are_relative(quirky):
  manual, builder = quirky
  report = build_report.read(builder.data_dir)
  files = [s["file"] for split in report["splits"].values() for s in split["skipped_files"]]
  assert files and all(not f.startswith("/") and str(manual) not in f for f in files)
  for ex in examples(builder, "test"):
    assert not ex["filename"].startswith(b"/")


def test_rebuilding_gives_the_same_examples(quirky, tmp_path):
  manual, first = quirky
  second = build(manual, tmp_path)

  def digest(b):
    return [(ex["filename"], hashlib.md5(ex["image"].tobytes()).hexdigest())
            for ex in examples(b, "train")]
  assert digest(first) == digest(second)


def _write(path, n=1):
  path.mkdir(parents=True, exist_ok=True)
  for i in range(n):
    Image.fromarray(np.full((40, 40), 100 + i, np.uint8)).save(path / f"{i}.jpg")


@pytest.mark.parametrize("val_name", ["val", "valid", "validation", "Validation"])
def test_split_and_class_folder_variants(tmp_path, val_name):
  root = tmp_path / "Data" / "Data"
  _write(root / "TRAIN" / "Fractured")
  _write(root / "TRAIN" / "not_fractured")
  _write(root / val_name / "FRACTURED")
  _write(root / val_name / "Non-Fractured")
  found = layout.find_layout(tmp_path)
  assert sorted(found.splits) == ["train", "validation"]  # no test split: no test split
  assert sorted(e.label for e in found.splits["validation"]) == [0, 1]
  assert found.splits["train"][0].key.startswith("Data/Data/TRAIN/")


def test_dataset_without_a_test_split_has_none(tmp_path):
  _write(tmp_path / "train" / "fractured", 2)
  _write(tmp_path / "train" / "not fractured", 2)
  builder = build(tmp_path, tmp_path / "out")
  assert set(builder.info.splits) == {"train"}


def test_missing_manual_dir_names_it(tmp_path):
  with pytest.raises(layout.LayoutError, match=f"(?s){tmp_path / 'nope'} does not exist.*Expected"):
    layout.find_layout(tmp_path / "nope")


def test_empty_manual_dir_says_so(tmp_path):
  with pytest.raises(layout.LayoutError, match=f"(?s){tmp_path}.*found an empty directory.*Expected"):
    layout.find_layout(tmp_path)


def test_unrecognised_layout_lists_what_was_found(tmp_path):
  _write(tmp_path / "images" / "batch1", 2)
  with pytest.raises(layout.LayoutError, match="no recognisable layout: found images/, images/batch1"):
    build(tmp_path, tmp_path / "out")


def test_two_folders_for_one_split_is_an_error(tmp_path):
  _write(tmp_path / "val" / "fractured")
  _write(tmp_path / "valid" / "fractured")
  with pytest.raises(layout.LayoutError, match="look like the validation split"):
    layout.find_layout(tmp_path)


def _tfds_build(*args):
  command = [os.path.join(os.path.dirname(sys.executable), "tfds"), "build", "bone_fracture",
             "--imports", "bonefrac_tfds", "--config", "kaggle", *args]
  return subprocess.run(command, capture_output=True, text=True, timeout=300)


def test_tfds_build_command(tmp_path):
  fake_download.write_kaggle_tree(tmp_path / "manual", {"train": 2, "validation": 1}, side=48)
  ok = _tfds_build("--manual_dir", str(tmp_path / "manual"), "--data_dir", str(tmp_path / "data"))
  assert ok.returncode == 0, ok.stderr[-2000:]
  builder = tfds.builder("bone_fracture/kaggle", data_dir=str(tmp_path / "data"))
  assert builder.info.splits["train"].num_examples == 4 + len(fake_download.ODD_GOOD)
  bad = _tfds_build("--manual_dir", str(tmp_path / "elsewhere"), "--data_dir", str(tmp_path / "d2"))
  assert bad.returncode != 0
  assert str(tmp_path / "elsewhere") in bad.stderr and "does not exist" in bad.stderr


@pytest.mark.parametrize("with_pydicom", [True, False])
def test_dicom_files_are_kept_with_pydicom_and_skipped_with_a_reason_without(
    tmp_path, monkeypatch, with_pydicom):
  pytest.importorskip("pydicom")
  from conftest import dicom_bytes
  _write(tmp_path / "train" / "fractured", 2)
  _write(tmp_path / "train" / "not fractured", 2)
  scan = np.tile(np.arange(48, dtype=np.uint16) * 80, (40, 1))  # 12-bit data
  (tmp_path / "train" / "fractured" / "scan.dcm").write_bytes(dicom_bytes(scan, bits_stored=12))
  if not with_pydicom:
    monkeypatch.setitem(sys.modules, "pydicom", None)
  builder = build(tmp_path, tmp_path / "out")
  names = {ex["filename"].decode() for ex in examples(builder, "train")}
  skipped = build_report.read(builder.data_dir)["splits"]["train"]["skipped_files"]
  if with_pydicom:
    assert "fractured/scan.dcm" in names and not skipped
  else:
    assert "fractured/scan.dcm" not in names and len(names) == 4
    assert [s["reason"] for s in skipped] == ["dicom_unsupported"]
