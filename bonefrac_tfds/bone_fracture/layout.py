"""Finding the split and class folders of an unzipped Kaggle download, as users really have it."""

import dataclasses
import re
from typing import Dict, List, Tuple

from etils import epath

from bonefrac_tfds.bone_fracture import image_files

SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "val": "validation", "valid": "validation", "validation": "validation",
    "test": "test", "testing": "test",
}
# Folder names, lower-cased with runs of spaces, '_' and '-' folded to one space.
CLASS_ALIASES = {
    "fractured": 1, "fracture": 1, "fractures": 1,
    "not fractured": 0, "non fractured": 0, "nonfractured": 0, "notfractured": 0,
    "unfractured": 0, "not fracture": 0, "no fracture": 0, "normal": 0,
}
MAX_DEPTH = 4  # zips nest the splits under one or two wrapper folders (`X/X/train`)
# Folders that zip tools and operating systems add; never data.
SKIPPED_DIRS = {"__macosx", "$recycle.bin", "system volume information"}

EXPECTED_TREE = """\
Download "Bone Fracture Multi-Region X-ray Data" (or a binary dataset with the same layout) from
Kaggle, unzip it, and pass the folder to `--manual_dir`. The split folders may sit a few levels
down (`X/X/train` is fine):

  <manual_dir>/.../
    train/        fractured/*.jpg   not fractured/*.jpg
    val/          fractured/*.jpg   not fractured/*.jpg   (or `valid`, `validation`)
    test/         fractured/*.jpg   not fractured/*.jpg   (optional)

Class folder names are matched case-insensitively (`Fractured`, `not_fractured`, `non-fractured`,
`normal`, ...). Images are recognised by content (JPEG or PNG, whatever their extension).
"""


class LayoutError(ValueError):
  """The manual directory does not hold a recognisable download."""


@dataclasses.dataclass(frozen=True)
class Entry:
  """One candidate image: `key` relative to the manual dir, `filename` relative to its split."""

  path: epath.Path
  key: str
  filename: str
  label: int


@dataclasses.dataclass
class Layout:
  """The download: split folders, candidate images per split, files passed over (path, why)."""

  root: epath.Path
  split_dirs: Dict[str, epath.Path]
  splits: Dict[str, List[Entry]]
  ignored: List[Tuple[str, str]]


def normalise(name: str) -> str:
  return re.sub(r"[\s_\-]+", " ", name.strip().lower())


def find_layout(manual_dir: epath.PathLike) -> Layout:
  """Finds the split folders under `manual_dir` and lists the candidate images in each.

  Raises:
    LayoutError: missing or empty directory, no split folder with class folders found, or
      several equally shallow candidates; the message names the directory and what was found.
  """
  manual_dir = epath.Path(manual_dir)
  if not manual_dir.is_dir():
    raise LayoutError(f"--manual_dir {manual_dir} does not exist or is not a directory.\n"
                      f"Expected:\n{EXPECTED_TREE}")
  split_dirs = _find_split_dirs(manual_dir)
  layout = Layout(root=manual_dir, split_dirs=split_dirs, splits={}, ignored=[])
  for split, split_dir in sorted(split_dirs.items()):
    layout.splits[split] = _list_split(manual_dir, split_dir, layout.ignored)
  return layout


def _find_split_dirs(manual_dir: epath.Path) -> Dict[str, epath.Path]:
  """{split: folder} of the shallowest folder whose children are split folders with classes."""
  level = [manual_dir]
  for _ in range(MAX_DEPTH + 1):
    found = [(parent, _split_children(parent)) for parent in level]
    found = [(parent, splits) for parent, splits in found if splits]
    if len(found) == 1:
      return found[0][1]
    if len(found) > 1:
      where = ", ".join(str(parent) for parent, _ in found)
      raise LayoutError(f"--manual_dir {manual_dir} holds several datasets at the same depth "
                        f"({where}); point --manual_dir at one of them.")
    level = [child for parent in level for child in _subdirs(parent)]
  raise LayoutError(f"--manual_dir {manual_dir} has no recognisable layout: found "
                    f"{_describe(manual_dir)}.\nExpected:\n{EXPECTED_TREE}")


def _split_children(parent: epath.Path) -> Dict[str, epath.Path]:
  splits = {}
  for child in _subdirs(parent):
    split = SPLIT_ALIASES.get(normalise(child.name))
    if split is None or not any(normalise(c.name) in CLASS_ALIASES for c in _subdirs(child)):
      continue
    if split in splits:
      raise LayoutError(f"both {splits[split]} and {child} look like the {split} split; "
                        "remove or rename one of them.")
    splits[split] = child
  return splits


def _list_split(manual_dir, split_dir, ignored) -> List[Entry]:
  entries = []
  for child in _sorted(split_dir.iterdir()):
    label = CLASS_ALIASES.get(normalise(child.name)) if child.is_dir() else None
    if label is None:
      if not image_files.is_junk_name(child.name):
        ignored.append((_relative(child, manual_dir), "not a class folder"))
      continue
    for path in _walk_files(child):
      if image_files.is_junk_name(path.name):
        continue  # .DS_Store, Thumbs.db, AppleDouble: not worth a line in the report
      if not (image_files.looks_like_image_name(path.name) or _has_image_magic(path)):
        ignored.append((_relative(path, manual_dir), "not an image file"))
        continue
      entries.append(Entry(path=path, key=_relative(path, manual_dir),
                           filename=_relative(path, split_dir), label=label))
  return entries


def _walk_files(folder: epath.Path):
  for child in _sorted(folder.iterdir()):
    if child.is_dir():
      if not _skipped_dir(child):
        yield from _walk_files(child)
    else:
      yield child


def _has_image_magic(path: epath.Path) -> bool:
  """Whether a file with a non-image name is still a JPEG or PNG (content decides, not names)."""
  with path.open("rb") as f:
    return image_files.sniff_format(f.read(8)) is not None


def _subdirs(folder: epath.Path) -> List[epath.Path]:
  return [c for c in _sorted(folder.iterdir()) if c.is_dir() and not _skipped_dir(c)]


def _skipped_dir(folder: epath.Path) -> bool:
  return folder.name.startswith(".") or folder.name.lower() in SKIPPED_DIRS


def _sorted(paths) -> List[epath.Path]:
  return sorted(paths, key=lambda p: p.name)


def _relative(path: epath.Path, base: epath.Path) -> str:
  return path.relative_to(base).as_posix()


def _describe(manual_dir: epath.Path, limit: int = 12) -> str:
  """A short listing of what is there, to put in an error message."""
  names = []
  for child in _sorted(manual_dir.iterdir()):
    names.append(child.name + ("/" if child.is_dir() else ""))
    if child.is_dir() and not _skipped_dir(child):
      names.extend(f"{child.name}/{c.name}" for c in _subdirs(child)[:3])
  if not names:
    return "an empty directory"
  more = f" and {len(names) - limit} more" if len(names) > limit else ""
  return ", ".join(names[:limit]) + more
