"""The build benchmark runs end to end on a tiny tree and reports consistent figures."""

from bonefrac import bench_build
from bonefrac import bench_pipeline
from bonefrac_tfds.bone_fracture import fake_download


def test_bench_build_reports_the_ratio(tmp_path):
  fake_download.write_kaggle_tree(tmp_path, {"train": 3, "validation": 1}, side=64, quirks=False)
  result = bench_build.bench_build(tmp_path, repeats=1)
  assert result["files"] == 2 * 3 + 2 * 1
  assert result["decode_pass_s"] > 0 and result["build_s"] > 0
  assert result["build_over_decode"] == result["build_s"] / result["decode_pass_s"]
  assert result["decode_images_per_s"] == 8 / result["decode_pass_s"]


def test_bench_pipeline_times_every_loader_and_reports_ratios(tmp_path):
  fake_download.write_kaggle_tree(tmp_path / "m", {"train": 40, "validation": 2}, side=240,
                                  quirks=False)
  result = bench_pipeline.bench_pipeline(tmp_path / "m", tmp_path / "d", repeats=1,
                                         steady_epochs=2,
                                         which=("keras_ifd", "decode_only", "ours"))
  assert result["images"] == 64  # 80 images, training drops the last partial batch of 32
  for name in ("keras_ifd", "decode_only", "ours_first", "ours_steady"):
    assert result[name] > 0, name
  assert result["ours_steady_over_keras_ifd"] == result["ours_steady"] / result["keras_ifd"]
  assert "seed" not in result and "ours_steady_over_seed" not in result
