"""The benchmarks: their timers, what each loader yields, and the original setup they compare to."""

import time

import numpy as np
import pytest

from bonefrac import bench_build
from bonefrac import bench_pipeline
from bonefrac_tfds.bone_fracture import fake_download


def test_a_pass_is_timed_and_its_images_counted():
  def batches():  # 5 batches of 4 images, 20 ms each: at most 200 images/s
    for _ in range(5):
      time.sleep(0.02)
      yield np.zeros((4, 8, 8)), np.zeros(4)  # (images, labels)
  seconds, images = bench_pipeline.time_pass(batches())
  assert images == 20 and 0.1 <= seconds < 0.4


def test_bench_build_builds_every_file_and_times_both(tmp_path):
  fake_download.write_kaggle_tree(tmp_path, {"train": 3, "validation": 1}, side=64, quirks=False)
  result = bench_build.bench_build(tmp_path, repeats=1)
  assert result["files"] == 2 * 3 + 2 * 1
  assert result["decode_images_per_s"] * result["decode_pass_s"] == pytest.approx(8)
  assert result["build_over_decode"] * result["decode_pass_s"] == pytest.approx(result["build_s"])


def test_each_loader_yields_the_train_split_in_its_own_form(tmp_path):
  splits = fake_download.write_kaggle_tree(tmp_path / "m", {"train": 40, "validation": 2},
                                           side=240, quirks=False)
  train_dir = splits / "train"
  images, _ = next(iter(bench_pipeline.keras_ifd(train_dir)))
  assert images.shape == (32, 224, 224, 3) and 0.0 <= float(images.numpy().min()) <= 1.0
  cached = bench_pipeline.keras_ifd(train_dir, cache=True)
  first, again = bench_pipeline.time_pass(cached), bench_pipeline.time_pass(cached)
  assert first[1] == again[1] == 80  # every image, twice: the cache keeps them all
  result = bench_pipeline.bench_pipeline(tmp_path / "m", tmp_path / "d", repeats=1,
                                         steady_epochs=2,
                                         which=("keras_ifd_cached", "decode_only", "ours"))
  assert result["images"] == 64  # 80 images, training drops the last partial batch of 32
  assert {"keras_ifd_cached", "decode_only", "ours_first", "ours_steady",
          "ours_steady_over_keras_ifd_cached"} <= set(result)
  assert "seed" not in result and "keras_ifd" not in result  # only the loaders asked for


def test_bench_audit_scores_the_finder_and_the_hashes_on_planted_copies(tmp_path):
  fake_download.write_kaggle_tree(tmp_path, {"train": 5, "test": 2}, quirks=False, seed=2,
                                  leak_per_kind=1)
  from bonefrac import bench_audit
  result = bench_audit.bench_audit(tmp_path)
  assert result["images"] == 2 * 7 + 15 and result["planted_pairs"] == 15
  ours = result["bonefrac"]
  assert ours["recall_per_kind"]["rotate"] == "1/1" and ours["pair_precision"] == 1.0
  # An exact pHash (CleanVision's near-duplicate check) cannot see a rotated copy.
  assert result["phash_cleanvision"]["recall_per_kind"]["rotate"] == "0/1"
  assert result["phash_cleanvision"]["recall_per_kind"]["exact"] == "1/1"


def test_bench_audit_needs_planted_copies(tmp_path):
  from bonefrac import bench_audit
  with pytest.raises(ValueError, match="fake_download --leak"):
    bench_audit.bench_audit(tmp_path)
