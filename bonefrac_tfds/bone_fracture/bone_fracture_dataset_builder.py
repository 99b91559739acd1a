"""bone_fracture: fractured / not fractured bone radiographs (synthetic, or a Kaggle download)."""

import dataclasses
from typing import Dict, Optional, Tuple

import numpy as np
import tensorflow_datasets as tfds

from bonefrac_tfds.bone_fracture import build_report
from bonefrac_tfds.bone_fracture import grouping
from bonefrac_tfds.bone_fracture import image_files
from bonefrac_tfds.bone_fracture import layout
from bonefrac_tfds.bone_fracture import parallel
from bonefrac_tfds.bone_fracture import synthetic

LABEL_NAMES = ["not_fractured", "fractured"]  # 1 = fractured, the positive finding
SYNTHETIC_SEED = 1_2026_1126  # part of the versions: changing it changes the data
SYNTHETIC_SPLITS = (("train", 1600), ("validation", 200), ("test", 200))
SPLIT_INDEX = {"train": 0, "validation": 1, "test": 2}  # seeds the synthetic splits apart
SYNTHETIC_GROUPS_PER_SPLIT = 1_000_000  # synthetic group ids: split index * this + example
RESPLIT_SEED = 0  # kaggle_grouped's re-split


@dataclasses.dataclass(eq=False)
class BoneFractureConfig(tfds.core.BuilderConfig):
  """`synthetic_splits`: (split, number of examples) pairs, for the synthetic source only;
  `resplit`: re-split the download so that no duplicate group spans two splits."""

  synthetic_splits: Optional[Tuple[Tuple[str, int], ...]] = None
  resplit: bool = False


class Builder(tfds.core.GeneratorBasedBuilder):
  """DatasetBuilder for bone_fracture."""

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {
      "1.0.0": "Initial release: synthetic and kaggle configs.",
      "1.1.0": "`group` feature: the duplicate group of each image (kaggle: found by the "
               "duplicate finder; synthetic: one per image); the kaggle_grouped config; the "
               "kaggle build report states the leakage between the download's splits.",
  }
  MANUAL_DOWNLOAD_INSTRUCTIONS = layout.EXPECTED_TREE
  BUILDER_CONFIGS = [
      BoneFractureConfig(
          name="synthetic", synthetic_splits=SYNTHETIC_SPLITS,
          description="Generated radiograph-like images, balanced, 480-620 px; no download."),
      BoneFractureConfig(
          name="kaggle",
          description="A Kaggle download (split/class/*.jpg) read from --manual_dir, checked "
                      "file by file; undecodable files are skipped and listed. The download's "
                      "own splits, which leak: build_report.json says how much."),
      BoneFractureConfig(
          name="kaggle_grouped", resplit=True,
          description="The same download, pooled and re-split so that no duplicate group spans "
                      "two splits, stratified by label, close to the download's split sizes."),
  ]
  DEFAULT_BUILDER_CONFIG_NAME = "synthetic"

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(None, None, 1)),
            "label": tfds.features.ClassLabel(names=LABEL_NAMES),
            "filename": tfds.features.Text(),
            "group": tfds.features.Scalar(dtype=np.int64),
        }),
        supervised_keys=("image", "label"),
        homepage="https://www.kaggle.com/datasets/bmadushanirodrigo/fracture-multi-region-x-ray-data",
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    if self.builder_config.synthetic_splits:
      self._report = build_report.BuildReport(self.builder_config.name)
      return {split: self._generate_examples(split, n=n)
              for split, n in self.builder_config.synthetic_splits}
    found = layout.find_layout(self._manual_dir(dl_manager))
    self._report = build_report.BuildReport(self.builder_config.name, found.ignored)
    self._groups, skipped = self._find_groups(found.splits)
    download_split = {e.key: split for split, entries in found.splits.items() for e in entries}
    labels = {e.key: e.label for entries in found.splits.values() for e in entries}
    self._report.add("duplicates", grouping.leakage(
        {k: download_split[k] for k in self._groups}, labels, self._groups))
    if not self.builder_config.resplit:
      return {split: self._generate_examples(split, entries=entries, skipped=skipped[split])
              for split, entries in found.splits.items()}
    new_split, summary = grouping.resplit(
        {k: download_split[k] for k in self._groups}, labels, self._groups, seed=RESPLIT_SEED)
    self._report.add("resplit", summary)
    self._report.add("skipped_before_resplit", [s for split in found.splits for s in skipped[split]])
    # A moved image's filename keeps the split it came from: names repeat across splits.
    pooled = [dataclasses.replace(e, filename=f"{download_split[e.key]}/{e.filename}")
              for entries in found.splits.values() for e in entries if e.key in new_split]
    return {split: self._generate_examples(split, entries=[e for e in pooled
                                                           if new_split[e.key] == split])
            for split in grouping.SPLITS if split in summary["split_sizes"]}

  def _find_groups(self, splits):
    """({key: duplicate group id} of every usable image, {split: skipped files})."""
    entries = [e for split_entries in splits.values() for e in split_entries]
    keys, signatures = [], []
    rejected = {}
    for entry, (signature, rejection) in zip(entries, parallel.ordered_map(_signature, entries)):
      if rejection is None:
        keys.append(entry.key)
        signatures.append(signature)
      else:
        rejected[entry.key] = {"file": entry.key, "reason": rejection.reason,
                               "detail": rejection.detail}
    skipped = {split: [rejected[e.key] for e in split_entries if e.key in rejected]
               for split, split_entries in splits.items()}
    return grouping.group_ids(keys, signatures), skipped

  def _manual_dir(self, dl_manager):
    # TFDS's own check says "does not exist or is empty" without telling which, nor what it
    # found; `layout.find_layout` says both, so it gets the directory even when TFDS objects.
    try:
      return dl_manager.manual_dir
    except AssertionError:
      return dl_manager._manual_dir  # pylint: disable=protected-access

  def _generate_examples(self, split: str, *, n: int = 0, entries=None, skipped=()):
    """Yields `n` synthetic examples, or the usable images among the Kaggle `entries`."""
    if entries is None:
      yield from self._generate_synthetic(split, n)
    else:
      yield from self._generate_kaggle(split, [e for e in entries if e.key in self._groups],
                                       list(skipped))

  def _generate_synthetic(self, split: str, n: int):
    """Yields `n` generated examples: half fractured, in a seeded random order."""
    split_index = SPLIT_INDEX[split]
    labels = np.random.default_rng([SYNTHETIC_SEED, split_index]).permutation(np.arange(n) % 2)

    def make(i):
      seed = [SYNTHETIC_SEED, split_index, i]
      return synthetic.encode_jpeg(synthetic.generate_radiograph(seed, bool(labels[i])).image)

    kept = {0: 0, 1: 0}
    for i, jpeg in enumerate(parallel.ordered_map(make, range(n))):
      label = int(labels[i])
      filename = f"{LABEL_NAMES[label]}/{i:05d}.jpg"
      kept[label] += 1
      group = SPLIT_INDEX[split] * SYNTHETIC_GROUPS_PER_SPLIT + i  # every image its own
      yield f"{split}/{filename}", {"image": jpeg, "label": label, "filename": filename,
                                    "group": group}
    self._finish_split(split, kept, skipped=[])

  def _generate_kaggle(self, split: str, entries, skipped: list):
    """Yields the usable images of one split with their group; skipped files go to the build
    report (those the grouping pass rejected come in `skipped`)."""
    kept = {0: 0, 1: 0}
    for entry, (stored, rejected) in zip(entries, parallel.ordered_map(_check, entries)):
      if rejected is not None:  # it changed since the grouping pass read it
        skipped.append({"file": entry.key, "reason": rejected.reason, "detail": rejected.detail})
        continue
      kept[entry.label] += 1
      yield entry.key, {"image": stored, "label": entry.label, "filename": entry.filename,
                        "group": self._groups[entry.key]}
    self._finish_split(split, kept, skipped)

  def _finish_split(self, split: str, kept: Dict[int, int], skipped) -> None:
    # Rewritten after every split, so the report is complete once the last split is done;
    # `data_dir` is TFDS's temporary folder here, renamed into place when the build succeeds.
    self._report.add_split(split, kept, skipped)
    self._report.write(self.data_dir)


def _signature(entry: layout.Entry):
  """(its duplicate signature, None) for a usable image, (None, ImageRejected) otherwise."""
  stored, rejected = _check(entry)
  return (None, rejected) if rejected is not None else (grouping.signature_of_stored(stored), None)


def _check(entry: layout.Entry):
  """(bytes to store, None) for a usable image, (None, ImageRejected) otherwise."""
  try:
    return image_files.prepare_for_storage(entry.path.read_bytes()), None
  except image_files.ImageRejected as e:
    return None, e
  except OSError as e:  # unreadable: permissions, a broken link, a vanished file
    return None, image_files.ImageRejected("unreadable", f"{type(e).__name__}: {e}")
