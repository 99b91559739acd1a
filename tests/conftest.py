"""Shared pytest settings: quiet TensorFlow, keep tests off any GPU."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import pytest  # noqa: E402

SMALL_SPLITS = (("train", 40), ("validation", 16), ("test", 16))


@pytest.fixture(scope="session")
def small_data_dir(tmp_path_factory):
  """A data dir holding bone_fracture/synthetic_small (40/16/16 generated radiographs)."""
  import bonefrac_tfds
  from bonefrac_tfds.bone_fracture import bone_fracture_dataset_builder as bf
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  config = bf.BoneFractureConfig(name="synthetic_small", synthetic_splits=SMALL_SPLITS)
  bonefrac_tfds.BoneFracture(config=config, data_dir=data_dir).download_and_prepare()
  return data_dir
