"""The build benchmark runs end to end on a tiny tree and reports consistent figures."""

from bonefrac import bench
from bonefrac_tfds.bone_fracture import fake_download


def test_bench_build_reports_the_ratio(tmp_path):
  fake_download.write_kaggle_tree(tmp_path, {"train": 3, "validation": 1}, side=64, quirks=False)
  result = bench.bench_build(tmp_path, repeats=1)
  assert result["files"] == 2 * 3 + 2 * 1
  assert result["decode_pass_s"] > 0 and result["build_s"] > 0
  assert result["build_over_decode"] == result["build_s"] / result["decode_pass_s"]
  assert result["decode_images_per_s"] == 8 / result["decode_pass_s"]
