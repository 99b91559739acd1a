"""A training run's folder: where each output goes, checking it, resuming in it, its history."""

import csv
import os
import shutil
import tempfile
from typing import Dict, List, Optional

from bonefrac.cli import UserError


class Paths:
  """Where a run's outputs go inside its workdir.

  `resume` holds the paths that resume state is read from: these same ones, except on the
  non-chief workers of a multi-worker run, which write to a temporary folder and read the
  chief's workdir (`shared`).
  """

  def __init__(self, workdir: str, shared: Optional[str] = None):
    join = lambda *parts: os.path.join(workdir, *parts)  # noqa: E731
    self.workdir = workdir
    self.logs, self.backup, self.backup_fine_tune = join("logs"), join("backup"), join("backup_ft")
    self.best = join("checkpoints", "best.weights.h5")
    self.phase1 = join("checkpoints", "phase1.weights.h5")  # exists only while phase 2 runs
    self.history, self.report = join("training_log.csv"), join("report.json")
    self.model, self.export = join("model.keras"), join("export")
    self.resume = self if shared is None else Paths(shared)


def prepare(workdir: str) -> Paths:
  """Creates the workdir (and checks it is writable)."""
  try:
    os.makedirs(os.path.join(workdir, "checkpoints"), exist_ok=True)
    probe = os.path.join(workdir, ".writable")
    with open(probe, "w"):
      pass
    os.remove(probe)
  except OSError as e:
    raise UserError(f"cannot write to --workdir={workdir} ({e.strerror}); "
                    "choose a folder you can write to") from None
  return Paths(workdir)


def worker_paths(shared: str) -> Paths:
  """A non-chief worker's outputs: a temporary folder (see `remove_worker_dir`)."""
  temporary = tempfile.mkdtemp(prefix="bonefrac_worker_")
  os.makedirs(os.path.join(temporary, "checkpoints"))
  return Paths(temporary, shared=shared)


def remove_worker_dir(paths: Paths) -> None:
  if paths.resume is not paths:
    shutil.rmtree(paths.workdir, ignore_errors=True)


def start_fresh_unless_resuming(paths: Paths) -> None:
  """A workdir holding a finished run is reused from scratch; an interrupted one resumes."""
  if any(os.path.exists(p) for p in (paths.backup, paths.backup_fine_tune, paths.phase1)):
    print(f"Resuming the interrupted run in {paths.workdir}", flush=True)
    return
  for old in (paths.history, paths.best, paths.report):
    if os.path.exists(old):
      os.remove(old)
  shutil.rmtree(paths.logs, ignore_errors=True)


def read_history(path: str) -> Dict[str, List[float]]:
  """The CSVLogger's per-epoch log (across restarts) as {column: values}."""
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    rows = list(csv.DictReader(f))
  return {key: [float(row[key]) for row in rows if row.get(key) not in (None, "")]
          for key in (rows[0] if rows else {})}


def write_predictions(path: str, names, labels, probabilities) -> None:
  """One CSV row per evaluated image: filename, label, fracture probability."""
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["filename", "label", "fracture_probability"])
    writer.writerows((n, int(y), f"{p:.6f}") for n, y, p in zip(names, labels, probabilities))
