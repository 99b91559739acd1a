"""The tf.distribute strategy and the Keras precision policy, chosen from flags."""

import os
import re
from typing import Optional

import keras
import tensorflow as tf

from bonefrac import keras_compat

STRATEGIES = ("auto", "default", "one_device", "mirrored", "multi_worker_mirrored")
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
ALL_REDUCE = ("auto", "ring", "nccl")
SLURM_PORT_BASE = 8888  # workers listen on 8888, 8889, ... of their node
PORT_BASE_VARIABLE = "BONEFRAC_SLURM_PORT_BASE"  # another base, for two jobs sharing a node


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
  if name == "multi_worker_mirrored":
    # First, before anything lists logical devices: collective ops must be configured before
    # TensorFlow's context starts. Physical devices can be listed without starting it.
    gpus = tf.config.list_physical_devices("GPU")
    keras_compat.apply()  # Keras 3's fit across workers (keras-team/keras#20585)
    return tf.distribute.MultiWorkerMirroredStrategy(
        cluster_resolver=slurm_cluster_resolver(len(gpus)),
        communication_options=_communication_options(all_reduce, gpus))
  gpus = tf.config.list_logical_devices("GPU")
  if name == "auto":
    name = "mirrored" if len(gpus) > 1 else "default"
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "one_device":
    return tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
  # mirrored
  devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
  # NCCL needs GPUs; on CPUs reduce through one device.
  ops = None if gpus else tf.distribute.ReductionToOneDevice()
  return tf.distribute.MirroredStrategy(devices, cross_device_ops=ops)


def slurm_cluster_resolver(gpus_per_node: int, port_base: Optional[int] = None):
  """Slurm's cluster when running as a task of `srun` without TF_CONFIG, else None (TF_CONFIG's
  cluster, or one worker alone). Task 0 is the chief; each task keeps the GPUs Slurm gave it.
  Tasks listen on `port_base` + their index on the node: BONEFRAC_SLURM_PORT_BASE, else 8888."""
  if "TF_CONFIG" in os.environ or "SLURM_STEP_NODELIST" not in os.environ:
    return None
  if port_base is None:
    try:
      port_base = int(os.environ.get(PORT_BASE_VARIABLE, SLURM_PORT_BASE))
    except ValueError:
      raise ValueError(f"{PORT_BASE_VARIABLE}={os.environ[PORT_BASE_VARIABLE]!r} is not a port "
                       "number") from None
  # "2(x3),1": tasks per node. The resolver divides a node's GPUs between its tasks; with
  # auto_set_gpu off that is bookkeeping only, so CPU nodes get one notional GPU per task.
  tasks = re.findall(r"(\d+)(?:\(x\d+\))?", os.environ.get("SLURM_STEP_TASKS_PER_NODE", "1"))
  most_tasks = max([int(t) for t in tasks] or [1])
  return tf.distribute.cluster_resolver.SlurmClusterResolver(
      port_base=port_base, gpus_per_node=gpus_per_node or most_tasks, auto_set_gpu=False)


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
  """Resolves `auto` from the hardware (measurements in BUILD_NOTES.md): mixed_bfloat16 on GPUs
  of compute capability 8 or more (no loss scaling needed), mixed_float16 on 7.x (tensor
  cores), float32 on older GPUs; on CPUs mixed_bfloat16 where the CPU computes bfloat16 natively
  (AMX or AVX512-BF16: 1.3x the CNN's and 4x VGG16's float32 training speed here), else
  float32 (float16 has no fast CPU kernels)."""
  if name not in PRECISIONS:
    raise ValueError(f"--precision={name} is not one of {', '.join(PRECISIONS)}")
  if name != "auto":
    return name
  capability = _min_compute_capability()
  if capability is None:
    return "mixed_bfloat16" if cpu_has_bfloat16() else "float32"
  if capability >= (8, 0):
    return "mixed_bfloat16"
  return "mixed_float16" if capability >= (7, 0) else "float32"


def cpu_has_bfloat16(cpuinfo: str = "/proc/cpuinfo") -> bool:
  """Whether the CPU has bfloat16 instructions (AMX-BF16 or AVX512-BF16), on Linux."""
  try:
    with open(cpuinfo) as f:
      return bool(re.search(r"\b(amx_bf16|avx512_bf16)\b", f.read()))
  except OSError:
    return False


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


def barrier(strategy: tf.distribute.Strategy) -> None:
  """Waits until every worker of a multi-worker strategy gets here (a tiny all-reduce)."""
  if keras_compat.is_multi_worker(strategy):
    # In a tf.function: TensorFlow warns that collectives run eagerly are slow.
    tf.function(_sum_of_ones, autograph=False)(strategy)


def _sum_of_ones(strategy):
  return strategy.reduce("SUM", strategy.run(_one), axis=None)


def _one():
  return tf.constant(1.0)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """The process that writes a run's outputs: the only one, or the chief of several workers."""
  return bool(strategy.extended.should_checkpoint)
