"""Duplicate groups of a download's images, how much its splits leak, and a re-split by group.

The kaggle configs give every image the id of its duplicate group (`duplicates.find_groups`;
a radiograph without copies is a group of its own), so that users can split or cross-validate
by group. `kaggle_grouped` re-splits the pooled images with `resplit`: no group in two splits,
each split close to the download's size and label mix, seeded.
"""

from typing import Dict, List, Mapping, Sequence, Tuple

import numpy as np

from bonefrac_tfds.bone_fracture import duplicates, image_files

SPLITS = ("train", "validation", "test")
SPLIT_PAIRS = (("train", "test"), ("train", "validation"), ("validation", "test"))


def group_ids(keys: Sequence[str], signatures: Sequence[duplicates.Signature]) -> Dict[str, int]:
  """{key: group id} for images with these `duplicates.signature`s, in `keys`' order.

  Ids are deterministic: a group's id is the position, among the sorted keys, of its first key.
  """
  order = {key: i for i, key in enumerate(sorted(keys))}
  ids = {key: order[key] for key in keys}
  for group in duplicates.find_groups(signatures):
    first = min(order[keys[i]] for i in group)
    for i in group:
      ids[keys[i]] = first
  return ids


def signature_of_stored(stored: bytes) -> duplicates.Signature:
  """The signature of the bytes the dataset stores (JPEG or PNG)."""
  return duplicates.signature(image_files.decode_grey(stored)[0])


def leakage(splits: Mapping[str, str], labels: Mapping[str, int], ids: Mapping[str, int]) -> Dict:
  """How much each later split leaks from an earlier one: {key: split}, {key: label}, {key: id}
  -> groups spanning splits, per split pair the later split's images with a copy in the
  earlier one, and groups whose labels disagree."""
  members: Dict[int, List[str]] = {}
  for key, group in ids.items():
    members.setdefault(group, []).append(key)
  groups = [keys for keys in members.values() if len(keys) > 1]
  per_split = {s: sum(v == s for v in splits.values()) for s in SPLITS}
  pairs = {}
  for earlier, later in SPLIT_PAIRS:
    leaking = sum(sum(splits[k] == later for k in g) for g in groups
                  if any(splits[k] == earlier for k in g))
    pairs[f"{earlier}-{later}"] = {
        "images": leaking, "of": per_split[later],
        "share": round(leaking / per_split[later], 4) if per_split[later] else None}
  return {"images": len(ids), "images_per_split": per_split, "groups": len(groups),
          "images_in_groups": sum(len(g) for g in groups),
          "groups_spanning_splits": sum(len({splits[k] for k in g}) > 1 for g in groups),
          "later_split_images_with_a_duplicate_in_the_earlier": pairs,
          "groups_with_disagreeing_labels": sum(len({labels[k] for k in g}) > 1 for g in groups)}


def resplit(splits: Mapping[str, str], labels: Mapping[str, int], ids: Mapping[str, int],
            seed: int = 0) -> Tuple[Dict[str, str], Dict]:
  """({key: new split}, a summary): whole groups to splits, largest groups first, each to the
  split with the most room left for the group's labels (relative to the download's counts of
  each label in each split), in a seeded order among groups of one size."""
  members: Dict[int, List[str]] = {}
  for key in sorted(ids):
    members.setdefault(ids[key], []).append(key)
  names = [s for s in SPLITS if any(v == s for v in splits.values())]
  target = {s: np.array([sum(splits[k] == s and labels[k] == c for k in ids) for c in (0, 1)],
                        float) for s in names}
  left = {s: target[s].copy() for s in names}
  groups = [members[g] for g in np.random.default_rng([seed, 15]).permutation(sorted(members))]
  groups.sort(key=len, reverse=True)  # stable: the seeded order among groups of one size
  new = {}
  for keys in groups:
    count = np.array([sum(labels[k] == c for k in keys) for c in (0, 1)], float)
    room = [float((count * left[s] / np.maximum(target[s], 1.0)).sum()) for s in names]
    chosen = names[int(np.argmax(room))]
    left[chosen] -= count
    new.update({k: chosen for k in keys})
  moved = [k for k in ids if new[k] != splits[k]]
  summary = {"seed": seed, "groups": len(members),
             "groups_moved": len({ids[k] for k in moved}), "images_moved": len(moved),
             "download_split_sizes": {s: int(target[s].sum()) for s in names},
             "split_sizes": {s: sum(v == s for v in new.values()) for s in names}}
  return new, summary
