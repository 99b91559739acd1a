"""Audit benchmark: the duplicate finder against perceptual hashing, on planted duplicates.

On a Kaggle-layout tree with transformed copies planted across splits
(`fake_download DIR --leak N`, ground truth in leaks.json), in one run:
- recall of the planted pairs per kind of transformation, and the precision of the grouped pairs
  (a pair is right when both files come from one radiograph), for bonefrac's finder and for
  perceptual hashes as CleanVision and imagededup use them: imagehash's pHash and wHash (8x8,
  64 bits), grouping hashes within imagededup's default Hamming distance of 10 of each other, and
  identical hashes as CleanVision's near-duplicate check does;
- the time of each against one parallel decode pass of the same files.
Needs the `bench` extra (imagehash).
"""

import itertools
import json
import time
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np
from PIL import Image

from bonefrac_tfds.bone_fracture import duplicates, image_files, leak, parallel

HAMMING_THRESHOLD = 10  # imagededup's default for its PHash


def _hash_groups(greys, method: str, threshold: int) -> List[List[int]]:
  import imagehash  # the bench extra
  function = {"phash": imagehash.phash, "whash": imagehash.whash}[method]
  bits = np.stack([function(Image.fromarray(g)).hash.reshape(-1) for g in greys])
  packed = np.packbits(bits, axis=1)
  pairs = []
  for i in range(len(packed)):  # all pairs: a hash is 8 bytes, cheap to compare
    distances = np.unpackbits(packed[i] ^ packed[i + 1:], axis=1).sum(axis=1)
    pairs += [(i, i + 1 + int(j)) for j in np.flatnonzero(distances <= threshold)]
  return duplicates.connected_groups(len(greys), pairs)


def score(groups: Sequence[Sequence[int]], names: Sequence[str], planted: Sequence[Dict]) -> Dict:
  """Recall of the planted pairs per kind, and the precision of the pairs within groups."""
  index = {name: i for i, name in enumerate(names)}
  group_of = {i: g for g, members in enumerate(groups) for i in members}
  origin = {name: name for name in names}
  origin.update({p["copy"]: p["source"] for p in planted})
  recall: Dict[str, List[bool]] = {}
  for p in planted:
    a, b = index[p["source"]], index[p["copy"]]
    recall.setdefault(p["kind"], []).append(group_of.get(a, -1) == group_of.get(b, -2))
  pairs = [origin[names[a]] == origin[names[b]] for g in groups for a, b in itertools.combinations(g, 2)]
  found = [x for kind, hits in recall.items() for x in hits]
  single = [x for kind, hits in recall.items() if kind != "combo" for x in hits]
  return {"recall": float(np.mean(found)), "recall_single_kinds": float(np.mean(single)),
          "pair_precision": float(np.mean(pairs)) if pairs else 1.0, "pairs": len(pairs),
          "recall_per_kind": {kind: f"{sum(hits)}/{len(hits)}" for kind, hits in recall.items()}}


def bench_audit(data) -> Dict:
  """The figures above for the tree at `data` (any folder holding leaks.json below it)."""
  manifest = next(Path(data).rglob(leak.MANIFEST), None)
  if manifest is None:
    raise ValueError(f"{data} holds no {leak.MANIFEST}: make the tree with fake_download --leak N")
  root = manifest.parent
  planted = json.loads(manifest.read_text())
  files = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
  names = [f.relative_to(root).as_posix() for f in files]

  def decode(path):
    return image_files.decode_grey(path.read_bytes())[0]

  start = time.perf_counter()
  greys = list(parallel.ordered_map(decode, files))
  decode_s = time.perf_counter() - start
  start = time.perf_counter()
  signatures = list(parallel.ordered_map(lambda f: duplicates.signature(decode(f)), files))
  ours_groups = duplicates.find_groups(signatures)
  ours_s = time.perf_counter() - start
  result = {"images": len(files), "planted_pairs": len(planted), "decode_pass_s": decode_s,
            "bonefrac_s": ours_s, "bonefrac_over_decode": ours_s / decode_s,
            "bonefrac": score(ours_groups, names, planted)}
  for method in ("phash", "whash"):
    for threshold, label in ((HAMMING_THRESHOLD, "imagededup"), (0, "cleanvision")):
      start = time.perf_counter()
      groups = _hash_groups(greys, method, threshold)
      seconds = time.perf_counter() - start
      result[f"{method}_{label}"] = {**score(groups, names, planted), "seconds": seconds}
  return result
