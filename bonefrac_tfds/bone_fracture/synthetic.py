"""Radiograph-like synthetic images of long bones, with or without a fracture.

The image is a projection: grey levels follow the X-ray path length through soft tissue and
through hollow cylinders of cortical bone, so shafts get bright cortical edges over a darker
marrow canal. The fracture is a thin gap across one shaft (sometimes angled, sometimes with the
distal fragment displaced or angulated). Everything global (size, pose, exposure, noise, markers,
a fold line crossing the whole image) is drawn independently of the label, so the class can only
be told from the local break in the cortex.
"""

import dataclasses
import io
from typing import Optional, Tuple

import numpy as np
from PIL import Image

MIN_SIDE, MAX_SIDE = 480, 620  # like the Kaggle images (500-600 px)
JPEG_QUALITY = 90  # the real data is JPEG; storing JPEG also keeps DCT-domain downscaling possible


@dataclasses.dataclass(frozen=True)
class Radiograph:
  """One generated image: `image` uint8 [height, width]; `fracture_box` (ymin, xmin, ymax, xmax)."""

  image: np.ndarray
  fractured: bool
  fracture_box: Optional[Tuple[int, int, int, int]]


def generate_radiograph(seed, fractured: bool) -> Radiograph:
  """Returns the radiograph drawn from `seed` (anything `np.random.default_rng` takes)."""
  rng = np.random.default_rng(seed)
  height, width = (int(v) for v in rng.integers(MIN_SIDE, MAX_SIDE + 1, size=2))
  yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
  pose = _draw_pose(rng, height, width)
  s, d = _axis_coords(xx, yy, pose["centre"], pose["angle"])

  soft = _chord(pose["soft_radius"], d + pose["soft_offset"]) * _taper(s, pose["soft_length"])
  gap = np.zeros_like(s)
  s_b, d_b = s, d
  if fractured:
    s_b, d_b, gap = _fracture(rng, s, d, pose["radius"], pose["length"])
  cortex, marrow = _bone(s_b, d_b, pose["radius"], pose["length"])
  bone = (0.03 * cortex + 0.008 * marrow) * (1.0 - gap * float(rng.uniform(0.75, 1.0)))
  if pose["second_bone"]:  # a parallel, thinner bone (forearm, lower leg), never fractured
    c2, m2 = _bone(s, d - pose["second_offset"], 0.7 * pose["radius"], pose["length"])
    bone += 0.03 * c2 + 0.008 * m2
  image = _expose(rng, 0.004 * soft + bone, xx, yy)
  box = _mask_box((gap > 0.5) & (cortex > 0)) if fractured else None
  return Radiograph(image=image, fractured=fractured, fracture_box=box)


def encode_jpeg(image: np.ndarray) -> bytes:
  """Encodes a uint8 [h, w] grey image as JPEG bytes."""
  buffer = io.BytesIO()
  Image.fromarray(image, mode="L").save(buffer, format="JPEG", quality=JPEG_QUALITY)
  return buffer.getvalue()


def _draw_pose(rng, height, width):
  """Where the limb lies and how big it is; drawn the same way for both classes."""
  short = min(height, width)
  if rng.random() < 0.7:  # most radiographs show the long bone roughly upright
    angle = np.pi / 2 + rng.uniform(-0.5, 0.5)
  else:
    angle = rng.uniform(0, np.pi)
  radius = rng.uniform(0.045, 0.075) * short
  pose = {
      "centre": (width * rng.uniform(0.4, 0.6), height * rng.uniform(0.4, 0.6)),
      "angle": angle,
      "radius": radius,
      "length": rng.uniform(0.3, 0.45) * np.hypot(height, width),
      "soft_radius": radius * rng.uniform(2.4, 3.6),
      "soft_offset": radius * rng.uniform(-0.6, 0.6),
      "soft_length": rng.uniform(0.45, 0.7) * np.hypot(height, width),
      "second_bone": rng.random() < 0.5,
      "second_offset": radius * rng.uniform(2.2, 2.8) * rng.choice([-1.0, 1.0]),
  }
  # Python floats, not NumPy float64 scalars, so that the image arrays stay float32.
  return {k: tuple(map(float, v)) if isinstance(v, tuple) else v if isinstance(v, bool) else float(v)
          for k, v in pose.items()}


def _axis_coords(xx, yy, centre, angle):
  """Position along (s) and across (d) an axis through `centre` at `angle`."""
  cos, sin = float(np.cos(angle)), float(np.sin(angle))  # Python floats keep the arrays float32
  dx, dy = xx - centre[0], yy - centre[1]
  return dx * cos + dy * sin, -dx * sin + dy * cos


def _chord(radius, distance):
  """Path length of a ray at `distance` from the axis through a cylinder of `radius`."""
  return 2.0 * np.sqrt(np.maximum(radius * radius - distance * distance, 0.0))


def _taper(s, half_length):
  """1 along the middle of a limb, falling smoothly to 0 past its ends."""
  return np.clip(1.0 - np.maximum(np.abs(s) - half_length, 0.0) / (0.1 * half_length), 0.0, 1.0)


def _bone(s, d, radius, half_length):
  """Path lengths through the cortex and the marrow of a hollow shaft with widened ends."""
  flare = 1.0 + 0.45 * np.exp(-(((half_length - np.abs(s)) / (0.12 * half_length)) ** 2))
  outer = radius * flare
  inner = outer * 0.62
  beyond = np.maximum(np.abs(s) - half_length, 0.0)  # rounded ends
  r = np.sqrt(d * d + beyond * beyond)
  marrow = _chord(inner, r)
  return _chord(outer, r) - marrow, marrow


def _fracture(rng, s, d, radius, half_length):
  """Bone coordinates moved by a break, and the gap mask (1 inside the fracture line)."""
  s_f = float(rng.uniform(-0.5, 0.5) * half_length)
  tilt = float(np.deg2rad(rng.uniform(-40, 40)))
  across = (s - s_f) * float(np.cos(tilt)) - d * float(np.sin(tilt))  # signed distance to the line
  width = float(rng.uniform(3.0, 7.0))
  gap = np.clip(1.0 - (np.abs(across) - width / 2), 0.0, 1.0)  # antialiased edges
  distal = across > 0
  s_b, d_b = s, d
  if rng.random() < 0.6:  # angulation of the distal fragment about the fracture point
    turn = np.deg2rad(rng.uniform(3, 10) * rng.choice([-1, 1]))
    rs, rd = _rotate(s - s_f, d, turn)
    s_b, d_b = np.where(distal, rs + s_f, s), np.where(distal, rd, d)
  if rng.random() < 0.6:  # lateral displacement
    shift = float(rng.uniform(0.15, 0.5) * radius * rng.choice([-1, 1]))
    d_b = np.where(distal, d_b - shift, d_b)
  return s_b, d_b, gap


def _rotate(s, d, angle):
  cos, sin = float(np.cos(angle)), float(np.sin(angle))
  return s * cos - d * sin, s * sin + d * cos


def _expose(rng, attenuation, xx, yy):
  """Turns attenuation into a noisy 8-bit radiograph with random exposure and extras."""
  height, width = attenuation.shape
  attenuation = np.maximum(attenuation + _fold_line(rng, xx, yy), 0.0)
  signal = 1.0 - np.exp(-attenuation)
  tilt_x, tilt_y = (float(v) for v in rng.uniform(-0.08, 0.08, size=2))
  heel = 1.0 + tilt_x * (xx / width - 0.5) + tilt_y * (yy / height - 0.5)
  offset, gain, gamma, mottle, noise = (
      float(v) for v in rng.uniform([5, 170, 0.75, 2, 2], [45, 240, 1.3, 10, 7]))
  grey = offset + gain * (signal ** gamma) * heel
  grey += _mottle(rng, height, width) * mottle
  grey += rng.standard_normal(size=grey.shape, dtype=np.float32) * noise
  _draw_marker(rng, grey)
  return np.clip(grey, 0, 255).astype(np.uint8)


def _fold_line(rng, xx, yy):
  """A faint straight line over the whole image (skin fold, cast edge) in half of the images."""
  if rng.random() < 0.5:
    return 0.0
  angle, shift, strength = (float(v) for v in rng.uniform([0, -100, -0.15], [np.pi, 100, 0.15]))
  across = (xx - xx.mean()) * np.sin(angle) - (yy - yy.mean()) * np.cos(angle) - shift
  return strength * np.clip(1.0 - np.abs(across) / 2.0, 0.0, 1.0)


def _mottle(rng, height, width):
  """Low-frequency noise: a small random field upsampled with bicubic interpolation."""
  small = Image.fromarray(rng.normal(0.0, 1.0, size=(8, 8)).astype(np.float32), mode="F")
  return np.asarray(small.resize((width, height), Image.BICUBIC))


def _draw_marker(rng, grey):
  """A bright side marker ("L"/"R" lead letter) in a corner, as on most radiographs."""
  if rng.random() < 0.3:
    return
  height, width = grey.shape
  size = int(rng.integers(18, 34))
  y = int(rng.integers(8, 40)) if rng.random() < 0.5 else height - size - int(rng.integers(8, 40))
  x = int(rng.integers(8, 40)) if rng.random() < 0.5 else width - size - int(rng.integers(8, 40))
  grey[y:y + size, x:x + size // 4] = 245  # the stem of an "L"
  grey[y + size - size // 4:y + size, x:x + size * 2 // 3] = 245


def _mask_box(mask):
  ys, xs = np.nonzero(mask)
  if ys.size == 0:
    return None
  return int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1
