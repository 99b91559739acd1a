"""TensorFlow's C++ start-up lines kept off a user's terminal, unless the user asks for them."""

import contextlib
import os
import sys


def import_tensorflow() -> None:
  """Imports TensorFlow (and probes its GPU platform) with the C++ lines it prints on the way
  hidden: CUDA probing errors on a machine without a GPU, oneDNN and CPU-feature notes.

  They are written before TensorFlow sets up its logging (absl's "All log messages before
  absl::InitializeLog() is called are written to STDERR"), so TF_CPP_MIN_LOG_LEVEL alone does
  not hide them. A user who set TF_CPP_MIN_LOG_LEVEL sees everything, as TensorFlow prints it.
  Call it in an entry point before anything imports TensorFlow.
  """
  if "TF_CPP_MIN_LOG_LEVEL" in os.environ or "tensorflow" in sys.modules:
    return
  os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"  # later C++ INFO and WARNING lines
  with _stderr_to_devnull():
    import tensorflow as tf
    tf.config.list_physical_devices("GPU")  # cuInit and its error on a CPU machine


@contextlib.contextmanager
def _stderr_to_devnull():
  sys.stderr.flush()
  saved = os.dup(2)
  devnull = os.open(os.devnull, os.O_WRONLY)
  try:
    os.dup2(devnull, 2)
    yield
  finally:
    os.dup2(saved, 2)
    os.close(saved)
    os.close(devnull)
