"""Writes a Kaggle-like download tree of synthetic radiographs, with the quirks real ones have.

For tests, the builder's `dummy_data/` and benchmarks: no download needed.

  python -m bonefrac_tfds.bone_fracture.fake_download DIR --per_class 1000 [--side 96] [--rgb] [--no_quirks]
      [--leak N] [--seed S]
"""

import argparse
import io
import struct
import zlib
from pathlib import Path
from typing import Dict, Optional

import numpy as np
from PIL import Image

from bonefrac_tfds.bone_fracture import leak, parallel
from bonefrac_tfds.bone_fracture import synthetic

WRAPPER = "Bone_Fracture_Binary_Classification"  # zips nest the data twice under this name
SPLIT_FOLDERS = {"train": "train", "validation": "val", "test": "test"}
CLASS_FOLDERS = {1: "fractured", 0: "not fractured"}
# Odd but valid images, kept by the builder: {file name: writer}. One set per split, fractured.
ODD_GOOD = ("UPPER CASE.JPG", "dct.jpeg", "png named.jpg", "sixteen bit.png", "rgb.png",
            "rgba.PNG", "cmyk.jpg", "14-rotated1-rotated2 (1).jpg")
# Files the builder must skip, with the reason it must give. One set per split, not fractured.
BAD = {"empty.jpg": "empty", "truncated.jpg": "undecodable", "page.jpg": "not_an_image",
       "random.jpg": "not_an_image", "bomb.png": "too_large", "icon.png": "too_small"}
JUNK = (".DS_Store", "Thumbs.db", "desktop.ini")


def write_kaggle_tree(root, per_class: Dict[str, int], *, side: Optional[int] = None,
                      rgb: bool = False, quirks: bool = True, seed: int = 0,
                      leak_per_kind: int = 0) -> Path:
  """Writes `root/WRAPPER/WRAPPER/{train,val,test}/{fractured,not fractured}/*.jpg`.

  Args:
    root: the folder to write into (the future --manual_dir).
    per_class: {split: plain JPEG images per class}; a split that is missing is not written.
    side: downscale images so that their longer side is `side` px (small trees for tests).
    rgb: save the plain images as 3-channel (YCbCr) JPEGs of the grey picture, as many
      downloaded radiographs are; otherwise as 1-channel grey JPEGs.
    quirks: add the odd-but-valid images, the bad files and the junk of real downloads.
    seed: which synthetic images to draw.
    leak_per_kind: plant this many transformed copies of train images per kind of
      transformation in the other splits (`leak.plant_leaks`; ground truth in leaks.json).
  Returns:
    The folder that holds the split folders.
  """
  data = Path(root) / WRAPPER / WRAPPER
  jobs = []
  for s_index, (split, n) in enumerate(sorted(per_class.items())):
    for label, folder in CLASS_FOLDERS.items():
      (data / SPLIT_FOLDERS[split] / folder).mkdir(parents=True, exist_ok=True)
      jobs += [(data / SPLIT_FOLDERS[split] / folder / f"{i}.jpg", [seed, s_index, label, i], label)
               for i in range(n)]
  for _ in parallel.ordered_map(lambda job: _write_plain(*job, side=side, rgb=rgb), jobs):
    pass
  if leak_per_kind:
    leak.plant_leaks(data, leak_per_kind, seed=seed)
  if quirks:
    for s_index, split in enumerate(sorted(per_class)):
      _write_quirks(data / SPLIT_FOLDERS[split], [seed, s_index, 99], side)
    (Path(root) / "__MACOSX" / WRAPPER).mkdir(parents=True, exist_ok=True)
    (Path(root) / "__MACOSX" / WRAPPER / "._train").write_bytes(b"\x00\x05\x16\x07AppleDouble")
  return data


def _write_plain(path: Path, seed, label: int, *, side: Optional[int], rgb: bool) -> None:
  image = _radiograph(seed, label, side)
  if rgb:
    image.convert("RGB").save(path, format="JPEG", quality=synthetic.JPEG_QUALITY)
  else:
    path.write_bytes(synthetic.encode_jpeg(np.asarray(image)))


def _radiograph(seed, label: int, side: Optional[int]) -> Image.Image:
  image = Image.fromarray(synthetic.generate_radiograph(seed, bool(label)).image)
  if side:
    image.thumbnail((side, side), Image.BILINEAR)
  return image


def _write_quirks(split_dir: Path, seed, side: Optional[int]) -> None:
  grey = _radiograph(seed, 1, side)
  good = split_dir / CLASS_FOLDERS[1]
  _save(grey, good / "UPPER CASE.JPG", "JPEG")
  _save(grey, good / "dct.jpeg", "JPEG")
  _save(grey, good / "png named.jpg", "PNG")
  sixteen = (np.asarray(grey, dtype=np.uint16) * 16).astype(np.uint16)  # 12-bit data, 16-bit file
  _save(Image.fromarray(sixteen), good / "sixteen bit.png", "PNG")
  _save(grey.convert("RGB"), good / "rgb.png", "PNG")
  _save(grey.convert("RGBA"), good / "rgba.PNG", "PNG")
  _save(grey.convert("CMYK"), good / "cmyk.jpg", "JPEG")
  _save(grey.convert("RGB"), good / "14-rotated1-rotated2 (1).jpg", "JPEG")

  bad = split_dir / CLASS_FOLDERS[0]
  jpeg = _encoded(grey, "JPEG")
  (bad / "empty.jpg").write_bytes(b"")
  (bad / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
  (bad / "page.jpg").write_bytes(b"<!DOCTYPE html><html><body>Access denied</body></html>\n")
  (bad / "random.jpg").write_bytes(np.random.default_rng(seed).bytes(4096))
  (bad / "bomb.png").write_bytes(bomb_png(20_000))
  _save(grey.resize((8, 8)), bad / "icon.png", "PNG")

  for name in JUNK:
    (bad / name).write_bytes(b"\x00junk\x00")
  (split_dir / "labels.csv").write_text("file,label\n0.jpg,fractured\n")
  (bad / "._0.jpg").write_bytes(b"\x00\x05\x16\x07AppleDouble")


def bomb_png(side: int) -> bytes:
  """A valid 1-bit PNG of side x side pixels that compresses to a few kB: a decompression bomb."""
  def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

  row = b"\x00" + b"\x00" * ((side + 7) // 8)  # filter byte + packed bits
  compressor = zlib.compressobj(9)
  body = b"".join(compressor.compress(row * 500) for _ in range(side // 500))
  body += compressor.compress(row * (side % 500)) + compressor.flush()
  header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
  return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def _encoded(image: Image.Image, fmt: str) -> bytes:
  buffer = io.BytesIO()
  image.save(buffer, format=fmt)
  return buffer.getvalue()


def _save(image: Image.Image, path: Path, fmt: str) -> None:
  path.write_bytes(_encoded(image, fmt))


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("root", help="folder to write the tree into (the future --manual_dir)")
  parser.add_argument("--per_class", type=int, default=1000, help="train images per class")
  parser.add_argument("--side", type=int, default=None, help="downscale to this longer side")
  parser.add_argument("--rgb", action="store_true", help="3-channel JPEGs of the grey pictures")
  parser.add_argument("--no_quirks", action="store_true", help="only plain JPEGs")
  parser.add_argument("--leak", type=int, default=0, help="transformed copies of train images "
                      "per kind of transformation, planted in val/test (ground truth: leaks.json)")
  parser.add_argument("--seed", type=int, default=0, help="which synthetic images to draw")
  args = parser.parse_args(argv)
  small = max(1, args.per_class // 8)
  data = write_kaggle_tree(args.root, {"train": args.per_class, "validation": small, "test": small},
                           side=args.side, rgb=args.rgb, quirks=not args.no_quirks,
                           seed=args.seed, leak_per_kind=args.leak)
  print(f"wrote {data}")


if __name__ == "__main__":
  main()
