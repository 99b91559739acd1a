"""Recognising and converting image files: every variant the kaggle config must keep or skip."""

import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageFile

from bonefrac_tfds.bone_fracture import fake_download
from bonefrac_tfds.bone_fracture import image_files


def _grey(seed=0, shape=(64, 80)):
  y, x = np.mgrid[0:shape[0], 0:shape[1]]
  return ((x * 3 + y * 2 + seed) % 256).astype(np.uint8)


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
  buffer = io.BytesIO()
  image.save(buffer, format=fmt, **kwargs)
  return buffer.getvalue()


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "LA", "P"])
def test_png_modes_become_the_same_grey(mode):
  grey = _grey()
  data = _encode(Image.fromarray(grey).convert(mode), "PNG")
  decoded, _ = image_files.decode_grey(data)
  assert decoded.dtype == np.uint8 and decoded.shape == grey.shape
  assert np.abs(decoded.astype(int) - grey).max() <= 1


def test_cmyk_jpeg_becomes_grey():
  grey = _grey()
  data = _encode(Image.fromarray(grey).convert("CMYK"), "JPEG", quality=95)
  decoded, _ = image_files.decode_grey(data)
  assert decoded.shape == grey.shape
  assert np.abs(decoded.astype(int) - grey).mean() < 4


@pytest.mark.parametrize("bits", [12, 16])
def test_sixteen_bit_png_scales_by_the_bit_depth_used(bits):
  values = np.linspace(0, 2 ** bits - 1, 64 * 80).reshape(64, 80).astype(np.uint16)
  decoded, _ = image_files.decode_grey(_encode(Image.fromarray(values), "PNG"))
  assert decoded.min() == 0 and decoded.max() == 255
  expected = np.rint(values / (2 ** bits - 1) * 255)
  assert np.abs(decoded - expected).max() <= 1


def test_png_with_a_jpg_name_is_recognised_by_content():
  data = _encode(Image.fromarray(_grey()), "PNG")
  assert image_files.sniff_format(data) == "png"
  assert image_files.prepare_for_storage(data).startswith(image_files.PNG_MAGIC)


def test_grey_and_ycbcr_jpegs_are_stored_byte_for_byte():
  for mode in ("L", "RGB"):
    data = _encode(Image.fromarray(_grey()).convert(mode), "JPEG")
    assert image_files.prepare_for_storage(data) is data


def test_stored_png_decodes_to_the_converted_grey():
  rgba = Image.fromarray(_grey()).convert("RGBA")
  stored = image_files.prepare_for_storage(_encode(rgba, "PNG"))
  assert np.array_equal(np.asarray(Image.open(io.BytesIO(stored))), _grey())


@pytest.mark.parametrize("data, reason", [
    (b"", "empty"),
    (b"<!DOCTYPE html><html>Access denied</html>", "not_an_image"),
    (np.random.default_rng(0).bytes(2048), "not_an_image"),
    (b"\xff\xd8\xff\xe0" + b"\x00" * 64, "undecodable"),
])
def test_bad_bytes_are_rejected_with_a_reason(data, reason):
  with pytest.raises(image_files.ImageRejected) as e:
    image_files.decode_grey(data)
  assert e.value.reason == reason


def test_truncated_jpeg_is_rejected():
  data = _encode(Image.fromarray(_grey(shape=(200, 200))), "JPEG")
  with pytest.raises(image_files.ImageRejected) as e:
    image_files.decode_grey(data[: len(data) // 2])
  assert e.value.reason == "undecodable"


def test_tiny_image_is_rejected():
  with pytest.raises(image_files.ImageRejected) as e:
    image_files.decode_grey(_encode(Image.fromarray(_grey(shape=(8, 8))), "PNG"))
  assert e.value.reason == "too_small"


PEAK_GROWTH = """
import resource, sys
from bonefrac_tfds.bone_fracture import fake_download, image_files
data = fake_download.bomb_png(int(sys.argv[1]))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
  image_files.decode_grey(data)
  outcome = "decoded"
except image_files.ImageRejected as e:
  outcome = e.reason
print(outcome, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
"""


def _decode_in_a_fresh_process(side):
  """(outcome, growth of the peak memory in MB) of decoding a side x side 1-bit PNG, measured
  in a process of its own: the peak (ru_maxrss) of this one was raised by earlier tests."""
  out = subprocess.run([sys.executable, "-c", PEAK_GROWTH, str(side)], capture_output=True,
                       text=True, check=True).stdout.split()
  return out[0], float(out[1])


@pytest.mark.parametrize("side", [10_000, 20_000])  # 100 MP: under PIL's own limit; 400 MP: over it
def test_decompression_bomb_is_rejected_before_decoding(side):
  assert len(fake_download.bomb_png(side)) < 100_000  # a few kB that would decode to 100-400 MB
  outcome, grown_mb = _decode_in_a_fresh_process(side)
  assert outcome == "too_large" and grown_mb < 20


@pytest.mark.parametrize("side", [7_000, 10_000, 20_000])  # 49 MP (allowed), 100 MP, 400 MP
def test_the_size_is_checked_before_any_pixel_is_decoded(side, monkeypatch):
  loads = []
  real_load = ImageFile.ImageFile.load
  monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: loads.append(1) or real_load(self))
  try:
    image_files.decode_grey(fake_download.bomb_png(side))
    outcome = "decoded"
  except image_files.ImageRejected as e:
    outcome = e.reason
  if side == 7_000:
    assert outcome == "decoded" and loads  # the check would see a decode
  else:
    assert outcome == "too_large" and not loads  # refused from the header


def test_junk_names():
  for name in (".DS_Store", "Thumbs.db", "DESKTOP.INI", "._0.jpg"):
    assert image_files.is_junk_name(name)
  assert not image_files.is_junk_name("14-rotated1-rotated2 (1).jpg")
  assert image_files.looks_like_image_name("X.JPG") and not image_files.looks_like_image_name("a.csv")
