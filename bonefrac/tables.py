"""Tables of result rows (the model comparison, the tuner's trials, predictions): Markdown, CSV."""

import csv
from typing import Dict, Optional, Sequence, Tuple


def markdown_table(rows: Sequence[Dict], columns: Optional[Sequence[Tuple[str, str]]] = None) -> str:
  """`rows` as a Markdown table; `columns` are (key, title) pairs, by default every key."""
  if not rows:
    return "(no rows)\n"
  columns = columns or [(key, key) for key in rows[0]]
  lines = ["| " + " | ".join(title for _, title in columns) + " |", "|" + " --- |" * len(columns)]
  for row in rows:
    lines.append("| " + " | ".join(format_cell(row.get(key)) for key, _ in columns) + " |")
  return "\n".join(lines) + "\n"


def format_cell(value) -> str:
  """Floats to 3 decimals (2 significant digits when tiny, 1 decimal when large), lists joined."""
  if value is None:
    return "-"
  if isinstance(value, (list, tuple)):
    return ",".join(map(str, value))
  if isinstance(value, float):
    if value and abs(value) < 0.01:  # learning rates
      return f"{value:.2g}"
    return f"{value:.3f}" if abs(value) < 10 else f"{value:,.1f}"
  return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def write_csv(rows: Sequence[Dict], path: str, empty_header: Sequence[str] = ()) -> None:
  """`rows` as CSV with their keys as the header (`empty_header` when there are none); lists are
  joined with commas, None left empty."""
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else list(empty_header))
    writer.writeheader()
    writer.writerows({k: ",".join(map(str, v)) if isinstance(v, (list, tuple)) else v
                      for k, v in row.items()} for row in rows)
