"""Shared pytest settings: quiet TensorFlow, keep tests off any GPU."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import pytest  # noqa: E402

SMALL_SPLITS = (("train", 40), ("validation", 16), ("test", 16))


@pytest.fixture(autouse=True)
def float32_policy_after_each_test():
  """`train_lib.train` sets Keras' global dtype policy (mixed_bfloat16 where the CPU has AMX or
  AVX512-BF16); layers built by a later test in the same process would inherit it."""
  yield
  import sys
  keras = sys.modules.get("keras")
  if keras is not None:
    keras.mixed_precision.set_global_policy("float32")


@pytest.fixture(scope="session")
def small_data_dir(tmp_path_factory):
  """A data dir holding bone_fracture/synthetic_small (40/16/16 generated radiographs)."""
  import bonefrac_tfds
  from bonefrac_tfds.bone_fracture import bone_fracture_dataset_builder as bf
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  config = bf.BoneFractureConfig(name="synthetic_small", synthetic_splits=SMALL_SPLITS)
  bonefrac_tfds.BoneFracture(config=config, data_dir=data_dir).download_and_prepare()
  return data_dir


def dicom_bytes(pixels, photometric="MONOCHROME2", bits_stored=None, window=None, rescale=None,
                transfer_syntax="1.2.840.10008.1.2.1", modality="DX"):
  """A minimal DICOM file (written with pydicom) holding `pixels` (2-D uint8 or uint16),
  uncompressed (Explicit VR Little Endian) or in a compressed `transfer_syntax` (`encode_frame`)."""
  import io
  import numpy as np
  from pydicom.dataset import Dataset, FileMetaDataset
  from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid
  pixels = np.asarray(pixels)
  ds = Dataset()
  ds.file_meta = FileMetaDataset()
  ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
  ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
  ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
  ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, ds.file_meta.MediaStorageSOPInstanceUID
  ds.Modality = modality
  ds.Rows, ds.Columns = pixels.shape
  ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
  ds.BitsAllocated = 8 if pixels.dtype == np.uint8 else 16
  ds.BitsStored = bits_stored or ds.BitsAllocated
  ds.HighBit, ds.PixelRepresentation = ds.BitsStored - 1, 0
  if window:
    ds.WindowCenter, ds.WindowWidth = window
  if rescale:
    ds.RescaleSlope, ds.RescaleIntercept = rescale
  ds.PixelData = pixels.tobytes()
  if transfer_syntax != ExplicitVRLittleEndian:
    encode_frame(ds, pixels, transfer_syntax)
  buffer = io.BytesIO()
  ds.save_as(buffer, enforce_file_format=True)
  return buffer.getvalue()


def encode_frame(ds, pixels, transfer_syntax):
  """Compresses `ds`'s one frame in place: RLE with pydicom's own encoder, the JPEG family
  with imagecodecs (libjpeg-turbo, CharLS, OpenJPEG), encapsulated as DICOM wants."""
  import imagecodecs
  from pydicom import uid
  from pydicom.encaps import encapsulate
  if transfer_syntax == uid.RLELossless:
    ds.compress(uid.RLELossless, encoding_plugin="pydicom")
    return
  bits = int(ds.BitsStored)
  frame = {
      uid.JPEGBaseline8Bit: lambda: imagecodecs.jpeg8_encode(pixels, level=95),
      uid.JPEGExtended12Bit: lambda: imagecodecs.jpeg8_encode(pixels, level=95, bitspersample=12),
      uid.JPEGLossless: lambda: imagecodecs.jpeg8_encode(pixels, lossless=True, predictor=6,
                                                         bitspersample=bits),
      uid.JPEGLosslessSV1: lambda: imagecodecs.jpeg8_encode(pixels, lossless=True, predictor=1,
                                                            bitspersample=bits),
      uid.JPEGLSLossless: lambda: imagecodecs.jpegls_encode(pixels),
      uid.JPEGLSNearLossless: lambda: imagecodecs.jpegls_encode(pixels, level=2),
      uid.JPEG2000Lossless: lambda: imagecodecs.jpeg2k_encode(
          pixels, codecformat="J2K", reversible=True, bitspersample=bits),
      uid.JPEG2000: lambda: imagecodecs.jpeg2k_encode(
          pixels, level=80, codecformat="J2K", bitspersample=bits),
  }[transfer_syntax]()
  ds.PixelData = encapsulate([frame])
  ds["PixelData"].VR = "OB"
  ds.file_meta.TransferSyntaxUID = transfer_syntax


@pytest.fixture(scope="session")
def cnn_run(small_data_dir, tmp_path_factory):
  """A tiny CNN trained two epochs on synthetic_small: (its workdir, its report)."""
  from bonefrac import train_lib
  workdir = tmp_path_factory.mktemp("cnn")
  config = train_lib.TrainConfig(dataset="bone_fracture/synthetic_small", data_dir=small_data_dir,
                                 workdir=str(workdir), epochs=2, batch_size=8, image_size=32,
                                 dense_units=(16,), verbose=0)
  return workdir, train_lib.train(config)
