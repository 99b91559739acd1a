"""Planted duplicates: transformed copies of train images in the other splits, and their manifest."""

import io
import json

import numpy as np
import pytest
from PIL import Image

from bonefrac_tfds.bone_fracture import fake_download, image_files, leak


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
  root = tmp_path_factory.mktemp("leaky")
  data = fake_download.write_kaggle_tree(root, {"train": 6, "validation": 2, "test": 2}, side=96,
                                         quirks=False, leak_per_kind=2)
  return data, json.loads((data / leak.MANIFEST).read_text())


def test_every_kind_is_planted_across_splits_with_its_label(tree):
  data, planted = tree
  assert [p["kind"] for p in planted] == [k for k in leak.KINDS for _ in range(2)]
  for pair in planted:
    source, copy = data / pair["source"], data / pair["copy"]
    assert source.parts[-3] == "train" and copy.parts[-3] in ("val", "test")
    assert source.parent.name == copy.parent.name  # the same class: the label agrees
    grey, _ = image_files.decode_grey(copy.read_bytes())  # the builder keeps every copy
    assert grey.dtype == np.uint8 and min(grey.shape) >= 32


def _grey(path_or_bytes):
  data = path_or_bytes if isinstance(path_or_bytes, bytes) else path_or_bytes.read_bytes()
  return image_files.decode_grey(data)[0].astype(float)


def test_each_transformation_does_what_it_says():
  image = Image.fromarray(np.asarray(Image.open(io.BytesIO(fake_download._encoded(
      fake_download._radiograph([1, 2], 1, 96), "PNG")))))
  pixels = np.asarray(image, float)
  rng = np.random.default_rng(0)

  def copy(kind):
    return _grey(leak.transformed_copy(image, kind, rng))

  assert np.array_equal(copy("png"), pixels) and np.array_equal(copy("exact"), pixels)
  assert np.abs(copy("flip_h") - pixels[:, ::-1]).mean() < 3  # JPEG at quality 90
  assert np.abs(copy("flip_v") - pixels[::-1]).mean() < 3
  assert np.abs(copy("jpeg50") - pixels).mean() < 4
  assert np.abs(copy("rgb") - pixels).mean() < 3
  crop = copy("crop")
  assert all(0.8 * s - 1 <= c <= s for c, s in zip(crop.shape, pixels.shape))
  ratio = copy("rescale").shape[0] / pixels.shape[0]
  assert 0.5 - 0.02 <= ratio <= 2.0 + 0.02
  assert all(c >= s for c, s in zip(copy("rotate_expand").shape, pixels.shape))
  assert copy("rotate").shape == pixels.shape
  for kind in ("brightness", "contrast", "gamma", "noise"):
    changed = copy(kind)
    assert changed.shape == pixels.shape and np.abs(changed - pixels).mean() > 1, kind
    assert np.corrcoef(changed.ravel(), pixels.ravel())[0, 1] > 0.9, kind  # the same picture


def test_planting_is_seeded(tmp_path):
  def plant(folder, seed):
    data = fake_download.write_kaggle_tree(tmp_path / folder, {"train": 3, "test": 1}, side=64,
                                           quirks=False)
    return leak.plant_leaks(data, 1, seed=seed, kinds=("rotate", "crop"))
  assert plant("a", 0) == plant("b", 0) != plant("c", 1)


def test_a_tree_without_another_split_is_refused(tmp_path):
  data = fake_download.write_kaggle_tree(tmp_path, {"train": 2}, side=64, quirks=False)
  with pytest.raises(ValueError, match="val/ or test/"):
    leak.plant_leaks(data, 1)
  with pytest.raises(ValueError, match="unknown kind"):
    leak.transformed_copy(Image.new("L", (40, 40)), "sepia", np.random.default_rng(0))


def test_the_command_line_plants_copies(tmp_path):
  fake_download.main([str(tmp_path), "--per_class", "4", "--side", "64", "--no_quirks",
                      "--leak", "1", "--seed", "3"])
  manifest = next(tmp_path.rglob(leak.MANIFEST))
  assert len(json.loads(manifest.read_text())) == len(leak.KINDS)
