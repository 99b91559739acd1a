"""What Kubernetes pods run, checked without a cluster: `python -m bonefrac.cluster`, and the
manifests' names, ports and commands against each other and against the installed package."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from bonefrac import cluster

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
K8S = os.path.join(ROOT, "launch", "k8s")


def manifests(name):
  with open(os.path.join(K8S, name)) as f:
    return list(yaml.safe_load_all(f))


def run_in(tmp_path, command, env):
  """A pod's command, run from a folder with no source checkout: only the installed package."""
  return subprocess.run([sys.executable if command[0] == "python" else command[0], *command[1:]],
                        cwd=tmp_path, capture_output=True, text=True, timeout=120,
                        env={**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3",
                             **env})


def test_the_kubernetes_derivation_for_a_3_worker_job():
  specs = [cluster.kubernetes_tf_config({"JOB_COMPLETION_INDEX": str(i), "WORKERS": "3",
                                         "JOB_NAME": "bonefrac", "PORT": "2222"}) for i in range(3)]
  hosts = ["bonefrac-0.bonefrac:2222", "bonefrac-1.bonefrac:2222", "bonefrac-2.bonefrac:2222"]
  assert all(spec["cluster"] == {"worker": hosts} for spec in specs)
  assert [spec["task"] for spec in specs] == [{"type": "worker", "index": i} for i in range(3)]


def test_the_cluster_command_prints_sets_and_refuses(tmp_path):
  env = {"JOB_COMPLETION_INDEX": "1", "WORKERS": "2", "JOB_NAME": "job", "SERVICE": "svc"}
  printed = run_in(tmp_path, ["python", "-m", "bonefrac.cluster", "tf-config"], env)
  assert printed.returncode == 0, printed.stderr
  assert json.loads(printed.stdout)["cluster"]["worker"] == ["job-0.svc:2222", "job-1.svc:2222"]
  show = "import os; print(os.environ['TF_CONFIG'])"
  ran = run_in(tmp_path, ["python", "-m", "bonefrac.cluster", "run", "--", "python", "-c", show], env)
  assert ran.returncode == 0 and json.loads(ran.stdout) == json.loads(printed.stdout)
  for bad, words in (({**env, "JOB_COMPLETION_INDEX": "2"}, "not below WORKERS"),
                     ({"WORKERS": "2", "JOB_NAME": "job"}, "JOB_COMPLETION_INDEX")):
    refused = run_in(tmp_path, ["python", "-m", "bonefrac.cluster", "tf-config"], bad)
    assert refused.returncode == 2 and words in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


def test_the_indexed_job_agrees_with_its_service_and_runs_from_the_package(tmp_path):
  service, job = manifests("indexed-job.yaml")
  assert service["kind"] == "Service" and service["spec"]["clusterIP"] == "None"
  assert service["spec"]["selector"] == {"job-name": job["metadata"]["name"]}
  spec = job["spec"]
  assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"]
  pod = spec["template"]["spec"]
  [container] = pod["containers"]
  env = {e["name"]: str(e["value"]) for e in container["env"]}
  port = int(env["PORT"])
  assert pod["subdomain"] == service["metadata"]["name"] == env.get("SERVICE", env["JOB_NAME"])
  assert env["JOB_NAME"] == job["metadata"]["name"] and int(env["WORKERS"]) == spec["completions"]
  assert [p["port"] for p in service["spec"]["ports"]] == [port]
  assert [p["containerPort"] for p in container["ports"]] == [port]
  assert "workingDir" not in container
  command = container["command"] + container["args"]
  assert command[:5] == ["python", "-m", "bonefrac.cluster", "run", "--"]
  # The pod's own command, with the training only checking its flags (absl's --only_check_args).
  pod_env = {**env, "JOB_COMPLETION_INDEX": "0"}
  check = run_in(tmp_path, command + ["--only_check_args"], pod_env)
  assert check.returncode == 0, check.stderr[-2000:]
  tf_config = json.loads(run_in(tmp_path, command[:4] + ["--", "python", "-c",
                                "import os; print(os.environ['TF_CONFIG'])"], pod_env).stdout)
  name = job["metadata"]["name"]
  assert tf_config["cluster"]["worker"] == [f"{name}-{i}.{pod['subdomain']}:{port}"
                                            for i in range(spec["completions"])]


def test_the_tfjob_and_tensorboard_run_commands_of_the_package(tmp_path):
  [tfjob] = manifests("tfjob.yaml")
  worker = tfjob["spec"]["tfReplicaSpecs"]["Worker"]
  [container] = worker["template"]["spec"]["containers"]
  assert tfjob["kind"] == "TFJob" and worker["replicas"] >= 2 and "workingDir" not in container
  check = run_in(tmp_path, container["command"] + container["args"] + ["--only_check_args"], {})
  assert check.returncode == 0, check.stderr[-2000:]
  deployment, service = manifests("tensorboard.yaml")
  [board] = deployment["spec"]["template"]["spec"]["containers"]
  assert shutil.which(board["command"][0])  # tensorboard, installed with the package
  assert [p["port"] for p in service["spec"]["ports"]] == [p["containerPort"] for p in board["ports"]]


@pytest.mark.parametrize("name", ["indexed-job.yaml", "tfjob.yaml", "tensorboard.yaml"])
def test_the_manifests_name_the_image_the_dockerfile_builds(name):
  with open(os.path.join(ROOT, "Dockerfile")) as f:
    dockerfile = f.read()
  tag = re.search(r"docker build -t (\S+) \.", dockerfile).group(1)
  assert re.search(r'pip install [^\n]*"\.\[[^\]]*\bgpu\b', dockerfile)  # the package, gpu extra
  assert set(_images(manifests(name))) == {tag}
  assert "launch/" not in json.dumps(manifests(name))  # nothing from a source checkout


def _images(node):
  """Every `image` value in parsed YAML."""
  if isinstance(node, dict):
    return [v for k, v in node.items() if k == "image"] + [i for v in node.values() for i in _images(v)]
  if isinstance(node, list):
    return [i for v in node for i in _images(v)]
  return []
