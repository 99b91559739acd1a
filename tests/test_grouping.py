"""Duplicate groups in the dataset: the `group` feature, the leak report, kaggle_grouped's re-split."""

import collections
import json

import numpy as np
import pytest
import tensorflow_datasets as tfds

import bonefrac_tfds
from bonefrac_tfds.bone_fracture import build_report, fake_download, grouping, leak
from test_builder_testcase import TINY_SYNTHETIC


def _examples(builder):
  out = {}
  for split in builder.info.splits:
    ds = builder.as_dataset(split=split, decoders={"image": tfds.decode.SkipDecoding()})
    for ex in tfds.as_numpy(ds):
      out[(split, ex["filename"].decode())] = (int(ex["label"]), int(ex["group"]))
  return out


@pytest.fixture(scope="module")
def leaky_builds(tmp_path_factory):
  """A leaky download (one planted copy per kind) built as kaggle and, twice, as kaggle_grouped."""
  root = tmp_path_factory.mktemp("download")
  data = fake_download.write_kaggle_tree(root, {"train": 10, "validation": 3, "test": 3},
                                         quirks=False, seed=4, leak_per_kind=1)
  planted = json.loads((data / leak.MANIFEST).read_text())
  config = tfds.download.DownloadConfig(manual_dir=str(root))
  builds = {}
  for name, folder in (("kaggle", "k"), ("kaggle_grouped", "g1"), ("kaggle_grouped", "g2")):
    data_dir = str(tmp_path_factory.mktemp(folder))
    builder = bonefrac_tfds.BoneFracture(config=name, data_dir=data_dir)
    builder.download_and_prepare(download_config=config)
    builder.root = data_dir  # for bonefrac.train's --data_dir
    builds[folder] = builder
  return planted, builds


def test_planted_copies_share_their_source_group_in_the_kaggle_config(leaky_builds):
  planted, builds = leaky_builds
  examples = _examples(builds["k"])
  folder = {"train": "train", "validation": "val", "test": "test"}
  by_path = {f"{folder[s]}/{n}": g for (s, n), (_, g) in examples.items()}
  single = [p for p in planted if p["kind"] != "combo"]
  assert all(by_path[p["source"]] == by_path[p["copy"]] for p in single)
  sources = {p["source"] for p in planted}
  others = [g for path, g in by_path.items() if path not in sources
            and path not in {p["copy"] for p in planted}]
  assert len(others) == len(set(others))  # distinct radiographs: a group each
  report = build_report.read(builds["k"].data_dir)["duplicates"]
  assert report["groups_spanning_splits"] >= len({p["source"] for p in single})
  leaks = report["later_split_images_with_a_duplicate_in_the_earlier"]
  assert leaks["train-validation"]["images"] + leaks["train-test"]["images"] >= len(single)


def test_kaggle_grouped_keeps_every_image_once_and_no_group_in_two_splits(leaky_builds):
  _, builds = leaky_builds
  kaggle, grouped = _examples(builds["k"]), _examples(builds["g1"])
  # Its filenames keep the download's split: {download split}/{class}/{file}.
  assert sorted(f"{split}/{name}" for split, name in kaggle) == sorted(name for _, name in grouped)
  assert sorted(kaggle.values()) == sorted(grouped.values())  # labels and groups, once each
  splits_of_group = collections.defaultdict(set)
  for (split, _), (_, group) in grouped.items():
    splits_of_group[group].add(split)
  assert all(len(s) == 1 for s in splits_of_group.values())
  summary = build_report.read(builds["g1"].data_dir)["resplit"]
  for split, size in summary["download_split_sizes"].items():
    assert abs(summary["split_sizes"][split] - size) <= 3, summary  # copies move as groups
  assert summary["images_moved"] > 0


def test_kaggle_grouped_is_deterministic(leaky_builds):
  _, builds = leaky_builds
  assert _examples(builds["g1"]) == _examples(builds["g2"])


def test_resplit_balances_labels_and_sizes_and_follows_its_seed():
  rng = np.random.default_rng(0)
  keys = [f"f{i}" for i in range(300)]
  splits = {k: ("train", "validation", "test")[i % 10 // 8 + (i % 10 == 9)] for i, k in enumerate(keys)}
  labels = {k: int(rng.integers(2)) for k in keys}
  ids = {k: i // 3 if i < 60 else i for i, k in enumerate(keys)}  # 20 triplets, singletons
  new, summary = grouping.resplit(splits, labels, ids, seed=1)
  assert set(new) == set(keys)
  for group in set(ids.values()):
    assert len({new[k] for k in keys if ids[k] == group}) == 1
  for split in ("train", "validation", "test"):
    before = [labels[k] for k in keys if splits[k] == split]
    after = [labels[k] for k in keys if new[k] == split]
    assert abs(len(after) - len(before)) <= 3 and abs(sum(after) - sum(before)) <= 3
  assert grouping.resplit(splits, labels, ids, seed=1)[0] == new
  assert grouping.resplit(splits, labels, ids, seed=2)[0] != new


def test_synthetic_images_are_each_their_own_group(tmp_path):
  builder = bonefrac_tfds.BoneFracture(config=TINY_SYNTHETIC, data_dir=str(tmp_path))
  builder.download_and_prepare()
  groups = [g for _, g in _examples(builder).values()]
  assert len(groups) == 10 and len(set(groups)) == 10


def _train(builder, dataset, workdir):
  from bonefrac import train_lib
  return train_lib.train(train_lib.TrainConfig(
      dataset=dataset, data_dir=builder.root, workdir=str(workdir), image_size=32, epochs=1,
      batch_size=8, dense_units=(8,), verbose=0))


def test_a_report_on_leaky_splits_says_so_with_the_clean_figures(leaky_builds, tmp_path, capsys):
  planted, builds = leaky_builds
  report = _train(builds["k"], "bone_fracture/kaggle", tmp_path / "k")
  leak = report["leakage"]
  copies_in_test = sum(p["copy"].startswith("test/") and p["kind"] != "combo" for p in planted)
  assert leak["split"] == "test" and leak["images_with_a_copy_in_train"] >= copies_in_test > 0
  leaked = leak["images_with_a_copy_in_train"]
  assert leak["of"] == report["n"] and leak["clean"]["n"] == report["n"] - leaked
  assert "validation_images_with_a_copy_in_train" in leak
  warning = [line for line in capsys.readouterr().err.splitlines() if "have a copy in train" in line]
  assert len(warning) == 1 and "bone_fracture/kaggle_grouped" in warning[0]
  grouped = _train(builds["g1"], "bone_fracture/kaggle_grouped", tmp_path / "g")
  assert "leakage" not in grouped  # no test image has a copy in train
