"""TFDS's own builder test case, for both configs (the synthetic one at a tiny size)."""

import tensorflow_datasets as tfds

import bonefrac_tfds
from bonefrac_tfds.bone_fracture import bone_fracture_dataset_builder as bf

TINY_SYNTHETIC = bf.BoneFractureConfig(
    name="synthetic_tiny", synthetic_splits=(("train", 6), ("validation", 2), ("test", 2)))


class KaggleConfigTest(tfds.testing.DatasetBuilderTestCase):
  """dummy_data/ is a quirky download: per split 8 odd-but-valid images, 6 bad files, junk."""

  DATASET_CLASS = bonefrac_tfds.BoneFracture
  BUILDER_CONFIG_NAMES_TO_TEST = ["kaggle"]
  SPLITS = {"train": 2 * 2 + 8, "validation": 1 * 2 + 8, "test": 1 * 2 + 8}
  SKIP_CHECKSUMS = True


class SyntheticConfigTest(tfds.testing.DatasetBuilderTestCase):
  DATASET_CLASS = bonefrac_tfds.BoneFracture
  BUILDER_CONFIG_NAMES_TO_TEST = [TINY_SYNTHETIC]
  SPLITS = {"train": 6, "validation": 2, "test": 2}
  SKIP_CHECKSUMS = True
