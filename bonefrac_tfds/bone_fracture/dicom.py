"""DICOM radiographs to 8-bit grey, the way a viewer shows them (optional: `bonefrac[dicom]`).

Uncompressed and RLE pixel data need pydicom alone; JPEG (baseline, extended, lossless),
JPEG-LS and JPEG 2000 need its pylibjpeg plugins, which the `dicom` extra installs.

The modality LUT (rescale) is applied first, then the VOI LUT or the window the file carries,
then MONOCHROME1 (where higher values are darker) is inverted. Without a window, 9-16 bit
values are scaled by the bit depth stored, as for 16-bit PNGs.
"""

import io

import numpy as np

from bonefrac_tfds.bone_fracture import image_files

DICOM_MAGIC_OFFSET = 128  # a 128-byte preamble, then "DICM"
INSTALL_HINT = "reading DICOM needs pydicom: pip install 'bonefrac[dicom]'"
# Compressed pixel data (JPEG, JPEG-LS, JPEG 2000) needs pydicom's pylibjpeg plugins.
DECODER_HINT = "pip install 'bonefrac[dicom]' (pydicom with pylibjpeg, libjpeg and openjpeg)"


def is_dicom(data: bytes) -> bool:
  return data[DICOM_MAGIC_OFFSET:DICOM_MAGIC_OFFSET + 4] == b"DICM"


def available() -> bool:
  try:
    import pydicom  # noqa: F401
  except ImportError:
    return False
  return True


def decode_grey(data: bytes) -> np.ndarray:
  """DICOM bytes -> uint8 grey [h, w] (the first frame of a multi-frame file).

  Raises:
    ImageRejected: pydicom missing ("dicom_unsupported"), or a file it cannot read.
  """
  try:
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut
  except ImportError:
    raise image_files.ImageRejected("dicom_unsupported", INSTALL_HINT) from None
  try:
    ds = pydicom.dcmread(io.BytesIO(data))
    pixels = ds.pixel_array
  except Exception as e:  # pydicom raises many types for broken files
    if "missing dependencies" in str(e) or "No plugin" in str(e):  # a compressed syntax
      raise image_files.ImageRejected(
          "dicom_unsupported", f"{_transfer_syntax(ds)}: no decoder installed; {DECODER_HINT}"
      ) from None
    raise image_files.ImageRejected("undecodable", f"DICOM: {type(e).__name__}: {e}") from None
  if int(ds.get("NumberOfFrames", 1) or 1) > 1:
    pixels = pixels[0]
  if pixels.ndim == 3:  # colour (RGB/YBR): radiographs are grey, take the luminance
    pixels = pixels[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
  image_files.check_size(pixels.shape[1], pixels.shape[0])
  values = apply_modality_lut(pixels, ds).astype(np.float64)
  low, high = _voi_range(ds)
  if low is not None:
    values = apply_voi_lut(values, ds).astype(np.float64)
    grey = np.clip((values - low) / max(high - low, 1e-9), 0.0, 1.0) * 255.0
  else:  # by the bits stored, unless a modality LUT moved the values elsewhere
    identity = not ds.get("ModalityLUTSequence") and float(ds.get("RescaleSlope", 1) or 1) == 1 \
        and float(ds.get("RescaleIntercept", 0) or 0) == 0
    bits = int(ds.BitsStored) if identity and ds.get("BitsStored") else None
    grey = image_files.high_depth_to_8bit(values, bits).astype(np.float64)
  if ds.get("PhotometricInterpretation", "MONOCHROME2") == "MONOCHROME1":
    grey = 255.0 - grey
  return np.clip(np.rint(grey), 0, 255).astype(np.uint8)


def _transfer_syntax(ds) -> str:
  try:
    return ds.file_meta.TransferSyntaxUID.name
  except AttributeError:
    return "this transfer syntax"


def _voi_range(ds):
  """The output range of the file's VOI LUT or window (as pydicom applies them); (None, None)
  when it has neither."""
  if ds.get("VOILUTSequence"):
    bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
    return 0.0, float(2 ** bits - 1)
  if "WindowCenter" not in ds or "WindowWidth" not in ds:
    return None, None
  bits = int(ds.BitsStored)
  if ds.get("ModalityLUTSequence"):
    low, high = 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
  elif int(ds.get("PixelRepresentation", 0)) == 0:
    low, high = 0.0, float(2 ** bits - 1)
  else:
    low, high = -float(2 ** (bits - 1)), float(2 ** (bits - 1) - 1)
  slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
  if slope is not None and intercept is not None:
    low, high = low * float(slope) + float(intercept), high * float(slope) + float(intercept)
  return low, high
