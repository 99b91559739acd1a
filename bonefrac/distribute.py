"""The tf.distribute strategy and the Keras precision policy, chosen from flags."""

from typing import Optional

import keras
import tensorflow as tf

STRATEGIES = ("auto", "default", "one_device", "mirrored", "multi_worker_mirrored")
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
ALL_REDUCE = ("auto", "ring", "nccl")


def split_cpu(replicas: int) -> None:
  """Splits the CPU into `replicas` logical devices, so `mirrored` can run replicas without GPUs.

  Must run before TensorFlow initialises its devices (before the first op).
  """
  if replicas <= 1:
    return
  cpu = tf.config.list_physical_devices("CPU")[0]
  try:
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(replicas)])
  except RuntimeError as e:  # devices already initialised
    raise RuntimeError(f"--cpu_replicas={replicas} must be set before TensorFlow starts: {e}") from None


def create_strategy(name: str, *, all_reduce: str = "auto") -> tf.distribute.Strategy:
  """Returns the strategy called `name` (see STRATEGIES) for the devices this process sees.

  `auto`: mirrored over all GPUs when there are several, else the default strategy.
  `mirrored` without GPUs mirrors over the logical CPU devices (`split_cpu`).
  """
  if name not in STRATEGIES:
    raise ValueError(f"--strategy={name} is not one of {', '.join(STRATEGIES)}")
  gpus = tf.config.list_logical_devices("GPU")
  if name == "auto":
    name = "mirrored" if len(gpus) > 1 else "default"
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "one_device":
    return tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
  if name == "mirrored":
    devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
    # NCCL needs GPUs; on CPUs reduce through one device.
    ops = None if gpus else tf.distribute.ReductionToOneDevice()
    return tf.distribute.MirroredStrategy(devices, cross_device_ops=ops)
  return tf.distribute.MultiWorkerMirroredStrategy(
      communication_options=_communication_options(all_reduce, gpus))


def _communication_options(all_reduce: str, gpus) -> tf.distribute.experimental.CommunicationOptions:
  """RING collectives on CPUs and NCCL on GPUs unless `all_reduce` says otherwise."""
  if all_reduce not in ALL_REDUCE:
    raise ValueError(f"--all_reduce={all_reduce} is not one of {', '.join(ALL_REDUCE)}")
  if all_reduce == "auto":
    all_reduce = "nccl" if gpus else "ring"
  implementation = {"ring": tf.distribute.experimental.CommunicationImplementation.RING,
                    "nccl": tf.distribute.experimental.CommunicationImplementation.NCCL}
  return tf.distribute.experimental.CommunicationOptions(implementation=implementation[all_reduce])


def choose_precision(name: str) -> str:
  """Resolves `auto`: float32 on CPUs (bfloat16 is no faster there and float16 is far slower,
  see BUILD_NOTES.md), mixed_bfloat16 on GPUs of compute capability 8 or more (no loss
  scaling needed), mixed_float16 on older GPUs with tensor cores (7.x), float32 below that."""
  if name not in PRECISIONS:
    raise ValueError(f"--precision={name} is not one of {', '.join(PRECISIONS)}")
  if name != "auto":
    return name
  capability = _min_compute_capability()
  if capability is None:
    return "float32"
  if capability >= (8, 0):
    return "mixed_bfloat16"
  return "mixed_float16" if capability >= (7, 0) else "float32"


def set_precision(name: str) -> str:
  """Sets Keras' global dtype policy from `name` (auto resolved); returns the policy set."""
  policy = choose_precision(name)
  keras.mixed_precision.set_global_policy(policy)
  return policy


def _min_compute_capability() -> Optional[tuple]:
  capabilities = [tf.config.experimental.get_device_details(gpu).get("compute_capability")
                  for gpu in tf.config.list_physical_devices("GPU")]
  capabilities = [c for c in capabilities if c]
  return min(capabilities) if capabilities else None
