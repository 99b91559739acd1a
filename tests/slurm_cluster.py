"""A real one-node Slurm cluster for the tests: munged, slurmctld and slurmd started from a
folder of their own (their config, state, logs, munge key and socket), stopped afterwards.

Debian's `slurm-wlm` and `munge` packages provide the daemons (`.ci/run` installs them as
root). Nothing outside the folder is touched: munged gets its own key and socket, and
slurm.conf points Slurm's authentication at that socket. Commands (`sbatch`, `srun`, ...)
find the cluster through SLURM_CONF in `env`.
"""

import os
import pwd
import shutil
import socket
import subprocess
import sys
import time
from typing import Dict, List, Optional

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "launch"))
from local_procs import free_port  # noqa: E402  (the launchers' own)

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "srun", "sinfo", "squeue", "scancel")
SLURM_CONF = """\
ClusterName=bonefrac-tests
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={folder}/munge/munge.socket
CredType=cred/munge
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/log/slurmctld.log
SlurmdLogFile={folder}/log/slurmd.log
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
KillWait=5
NodeName={host} CPUs={cpus} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
"""


def why_unavailable() -> Optional[str]:
  """Why a cluster cannot be started here, or None."""
  missing = [name for name in DAEMONS if not shutil.which(name)]
  if missing:
    return (f"Slurm is not installed ({', '.join(missing)} missing): apt-get install slurm-wlm "
            "munge (.ci/run does it when it runs as root)")
  if os.geteuid() != 0:
    return "slurmd must run as root to start jobs; run the Slurm tests as root"
  return None


class LocalSlurm:
  """The cluster in `folder`; `start()`, then commands with `env`, then `stop()`."""

  def __init__(self, folder: str):
    self.folder, self.host = folder, socket.gethostname().split(".")[0]
    self.conf = os.path.join(folder, "slurm.conf")
    self.env: Dict[str, str] = {**os.environ, "SLURM_CONF": self.conf}
    self.processes: List[subprocess.Popen] = []

  def start(self, timeout: float = 60) -> "LocalSlurm":
    for sub in ("state", "spool", "log", "munge"):
      os.makedirs(os.path.join(self.folder, sub), exist_ok=True)
    os.chmod(os.path.join(self.folder, "munge"), 0o755)  # munged wants its socket reachable
    with open(self.conf, "w") as f:
      f.write(SLURM_CONF.format(host=self.host, folder=self.folder, ctld_port=free_port(),
                                d_port=free_port(), cpus=os.cpu_count()))
    self._start_munged()
    self._daemon("slurmctld", ["slurmctld", "-D", "-f", self.conf])
    self._daemon("slurmd", ["slurmd", "-D", "-f", self.conf])
    self._wait_until_idle(timeout)
    return self

  def _start_munged(self) -> None:
    munge = os.path.join(self.folder, "munge")
    key = os.path.join(munge, "munge.key")
    with open(key, "wb") as f:
      f.write(os.urandom(1024))
    os.chmod(key, 0o400)
    self._daemon("munged", ["munged", "--foreground", "--force", f"--key-file={key}",
                            f"--socket={munge}/munge.socket", f"--pid-file={munge}/munged.pid",
                            f"--log-file={munge}/munged.log", f"--seed-file={munge}/munged.seed"])
    deadline = time.time() + 10
    while not os.path.exists(os.path.join(munge, "munge.socket")):
      if time.time() > deadline:
        raise RuntimeError(f"munged did not start: {self.log('munged')}")
      time.sleep(0.1)

  def _daemon(self, name: str, command: List[str]) -> None:
    out = open(os.path.join(self.folder, "log", f"{name}.out"), "w")
    self.processes.append(subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                           env=self.env))

  def _wait_until_idle(self, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
      state = self.run(["sinfo", "--noheader", "--format=%T"], check=False).stdout.strip()
      if state == "idle":
        return
      time.sleep(0.5)
    raise RuntimeError(f"the Slurm node never became idle (sinfo: {state!r}); "
                       f"slurmctld: {self.log('slurmctld')}; slurmd: {self.log('slurmd')}")

  def log(self, name: str) -> str:
    path = os.path.join(self.folder, "log", f"{name}.out")
    with open(path, errors="replace") as f:
      return f.read()[-2000:]

  def run(self, command: List[str], check: bool = True, timeout: float = 60,
          env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                            env={**self.env, **(env or {})})
    if check and result.returncode:
      raise RuntimeError(f"{' '.join(command)} failed: {result.stderr[-2000:]}")
    return result

  def wait_until_gone(self, job_id: str, timeout: float = 60) -> None:
    """Waits until the job has left the queue (finished, failed or cancelled)."""
    deadline = time.time() + timeout
    while self.run(["squeue", "--noheader", f"--jobs={job_id}"], check=False).stdout.strip():
      if time.time() > deadline:
        raise RuntimeError(f"job {job_id} is still in the queue after {timeout} s")
      time.sleep(0.5)

  def stop(self) -> None:
    """Cancels what still runs, then stops the daemons (by the processes started here)."""
    self.run(["scancel", "--full", f"--user={pwd.getpwuid(os.getuid()).pw_name}"], check=False)
    for proc in reversed(self.processes):
      proc.terminate()
    for proc in reversed(self.processes):
      try:
        proc.wait(timeout=20)
      except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
