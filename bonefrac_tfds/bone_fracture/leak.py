"""Transformed copies of radiographs, planted across splits as the Kaggle sets' duplicates are.

The public bone-fracture sets hold the same radiograph rotated, flipped, cropped, rescaled,
re-toned or re-encoded in train and in validation/test. `plant_leaks` writes such copies of
train images into the other splits of a Kaggle-layout tree and records each planted pair in
`leaks.json`, the ground truth a duplicate finder is measured against.
"""

import io
import json
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np
from PIL import Image, ImageOps

# Each kind is one transformation; "combo" chains several, as repeated augmentation does.
KINDS = ("exact", "rotate", "rotate_expand", "flip_h", "flip_v", "crop", "rescale", "brightness",
         "contrast", "gamma", "noise", "jpeg50", "png", "rgb", "combo")
MANIFEST = "leaks.json"


def transformed_copy(image: Image.Image, kind: str, rng: np.random.Generator) -> bytes:
  """The encoded copy of the grey `image` after the transformation `kind` (see KINDS); "exact"
  and "png" keep the pixels (re-encoded as PNG), "rgb" as a 3-channel JPEG of them.

  Ranges: any rotation angle, cropped or with the canvas expanded (black corners); crops keep
  80-100% of each side; rescaling by 0.5-2x; brightness +-0.15, contrast 0.7-1.3, gamma
  0.6-1.6 (of the 0-1 range); Gaussian noise of 6 grey levels; JPEG at quality 50.
  """
  if kind not in KINDS:
    raise ValueError(f"unknown kind {kind!r}; one of {', '.join(KINDS)}")
  steps = ("rotate", "flip_v", "crop", "rescale", "gamma", "jpeg50") if kind == "combo" else (kind,)
  image, fmt, quality = image.convert("L"), "JPEG", 90
  for step in steps:
    if step in ("rotate", "rotate_expand"):
      image = image.rotate(float(rng.uniform(-180, 180)), resample=Image.BILINEAR,
                           expand=step == "rotate_expand")
    elif step in ("flip_h", "flip_v"):
      image = ImageOps.mirror(image) if step == "flip_h" else ImageOps.flip(image)
    elif step == "crop":
      image = _crop(image, rng)
    elif step == "rescale":
      factor = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
      image = image.resize((max(32, round(image.width * factor)), max(32, round(image.height * factor))),
                           Image.BILINEAR)
    elif step in ("brightness", "contrast", "gamma", "noise"):
      image = Image.fromarray(_retone(np.asarray(image, np.float32) / 255.0, step, rng))
    elif step == "jpeg50":
      quality = 50
    elif step in ("png", "exact"):
      fmt = "PNG"
    elif step == "rgb":
      image = image.convert("RGB")
  buffer = io.BytesIO()
  image.save(buffer, format=fmt, **({"quality": quality} if fmt == "JPEG" else {}))
  return buffer.getvalue()


def _crop(image: Image.Image, rng: np.random.Generator) -> Image.Image:
  width, height = round(image.width * rng.uniform(0.8, 1.0)), round(image.height * rng.uniform(0.8, 1.0))
  left = int(rng.integers(0, image.width - width + 1))
  top = int(rng.integers(0, image.height - height + 1))
  return image.crop((left, top, left + width, top + height))


def _retone(values: np.ndarray, step: str, rng: np.random.Generator) -> np.ndarray:
  if step == "brightness":
    values = values + rng.uniform(-0.15, 0.15)
  elif step == "contrast":
    values = (values - 0.5) * rng.uniform(0.7, 1.3) + 0.5
  elif step == "gamma":
    values = values ** rng.uniform(0.6, 1.6)
  else:  # noise
    values = values + rng.normal(0.0, 6.0 / 255.0, values.shape)
  return np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8)


def plant_leaks(data: Path, per_kind: int, *, seed: int = 0,
                kinds: Sequence[str] = KINDS) -> List[Dict[str, str]]:
  """Writes `per_kind` transformed copies of each kind of randomly chosen train images into the
  validation and test folders of the tree at `data` (same class folder, so the label agrees),
  and the list of planted pairs to `data/leaks.json`: {"source", "copy", "kind"}, paths
  relative to `data`. Returns that list."""
  data = Path(data)
  sources = sorted(p for p in (data / "train").rglob("*.jpg") if p.is_file())
  targets = [t for t in ("val", "test") if (data / t).is_dir()]
  if not sources or not targets:
    raise ValueError(f"{data} needs train/ images and a val/ or test/ folder to plant copies in")
  rng = np.random.default_rng([seed, 7])
  planted = []
  for kind in kinds:
    for i in range(per_kind):
      source = sources[int(rng.integers(len(sources)))]
      copy_bytes = (source.read_bytes() if kind == "exact"  # the same file twice, as downloads have
                    else transformed_copy(Image.open(source), kind, rng))
      extension = "png" if copy_bytes[:4] == b"\x89PNG" else "jpg"
      target = data / targets[int(rng.integers(len(targets)))] / source.parent.name
      target.mkdir(parents=True, exist_ok=True)
      copy = target / f"leak_{kind}_{i}.{extension}"
      copy.write_bytes(copy_bytes)
      planted.append({"source": source.relative_to(data).as_posix(),
                      "copy": copy.relative_to(data).as_posix(), "kind": kind})
  (data / MANIFEST).write_text(json.dumps(planted, indent=1))
  return planted
