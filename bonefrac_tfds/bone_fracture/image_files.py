"""Recognising image files by content, checking them and turning them into 8-bit grey.

Shared by the dataset builder and by inference, so that a file is read the same way in both.
"""

import io
from typing import Optional, Tuple

import numpy as np
from PIL import Image

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# A 14x17" detector at 0.1 mm is about 15 megapixels; 60 leaves room and stops decompression
# bombs (a PNG of a few kB can declare gigapixels) before a single row is decoded.
MAX_PIXELS = 60_000_000
MIN_SIDE = 32  # smaller is an icon or a thumbnail, not a radiograph
# Names that are never data, whatever their content (OS and zip leftovers).
JUNK_NAMES = {"thumbs.db", "desktop.ini", "ehthumbs.db"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp",
                  ".dcm"}


class ImageRejected(ValueError):
  """A file that is not a usable radiograph; `reason` is a short stable code for reports."""

  def __init__(self, reason: str, detail: str = ""):
    super().__init__(f"{reason}: {detail}" if detail else reason)
    self.reason = reason
    self.detail = detail


def sniff_format(data: bytes) -> Optional[str]:
  """'jpeg' or 'png' from the first bytes, whatever the file is called; None otherwise."""
  if data.startswith(JPEG_MAGIC):
    return "jpeg"
  if data.startswith(PNG_MAGIC):
    return "png"
  return None


def is_junk_name(name: str) -> bool:
  """Hidden files (.DS_Store, AppleDouble `._x.jpg`) and Windows thumbnail caches."""
  return name.startswith(".") or name.lower() in JUNK_NAMES


def looks_like_image_name(name: str) -> bool:
  dot = name.rfind(".")
  return dot >= 0 and name[dot:].lower() in IMAGE_SUFFIXES


def decode_grey(data: bytes) -> Tuple[np.ndarray, Image.Image]:
  """Decodes JPEG or PNG bytes to uint8 grey [h, w]; also returns the opened PIL image.

  Raises:
    ImageRejected: empty, not JPEG/PNG, undecodable or truncated, or of implausible size.
  """
  if not data:
    raise ImageRejected("empty", "0 bytes")
  fmt = sniff_format(data)
  if fmt is None:
    raise ImageRejected("not_an_image", f"content starts with {data[:8]!r}, not JPEG or PNG")
  try:
    image = Image.open(io.BytesIO(data), formats=(fmt.upper(),))
  except Image.DecompressionBombError as e:
    raise ImageRejected("too_large", str(e)) from None
  except Exception as e:  # PIL raises many types for corrupt headers
    raise ImageRejected("undecodable", f"{type(e).__name__}: {e}") from None
  check_size(*image.size)
  try:
    image.load()  # a truncated file fails here ("image file is truncated")
    # A mode that converts badly must cost one file, never the whole build.
    return _to_grey(image), image
  except Exception as e:
    raise ImageRejected("undecodable", f"{type(e).__name__}: {e}") from None


def prepare_for_storage(data: bytes) -> bytes:
  """Checks one file's bytes and returns what the dataset stores for it.

  Grey and YCbCr JPEGs are stored byte for byte: no generation loss, no encoding time, and
  decoding them with one channel gives the same luminance that PIL's grey conversion gives.
  Everything else (PNG, CMYK JPEG, 16-bit, alpha, palette, DICOM) is stored as a lossless
  8-bit grey PNG.
  """
  from bonefrac_tfds.bone_fracture import dicom  # it imports this module
  if dicom.is_dicom(data):
    return encode_png(dicom.decode_grey(data))
  grey, image = decode_grey(data)
  if image.format == "JPEG" and image.mode in ("L", "RGB"):
    return data
  return encode_png(grey)


def encode_png(grey: np.ndarray) -> bytes:
  """uint8 grey [h, w] as lossless PNG bytes."""
  buffer = io.BytesIO()
  Image.fromarray(grey, mode="L").save(buffer, format="PNG")
  return buffer.getvalue()


def check_size(width: int, height: int) -> None:
  if width * height > MAX_PIXELS:
    raise ImageRejected("too_large", f"{width}x{height} px is over {MAX_PIXELS:,} pixels")
  if min(width, height) < MIN_SIDE:
    raise ImageRejected("too_small", f"{width}x{height} px has a side under {MIN_SIDE} px")


def _to_grey(image: Image.Image) -> np.ndarray:
  """8-bit grey from any mode PIL opens JPEG and PNG in."""
  if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
    return high_depth_to_8bit(np.asarray(image))
  if image.mode == "CMYK":
    image = image.convert("RGB")
  if image.mode != "L":
    image = image.convert("L")  # alpha is dropped: radiographs carry none that matters
  return np.asarray(image, dtype=np.uint8)


def high_depth_to_8bit(values: np.ndarray, bits: Optional[int] = None) -> np.ndarray:
  """Scales 9-16 bit values by their bit depth: `bits` where the file states it (DICOM's Bits
  Stored), else the depth the values use (12-bit data is common in 16-bit PNGs).

  Scaling by the depth rather than by each image's min/max keeps relative exposure between
  images, which a per-image stretch would erase.
  """
  values = np.asarray(values, dtype=np.float64)
  if bits is None:
    top = max(float(values.max(initial=0.0)), 255.0)
    bits = int(np.ceil(np.log2(top + 1.0)))
  scaled = np.clip(values, 0.0, None) * (255.0 / (2.0 ** bits - 1.0))
  return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
