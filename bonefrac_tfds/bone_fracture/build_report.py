"""The machine-readable account of a build: examples kept, files skipped and why."""

import collections
import json
from typing import Dict, List, Tuple

from absl import logging
from etils import epath

REPORT_NAME = "build_report.json"


class BuildReport:
  """Collects per-split counts and skipped files, logs them and writes them beside the data."""

  def __init__(self, config_name: str, ignored: List[Tuple[str, str]] = ()):
    self._report = {
        "config": config_name,
        "splits": {},
        "ignored": [{"file": f, "reason": why} for f, why in ignored],
    }

  def add_split(self, split: str, kept: Dict[int, int], skipped: List[dict]) -> None:
    """Records one finished split: `kept` counts per label, `skipped` {file, reason, detail}."""
    reasons = collections.Counter(s["reason"] for s in skipped)
    self._report["splits"][split] = {
        "kept": sum(kept.values()),
        "kept_per_label": {str(k): v for k, v in sorted(kept.items())},
        "skipped": len(skipped),
        "skipped_per_reason": dict(sorted(reasons.items())),
        "skipped_files": skipped,
    }
    logging.info("bone_fracture/%s %s: kept %d, skipped %d %s", self._report["config"], split,
                 sum(kept.values()), len(skipped), dict(sorted(reasons.items())) or "")

  def add(self, section: str, value) -> None:
    """Adds a section of its own (the kaggle configs' duplicates and re-split)."""
    self._report[section] = value

  def write(self, data_dir: epath.PathLike) -> epath.Path:
    path = epath.Path(data_dir) / REPORT_NAME
    path.write_text(json.dumps(self._report, indent=2) + "\n")
    return path


def read(data_dir: epath.PathLike) -> dict:
  """The report of a prepared dataset (`builder.data_dir`)."""
  return json.loads((epath.Path(data_dir) / REPORT_NAME).read_text())
