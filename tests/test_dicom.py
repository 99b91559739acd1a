"""DICOM radiographs to 8-bit grey: photometric interpretation, bit depth, windows, no pydicom."""

import sys

import numpy as np
import pytest

from bonefrac_tfds.bone_fracture import dicom, image_files
from conftest import dicom_bytes

pytest.importorskip("pydicom")

RAMP = np.tile(np.arange(64, dtype=np.uint16), (40, 1))  # 0..63 across, 40 rows


def test_8_bit_monochrome2_is_kept_as_is():
  pixels = (RAMP * 4).astype(np.uint8)
  assert np.array_equal(dicom.decode_grey(dicom_bytes(pixels)), pixels)


def test_monochrome1_is_inverted():
  pixels = (RAMP * 4).astype(np.uint8)
  grey = dicom.decode_grey(dicom_bytes(pixels, photometric="MONOCHROME1"))
  assert np.array_equal(grey, 255 - pixels)  # high values are dark in MONOCHROME1


def test_12_bit_in_16_is_scaled_by_the_bits_used():
  pixels = (RAMP * 65).astype(np.uint16)  # up to 4095: 12-bit data
  grey = dicom.decode_grey(dicom_bytes(pixels, bits_stored=12))
  assert grey.dtype == np.uint8 and grey.max() == 255 and grey[0, 0] == 0
  np.testing.assert_allclose(grey[0].astype(float), RAMP[0].astype(float) * 65 * 255 / 4095, atol=0.51)


def test_the_window_maps_its_range_to_black_and_white():
  pixels = (RAMP * 64).astype(np.uint16)  # 0 .. 4032
  grey = dicom.decode_grey(dicom_bytes(pixels, bits_stored=12, window=(2048, 1024)))
  row = grey[0].astype(int)
  assert row[pixels[0] <= 1536].max() == 0 and row[pixels[0] >= 2560].min() == 255
  inside = (pixels[0] > 1600) & (pixels[0] < 2500)
  assert np.all(np.diff(row[inside]) > 0)  # a linear ramp in between


def test_a_file_with_a_window_is_read_the_same_inverted_under_monochrome1():
  pixels = (RAMP * 64).astype(np.uint16)
  two = dicom.decode_grey(dicom_bytes(pixels, bits_stored=12, window=(2048, 1024)))
  one = dicom.decode_grey(dicom_bytes(pixels, "MONOCHROME1", bits_stored=12, window=(2048, 1024)))
  assert np.array_equal(one, 255 - two)


def test_storage_turns_dicom_into_a_grey_png():
  data = image_files.prepare_for_storage(dicom_bytes((RAMP * 4).astype(np.uint8)))
  assert image_files.sniff_format(data) == "png"
  decoded, _ = image_files.decode_grey(data)
  assert np.array_equal(decoded, (RAMP * 4).astype(np.uint8))


def test_without_pydicom_the_reason_says_what_to_install(monkeypatch):
  monkeypatch.setitem(sys.modules, "pydicom", None)  # import pydicom now raises ImportError
  monkeypatch.setitem(sys.modules, "pydicom.pixels", None)
  with pytest.raises(image_files.ImageRejected) as error:
    dicom.decode_grey(dicom_bytes((RAMP * 4).astype(np.uint8)))
  assert error.value.reason == "dicom_unsupported" and "bonefrac[dicom]" in str(error.value)


def test_a_broken_dicom_is_rejected_not_raised():
  data = dicom_bytes((RAMP * 4).astype(np.uint8))
  with pytest.raises(image_files.ImageRejected, match="undecodable"):
    dicom.decode_grey(data[:400])


# What PACS exports use: lossless (exact) and lossy (close) JPEG, JPEG-LS, JPEG 2000, RLE.
COMPRESSED = [  # (transfer syntax, bits stored, largest mean difference in grey levels)
    ("1.2.840.10008.1.2.4.50", 8, 1.5),  # JPEG Baseline (process 1), lossy 8-bit
    ("1.2.840.10008.1.2.4.51", 12, 1.5),  # JPEG Extended (processes 2 and 4), lossy 12-bit
    ("1.2.840.10008.1.2.4.57", 12, 0),  # JPEG Lossless (process 14)
    ("1.2.840.10008.1.2.4.70", 12, 0),  # JPEG Lossless, first-order prediction (SV1)
    ("1.2.840.10008.1.2.4.70", 16, 0),
    ("1.2.840.10008.1.2.4.80", 12, 0),  # JPEG-LS lossless
    ("1.2.840.10008.1.2.4.81", 12, 0.5),  # JPEG-LS near-lossless
    ("1.2.840.10008.1.2.4.90", 12, 0),  # JPEG 2000 lossless
    ("1.2.840.10008.1.2.4.91", 12, 1.0),  # JPEG 2000
    ("1.2.840.10008.1.2.5", 12, 0),  # RLE lossless
]


@pytest.mark.parametrize("syntax, bits, tolerance", COMPRESSED)
def test_compressed_transfer_syntaxes_read_as_the_uncompressed_file(syntax, bits, tolerance):
  pytest.importorskip("imagecodecs")  # writes the test files
  y, x = np.mgrid[0:48, 0:64]
  pixels = ((x * 40 + y * 25) * (2 ** bits - 1) // (63 * 40 + 47 * 25)).astype(
      np.uint8 if bits == 8 else np.uint16)  # a smooth ramp over the whole range
  expected = dicom.decode_grey(dicom_bytes(pixels, bits_stored=bits)).astype(float)
  grey = dicom.decode_grey(dicom_bytes(pixels, bits_stored=bits, transfer_syntax=syntax))
  assert grey.shape == expected.shape and grey.dtype == np.uint8
  assert np.abs(grey - expected).mean() <= tolerance
  if tolerance == 0:
    assert np.array_equal(grey, expected)


def test_a_missing_decoder_says_what_to_install(monkeypatch):
  import pydicom

  def no_plugin(self):
    raise RuntimeError("Unable to decompress 'JPEG Lossless' pixel data because all plugins "
                       "are missing dependencies:")

  monkeypatch.setattr(pydicom.dataset.Dataset, "pixel_array", property(no_plugin))
  with pytest.raises(image_files.ImageRejected) as error:
    dicom.decode_grey(dicom_bytes((RAMP * 4).astype(np.uint8)))
  assert error.value.reason == "dicom_unsupported" and "bonefrac[dicom]" in str(error.value)


def test_an_underexposed_12_bit_file_keeps_its_exposure():
  pixels = (RAMP * 16).astype(np.uint16)  # up to 1008 of 4095: a dark 12-bit image
  grey = dicom.decode_grey(dicom_bytes(pixels, bits_stored=12))
  assert grey.max() == round(1008 * 255 / 4095)  # scaled by the bits stored, not stretched
