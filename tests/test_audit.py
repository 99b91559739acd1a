"""The duplicate finder and `bonefrac.audit`: planted copies found, look-alikes apart, the CLI."""

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from bonefrac import audit_lib
from bonefrac_tfds.bone_fracture import duplicates, fake_download, image_files, leak, synthetic

ENV = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3"}
SINGLE_KINDS = [k for k in leak.KINDS if k != "combo"]


@pytest.fixture(scope="module")
def leaky(tmp_path_factory):
  """A download of 40 distinct synthetic radiographs in train, 12 in val and test, and one
  planted copy of each kind of transformation; and its audit."""
  root = tmp_path_factory.mktemp("leaky")
  data = fake_download.write_kaggle_tree(root, {"train": 20, "validation": 6, "test": 6},
                                         quirks=False, seed=11, leak_per_kind=1)
  images = audit_lib.from_manual_dir(str(root))
  return root, data, json.loads((data / leak.MANIFEST).read_text()), audit_lib.audit(images)


def _prefix(root, data):
  return os.path.relpath(data, root).replace(os.sep, "/") + "/"


def test_every_planted_copy_is_grouped_with_its_source(leaky):
  root, data, planted, result = leaky
  prefix = _prefix(root, data)
  groups = [set(g["files"]) for g in result["groups"]]
  found = {p["kind"] for p in planted
           if any({prefix + p["source"], prefix + p["copy"]} <= g for g in groups)}
  assert set(SINGLE_KINDS) <= found, set(SINGLE_KINDS) - found  # each transformation alone
  # "combo" chains six of them; the finder got 6 to 9 of 10 in BUILD_NOTES' measurements.


def test_distinct_radiographs_are_never_grouped(leaky):
  root, data, planted, result = leaky
  prefix = _prefix(root, data)
  source_of = {prefix + p["copy"]: prefix + p["source"] for p in planted}
  for group in result["groups"]:
    assert len({source_of.get(f, f) for f in group["files"]}) == 1, group  # one radiograph


def test_the_summary_counts_what_leaks(leaky):
  _, _, planted, result = leaky
  summary = result["summary"]
  assert summary["images"] == 2 * (20 + 6 + 6) + len(planted)
  assert summary["groups"] == len(result["groups"]) == summary["groups_spanning_splits"]
  assert summary["groups_with_disagreeing_labels"] == 0  # copies keep their class folder
  leaks = summary["later_split_images_with_a_duplicate_in_the_earlier"]
  planted_in = {split: sum(p["copy"].split("/")[0] == folder for p in planted)
                for split, folder in (("validation", "val"), ("test", "test"))}
  assert leaks["train-validation"]["images"] >= planted_in["validation"] - 1  # combo may miss
  assert leaks["train-test"]["images"] >= planted_in["test"] - 1


def _png(array):
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format="PNG")
  return buffer.getvalue()


def _image(name, split, label, array):
  return audit_lib.AuditImage(name, split, label, lambda: array)


def test_groups_across_three_splits_exact_copies_and_labels_that_disagree():
  rng = np.random.default_rng(0)
  a = synthetic.generate_radiograph([3, 1], True).image
  b = synthetic.generate_radiograph([3, 2], False).image
  flipped = np.ascontiguousarray(a[:, ::-1])
  rotated = image_files.decode_grey(leak.transformed_copy(Image.fromarray(a), "rotate", rng))[0]
  images = [_image("a.jpg", "train", 1, a), _image("b.jpg", "train", 0, b),
            _image("a_flip.jpg", "validation", 1, flipped),
            _image("a_rot.jpg", "test", 1, rotated), _image("b_same.png", "test", 1, b.copy()),
            _image("c.jpg", "test", 0, synthetic.generate_radiograph([3, 3], True).image)]
  result = audit_lib.audit(images)
  assert sorted(map(sorted, (g["files"] for g in result["groups"]))) == [
      ["a.jpg", "a_flip.jpg", "a_rot.jpg"], ["b.jpg", "b_same.png"]]
  three = next(g for g in result["groups"] if "a.jpg" in g["files"])
  assert sorted(three["splits"]) == ["test", "train", "validation"]
  summary = result["summary"]
  assert summary["groups_with_disagreeing_labels"] == 1  # b as not fractured, then fractured
  leaks = summary["later_split_images_with_a_duplicate_in_the_earlier"]
  assert (leaks["train-test"]["images"], leaks["train-test"]["of"]) == (2, 3)
  assert leaks["train-validation"]["images"] == 1 and leaks["validation-test"]["images"] == 1


def test_the_signature_is_small_whatever_the_image():
  signature = duplicates.signature(np.zeros((2000, 3000), np.uint8) + 128)
  assert max(signature.picture.shape) == duplicates.FEATURE_SIDE
  assert duplicates.verify(signature, signature).correlation == 1.0  # identical pixels


def audit_cli(*args, cwd=None):
  return subprocess.run([sys.executable, "-m", "bonefrac.audit", *map(str, args)],
                        capture_output=True, text=True, timeout=300, env=ENV, cwd=cwd)


def test_the_cli_on_a_download_and_on_the_built_dataset(leaky, tmp_path):
  root, _, _, expected = leaky
  result = audit_cli(f"--manual_dir={root}", f"--output={tmp_path / 'a.json'}",
                     f"--sheet={tmp_path / 'sheets'}")
  assert result.returncode == 0, result.stderr[-2000:]
  written = json.loads((tmp_path / "a.json").read_text())
  assert written["summary"] == expected["summary"]
  assert "| groups spanning splits |" in result.stdout
  assert len(list((tmp_path / "sheets").glob("*.png"))) == expected["summary"]["groups_spanning_splits"]
  import bonefrac_tfds
  builder = bonefrac_tfds.BoneFracture(config="kaggle", data_dir=str(tmp_path / "tfds"))
  import tensorflow_datasets as tfds
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(root)))
  built = audit_cli("--dataset=bone_fracture/kaggle", f"--data_dir={tmp_path / 'tfds'}",
                    f"--output={tmp_path / 'b.json'}")
  assert built.returncode == 0, built.stderr[-2000:]
  from_dataset = json.loads((tmp_path / "b.json").read_text())
  assert from_dataset["summary"]["groups"] == expected["summary"]["groups"]
  # files as the dataset's filename feature: relative to the split folder
  assert all("/" not in f.split("fractured/")[-1] for g in from_dataset["groups"] for f in g["files"])


def test_a_build_older_than_the_group_feature_is_named(tmp_path):
  (tmp_path / "tfds" / "bone_fracture" / "kaggle" / "1.0.0").mkdir(parents=True)
  result = audit_cli("--dataset=bone_fracture/kaggle", f"--data_dir={tmp_path / 'tfds'}", cwd=tmp_path)
  assert result.returncode == 2 and "Traceback" not in result.stderr
  last = result.stderr.strip().splitlines()[-1]
  assert "only as version 1.0.0, before the `group` feature" in last and "tfds build" in last


@pytest.mark.parametrize("args, message", [
    ((), "give one of --manual_dir"),
    (("--manual_dir=/no/such/folder",), "--manual_dir=/no/such/folder: no such folder"),
    (("--dataset=bone_fracture/kaggle", "--data_dir=/tmp/bonefrac_no_such_data_dir"), "is not built"),
])
def test_bad_input_exits_2_with_one_line(args, message, tmp_path):
  result = audit_cli(*args, cwd=tmp_path)
  assert result.returncode == 2 and "Traceback" not in result.stderr
  assert message in result.stderr.strip().splitlines()[-1]
