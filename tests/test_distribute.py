"""Strategy and precision choices; mirrored over logical CPU devices in a fresh process."""

import subprocess
import sys

import pytest

from bonefrac import distribute


def test_auto_precision_on_cpus_follows_their_bfloat16_instructions(tmp_path, monkeypatch):
  with_amx, without = tmp_path / "amx", tmp_path / "plain"
  with_amx.write_text("flags\t\t: fpu sse2 avx512f avx512_bf16 amx_bf16 amx_tile\n")
  without.write_text("flags\t\t: fpu sse2 avx2\n")
  assert distribute.cpu_has_bfloat16(str(with_amx)) and not distribute.cpu_has_bfloat16(str(without))
  assert not distribute.cpu_has_bfloat16(str(tmp_path / "missing"))
  monkeypatch.setattr(distribute, "cpu_has_bfloat16", lambda: True)
  assert distribute.choose_precision("auto") == "mixed_bfloat16"
  monkeypatch.setattr(distribute, "cpu_has_bfloat16", lambda: False)
  assert distribute.choose_precision("auto") == "float32"
  assert distribute.choose_precision("mixed_float16") == "mixed_float16"


@pytest.mark.parametrize("call, flag", [
    (lambda: distribute.choose_precision("half"), "--precision=half"),
    (lambda: distribute.create_strategy("tpu"), "--strategy=tpu"),
])
def test_unknown_names_are_rejected_with_the_flag(call, flag):
  with pytest.raises(ValueError, match=flag):
    call()


def test_default_and_one_device_strategies():
  assert distribute.create_strategy("default").num_replicas_in_sync == 1
  assert distribute.create_strategy("auto").num_replicas_in_sync == 1  # one CPU, no GPUs
  assert distribute.create_strategy("one_device").num_replicas_in_sync == 1


def test_mirrored_runs_two_replicas_on_a_split_cpu():
  # Logical devices can only be configured before TensorFlow starts: a fresh interpreter.
  code = ("from bonefrac import distribute\n"
          "distribute.split_cpu(2)\n"
          "import tensorflow as tf\n"
          "s = distribute.create_strategy('mirrored')\n"
          "ids = s.experimental_local_results(s.run(lambda: tf.distribute.get_replica_context()"
          ".replica_id_in_sync_group))\n"
          "print(s.num_replicas_in_sync, sorted(int(i) for i in ids))\n")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.strip().splitlines()[-1] == "2 [0, 1]"
