"""Leakage audit: duplicated radiographs across the splits of a download or a built dataset.

`audit(images)` runs the duplicate finder (`bonefrac_tfds.bone_fracture.duplicates`) over every
image and returns what `python -m bonefrac.audit` writes to audit.json: the groups of two or
more copies of one radiograph, with their files, splits and labels, and a summary of how much
each later split leaks from an earlier one.
"""

import dataclasses
import itertools
import os
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw

from bonefrac.errors import UserError
from bonefrac_tfds.bone_fracture import duplicates, grouping, image_files, layout, parallel

SPLITS = grouping.SPLITS
LABELS = ("not_fractured", "fractured")


@dataclasses.dataclass(frozen=True)
class AuditImage:
  """One image to audit: its name (relative to the manual dir, or the `filename` feature), split,
  label, and how to read it as uint8 grey."""

  file: str
  split: str
  label: int
  read: Callable[[], np.ndarray]


def from_manual_dir(manual_dir: str) -> List[AuditImage]:
  """The images of a Kaggle-layout download, as the kaggle config finds them."""
  try:
    found = layout.find_layout(manual_dir)
  except layout.LayoutError as e:
    raise UserError(f"--manual_dir={manual_dir}: {str(e).splitlines()[0]}") from None
  return [AuditImage(entry.key, split, entry.label, _grey_reader(entry.path.read_bytes))
          for split in SPLITS for entry in found.splits.get(split, [])]


def _grey_reader(read_bytes: Callable[[], bytes]) -> Callable[[], np.ndarray]:
  """Reads and decodes on demand, with the dataset builder's own reader."""
  return lambda: image_files.decode_grey(read_bytes())[0]


def from_dataset(name: str, data_dir: Optional[str]) -> List[AuditImage]:
  """The images of a built TFDS dataset (its stored bytes, decoded on demand)."""
  import tensorflow_datasets as tfds
  from bonefrac import input_pipeline  # registers bone_fracture; imports TensorFlow
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except Exception as e:
    raise UserError(f"unknown --dataset={name}: {str(e).splitlines()[0]}") from None
  if not builder.is_prepared():
    raise UserError(_not_built(name, builder.data_dir, str(builder.version)))
  images = []
  for split in (s for s in SPLITS if s in builder.info.splits):
    ds = builder.as_dataset(split=split, decoders={"image": tfds.decode.SkipDecoding()},
                            read_config=input_pipeline.READ_CONFIG)
    for example in tfds.as_numpy(ds):
      images.append(AuditImage(example["filename"].decode(), split, int(example["label"]),
                               _grey_reader(lambda data=bytes(example["image"]): data)))
  return images


def _not_built(name: str, version_dir: str, version: str) -> str:
  """Why `name` cannot be read, naming an older build (without the `group` feature) if any."""
  folder = os.path.dirname(version_dir)
  older = sorted(v for v in (os.listdir(folder) if os.path.isdir(folder) else []) if v != version)
  if older:
    return (f"{name} is built in {folder} only as version {', '.join(older)}, before the `group` "
            f"feature; rebuild it as {version} with `tfds build`, or audit the download with "
            "--manual_dir")
  return (f"{name} is not built in {version_dir}; build it with `tfds build` or pass "
          "--data_dir, or audit the download with --manual_dir")


def audit(images: Sequence[AuditImage], progress: Callable[[Iterator], Iterator] = iter) -> Dict:
  """{"groups": [{"files", "splits", "labels"}, ...], "summary": {...}, "unreadable": [...]}.

  `progress` wraps the per-image loop (a progress bar)."""
  signatures, kept, unreadable = [], [], []
  for image, signature in progress(zip(images, parallel.ordered_map(_signature, images))):
    if isinstance(signature, str):
      unreadable.append({"file": image.file, "split": image.split, "reason": signature})
    else:
      signatures.append(signature)
      kept.append(image)
  groups = [[kept[i] for i in group] for group in duplicates.find_groups(signatures)]
  return {"groups": [{"files": [m.file for m in g], "splits": [m.split for m in g],
                      "labels": [LABELS[m.label] for m in g]} for g in groups],
          "summary": summarise(kept, groups), "unreadable": unreadable}


def _signature(image: AuditImage):
  try:
    return duplicates.signature(image.read())
  except (OSError, image_files.ImageRejected) as e:
    return getattr(e, "reason", None) or type(e).__name__


def summarise(images: Sequence[AuditImage], groups: Sequence[Sequence[AuditImage]]) -> Dict:
  """The audit's summary (`grouping.leakage`): counts, and per split pair the images of the
  later split that have a duplicate in the earlier one."""
  position = {id(image): i for i, image in enumerate(images)}
  ids = {str(i): i for i in range(len(images))}
  for group in groups:
    first = min(position[id(m)] for m in group)
    ids.update({str(position[id(m)]): first for m in group})
  return grouping.leakage({str(i): m.split for i, m in enumerate(images)},
                          {str(i): m.label for i, m in enumerate(images)}, ids)


def summary_rows(summary: Dict) -> List[Dict]:
  """The summary as table rows (what the CLI prints)."""
  rows = [{"what": key.replace("_", " "), "value": summary[key]}
          for key in ("images", "groups", "images_in_groups", "groups_spanning_splits",
                      "groups_with_disagreeing_labels")]
  for pair, leak in summary["later_split_images_with_a_duplicate_in_the_earlier"].items():
    later, earlier = pair.split("-")[1], pair.split("-")[0]
    share = "" if leak["share"] is None else f" ({100 * leak['share']:.1f}%)"
    rows.append({"what": f"{later} images with a duplicate in {earlier}",
                 "value": f"{leak['images']} of {leak['of']}{share}"})
  return rows


def write_sheets(images: Sequence[AuditImage], result: Dict, folder: str, side: int = 192) -> int:
  """One PNG per group that spans splits: its images side by side, each under its split and
  file name, for a person to check. Returns how many sheets were written."""
  by_file = {(i.file, i.split): i for i in images}
  os.makedirs(folder, exist_ok=True)
  written = 0
  for number, group in enumerate(result["groups"]):
    if len(set(group["splits"])) < 2:
      continue
    members = [by_file[(f, s)] for f, s in zip(group["files"], group["splits"])]
    tiles = [_tile(m, side) for m in members]
    sheet = Image.new("L", (sum(t.width for t in tiles), max(t.height for t in tiles)), 255)
    for x, tile in zip(itertools.accumulate([0] + [t.width for t in tiles]), tiles):
      sheet.paste(tile, (x, 0))
    sheet.save(os.path.join(folder, f"group_{number:04d}.png"))
    written += 1
  return written


def _tile(image: AuditImage, side: int) -> Image.Image:
  picture = Image.fromarray(image.read())
  picture.thumbnail((side, side))
  tile = Image.new("L", (side + 8, side + 36), 255)
  tile.paste(picture, (4, 32))
  draw = ImageDraw.Draw(tile)
  draw.text((4, 2), f"{image.split} / {LABELS[image.label]}", fill=0)
  draw.text((4, 16), os.path.basename(image.file)[:32], fill=0)
  return tile
