"""A training run's folder: where each output goes, checking it, resuming in it, its history."""

import csv
import json
import os
import shutil
import tempfile
import uuid
from typing import Dict, List, Optional

from bonefrac.errors import UserError


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
    self.best_epoch = join("checkpoints", "best_epoch.json")  # the epoch those weights are from
    self.phase1 = join("checkpoints", "phase1.weights.h5")  # exists only while phase 2 runs
    self.history, self.report = join("training_log.csv"), join("report.json")
    self.model, self.export = join("model.keras"), join("export")
    self.settings = join("run_settings.json")  # what a resumed run must match
    self.resume = self if shared is None else Paths(shared)


def prepare(workdir: str) -> Paths:
  """Creates the workdir (and checks it is writable)."""
  try:
    os.makedirs(os.path.join(workdir, "checkpoints"), exist_ok=True)
    # A probe file of its own: the workers of a multi-worker run share the workdir, and one
    # name for all let one worker delete the file another was about to delete.
    probe = os.path.join(workdir, f".writable-{uuid.uuid4().hex}")
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


def start_fresh_unless_resuming(paths: Paths, settings: Dict, overwrite: bool = False) -> None:
  """An interrupted run resumes if it had the same `settings` (else UserError); anything else,
  and any run with `overwrite`, starts afresh. The settings are kept in the workdir."""
  interrupted = any(os.path.exists(p) for p in (paths.backup, paths.backup_fine_tune, paths.phase1))
  if interrupted and not overwrite:
    check_settings(paths.settings, settings, "an interrupted run")
    print(f"Resuming the interrupted run in {paths.workdir}", flush=True)
    return
  for old in (paths.history, paths.best, paths.best_epoch, paths.report, paths.phase1,
              paths.settings):
    if os.path.exists(old):
      os.remove(old)
  for old in (paths.logs, paths.backup, paths.backup_fine_tune):
    shutil.rmtree(old, ignore_errors=True)
  write_settings(paths.settings, settings)


def check_settings(path: str, settings: Dict, holds: str) -> None:
  """Refuses, with one line, to continue what the folder of `path` holds (`holds`: "a search",
  "an interrupted run") when the settings saved at `path` differ from `settings`."""
  if not os.path.exists(path):
    return
  with open(path) as f:
    before = json.load(f)
  changed = {k: (before.get(k), v) for k, v in _jsonable(settings).items() if before.get(k) != v}
  if changed:
    what = ", ".join(f"{k}={old} (now {new})" for k, (old, new) in sorted(changed.items()))
    raise UserError(f"--workdir={os.path.dirname(path)} holds {holds} with {what}; pass "
                    "--overwrite to start afresh there, or choose another --workdir")


def write_settings(path: str, settings: Dict) -> None:
  with open(path, "w") as f:
    json.dump(_jsonable(settings), f, indent=2)


def _jsonable(settings: Dict) -> Dict:
  return json.loads(json.dumps(settings, default=list))  # tuples as lists, as they are read back


def read_best_epoch(path: str) -> Optional[Dict[str, float]]:
  """The log row of the epoch whose weights the best checkpoint holds (`BestCheckpoint`)."""
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def read_epochs(path: str) -> List[Dict[str, float]]:
  """The CSVLogger's per-epoch rows (across restarts), one per epoch in epoch order.

  A run that restarts after an epoch's CSV row but before its backup trains that epoch again
  (two rows: the last counts); one that stops between the backup and the row leaves a gap.
  """
  if not os.path.exists(path):
    return []
  with open(path) as f:
    rows = [{k: float(v) for k, v in row.items() if v not in (None, "")}
            for row in csv.DictReader(f)]
  by_epoch = {int(row["epoch"]): row for row in rows if "epoch" in row}
  return [by_epoch[epoch] for epoch in sorted(by_epoch)]


def read_history(path: str) -> Dict[str, List[float]]:
  """The per-epoch log as {column: values} (`read_epochs`); a value missing in a row is skipped."""
  rows = read_epochs(path)
  keys = dict.fromkeys(k for row in rows for k in row)
  return {key: [row[key] for row in rows if key in row] for key in keys}


def epochs_done(path: str) -> int:
  """How many epochs the run has finished: the last epoch's number + 1 (gaps included)."""
  rows = read_epochs(path)
  return int(rows[-1]["epoch"]) + 1 if rows else 0


def write_predictions(path: str, names, labels, probabilities) -> None:
  """One CSV row per evaluated image: filename, label, fracture probability."""
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["filename", "label", "fracture_probability"])
    writer.writerows((n, int(y), f"{p:.6f}") for n, y, p in zip(names, labels, probabilities))
