"""A training run's folder: choosing it, where each output goes, resuming in it, its history.

A finished run is never emptied implicitly: by default each run gets a folder of its own
(`runs/<model>-<date>-<time>`, with `runs/latest` pointing to it), and a named --workdir that
holds an earlier run is refused unless --overwrite says to replace it.
"""

import csv
import json
import os
import shutil
import tempfile
import time
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

  def outputs(self) -> List[str]:
    """Everything a run writes here (what --overwrite clears)."""
    plots = [os.path.join(self.workdir, name) for name in PLOTS]
    return [self.history, self.best, self.best_epoch, self.report, self.phase1, self.settings,
            self.model, self.export, self.logs, self.backup, self.backup_fine_tune,
            os.path.join(self.workdir, "model_card.md"), *plots,
            *[os.path.join(self.workdir, f"predictions_{split}.csv") for split in ("test", "validation")]]


RUNS = "runs"  # where runs get folders of their own
LATEST = "latest"  # runs/latest: the folder of the run started last
PLOTS = ("confusion_matrix.png", "roc_curve.png", "pr_curve.png", "training_curves.png",
         "reliability_diagram.png")


def new_run_dir(kind: str, root: str = RUNS) -> str:
  """A folder of its own for a run started now: `root/<kind>-<YYYYmmdd-HHMMSS>` (-2, -3, ...
  when two start within a second)."""
  stamp = time.strftime("%Y%m%d-%H%M%S")
  path, n = os.path.join(root, f"{kind}-{stamp}"), 2
  while os.path.exists(path):
    path, n = os.path.join(root, f"{kind}-{stamp}-{n}"), n + 1
  return path


def latest_run(root: str = RUNS) -> Optional[str]:
  """The folder `root/latest` points to, if there is one."""
  link = os.path.join(root, LATEST)
  return os.path.join(root, os.readlink(link)) if os.path.islink(link) else None


def point_latest(run_dir: str) -> None:
  """Points `latest`, beside `run_dir`, to it (a relative link, replaced in one step); where
  links cannot be made, there is no `latest` and nothing else changes."""
  link = os.path.join(os.path.dirname(run_dir), LATEST)
  temporary = f"{link}.{uuid.uuid4().hex}"
  try:
    os.symlink(os.path.basename(os.path.normpath(run_dir)), temporary)
    os.replace(temporary, link)
  except OSError:
    if os.path.lexists(temporary):
      os.remove(temporary)


def interrupted(paths: Paths) -> bool:
  """Whether the folder holds a run stopped during training (its backup is there)."""
  return any(os.path.exists(p) for p in (paths.backup, paths.backup_fine_tune, paths.phase1))


def earlier_run(paths: Paths) -> Optional[str]:
  """What shows that the folder holds an earlier run's results (a file name), or None."""
  for path in (paths.report, paths.model, paths.history):
    if os.path.exists(path):
      return os.path.basename(path)
  return None


def resumable(folder: str, settings: Dict) -> bool:
  """Whether `folder` holds an interrupted run started with `settings`."""
  paths = Paths(folder)
  return interrupted(paths) and os.path.exists(paths.settings) and not _changes(paths.settings, settings)


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
  """An interrupted run resumes if it had the same `settings` (else UserError). An earlier
  run's results are never replaced implicitly (UserError); `overwrite` clears them and says
  so. The settings are kept in the workdir."""
  stopped, earlier = interrupted(paths), earlier_run(paths)
  if stopped and not overwrite:
    check_settings(paths.settings, settings, "an interrupted run")
    print(f"Resuming the interrupted run in {paths.workdir}", flush=True)
    return
  if earlier and not overwrite:
    raise UserError(f"--workdir={paths.workdir} holds an earlier run (its {earlier}); choose "
                    "another --workdir (or none: each run gets a folder of its own under runs/), "
                    "or pass --overwrite to replace it")
  if stopped or earlier:
    print(f"--overwrite: replacing the earlier run in {paths.workdir}", flush=True)
  remove(paths.outputs())
  write_settings(paths.settings, settings)


def remove(paths: List[str]) -> None:
  for path in paths:
    if os.path.isdir(path) and not os.path.islink(path):
      shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
      os.remove(path)


def check_settings(path: str, settings: Dict, holds: str) -> None:
  """Refuses, with one line, to continue what the folder of `path` holds (`holds`: "a search",
  "an interrupted run") when the settings saved at `path` differ from `settings`."""
  if not os.path.exists(path):
    return
  changed = _changes(path, settings)
  if changed:
    what = ", ".join(f"{k}={old} (now {new})" for k, (old, new) in sorted(changed.items()))
    raise UserError(f"--workdir={os.path.dirname(path)} holds {holds} with {what}; pass "
                    "--overwrite to start afresh there, or choose another --workdir")


def _changes(path: str, settings: Dict) -> Dict:
  """{setting: (saved, now)} for each of `settings` that differs from those saved at `path`."""
  with open(path) as f:
    before = json.load(f)
  return {k: (before.get(k), v) for k, v in _jsonable(settings).items() if before.get(k) != v}


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
