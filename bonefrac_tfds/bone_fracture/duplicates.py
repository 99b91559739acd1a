"""Finds duplicated radiographs: one image rotated, flipped, cropped, rescaled, re-toned or re-encoded.

Three steps (reasons and measurements: BUILD_NOTES.md, "The duplicate finder"):
1. a signature per image, from its grey pixels scaled to FEATURE_SIDE: histogram-equalised (any
   monotonic change of brightness, contrast or gamma is undone), SIFT keypoints of it and of its
   mirror image (SIFT is rotation- and scale-invariant but not flip-invariant), and the
   equalised picture itself; identical pixels also share a digest;
2. candidates from approximate nearest neighbours of every keypoint descriptor among all the
   images' descriptors, as they are and mirrored (FLANN k-d trees, searched on all cores;
   sub-quadratic), by votes per image;
3. verification of each candidate pair: a similarity transform (rotation, scale, shift) from
   matched keypoints with RANSAC, then the rank correlation of the two equalised, blurred
   pictures over their overlap once aligned. Look-alike radiographs (two forearms in one pose)
   can share a few aligned keypoints, but not the picture.
Groups are the connected components of the verified pairs.
"""

import dataclasses
import hashlib
from typing import Callable, Dict, List, Optional, Sequence, Set, Tuple

import cv2
import numpy as np

from bonefrac_tfds.bone_fracture import parallel

FEATURE_SIDE = 160  # px of the longer side the signature is computed at (224: 2x the time)
N_FEATURES = 300  # SIFT keypoints, at most
SIFT_CONTRAST = 0.01  # SIFT's contrast threshold: low, for enough keypoints at 160 px
INDEX_DIMS = 32  # descriptors are projected to this many dimensions for the neighbour search
NEIGHBOURS, MIN_VOTES, TOP_CANDIDATES = 3, 3, 5
FLANN_CHECKS = 16  # leaves the approximate search visits: speed against missed neighbours
FLANN_TREES = 4  # randomised k-d trees (1: 0.7x the search time, a few more missed pairs)
MIN_INLIERS = 4  # matched keypoints consistent with one similarity transform
MIN_OVERLAP = 0.3  # of the smaller picture, once aligned
MIN_CORRELATION = 0.97  # rank correlation of the aligned pictures (duplicates measured >= 0.98)


@dataclasses.dataclass
class Signature:
  """What the finder keeps of one image (about 100 kB, whatever the image's size)."""

  points: Tuple[np.ndarray, np.ndarray]  # keypoint positions [n, 2]: as is, mirrored
  descriptors: Tuple[np.ndarray, np.ndarray]  # RootSIFT [n, 128] uint8: as is, mirrored
  picture: np.ndarray  # uint8 equalised grey at FEATURE_SIDE
  valid: np.ndarray  # bool: not the black fill of a rotation
  digest: str  # of the grey pixels: identical images


@dataclasses.dataclass(frozen=True)
class Match:
  """A verified pair: keypoints in agreement, the aligned pictures' correlation and overlap."""

  inliers: int
  correlation: float
  overlap: float


def signature(grey: np.ndarray) -> Signature:
  """The signature of a uint8 grey [h, w] image."""
  digest = hashlib.sha1(np.ascontiguousarray(grey).tobytes() + bytes(str(grey.shape), "ascii"))
  height, width = grey.shape
  scale = FEATURE_SIDE / max(height, width)
  size = (max(8, round(width * scale)), max(8, round(height * scale)))
  small = cv2.resize(grey, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
  picture = cv2.equalizeHist(small)
  valid = small > 3
  # Not on the edge of a rotation's black fill: its corners would take the keypoints.
  inside = cv2.erode(valid.astype(np.uint8), np.ones((7, 7), np.uint8))
  sift = cv2.SIFT_create(nfeatures=N_FEATURES, contrastThreshold=SIFT_CONTRAST)
  keypoints, found = sift.detectAndCompute(picture, inside)
  points = np.array([k.pt for k in keypoints], np.float32).reshape(-1, 2)
  descriptors = _root_sift(found)
  mirrored_points = np.stack([picture.shape[1] - 1 - points[:, 0], points[:, 1]], axis=1)
  return Signature((points, mirrored_points), (descriptors, _mirrored(descriptors)), picture,
                   valid, digest.hexdigest())


def _mirrored(descriptors: np.ndarray) -> np.ndarray:
  """The SIFT descriptors of the mirror image at the mirrored keypoints, without a second
  detection: in a keypoint's own frame a left-right mirror reverses the 4 rows of cells and
  negates the 8 orientation bins (measured: 0.12 relative difference from recomputing them,
  against 0.75-1.5 for the other reorderings)."""
  cells = descriptors.reshape(-1, 4, 4, 8)[:, ::-1][..., (-np.arange(8)) % 8]
  return np.ascontiguousarray(cells.reshape(-1, 128))


def _root_sift(found: Optional[np.ndarray]) -> np.ndarray:
  """RootSIFT (Arandjelovic and Zisserman): square roots of L1-normalised SIFT, as uint8."""
  if found is None:
    return np.zeros((0, 128), np.uint8)
  normalised = found / np.maximum(found.sum(axis=1, keepdims=True), 1e-7)
  return np.clip(np.rint(np.sqrt(normalised) * 255.0), 0, 255).astype(np.uint8)


def candidate_pairs(signatures: Sequence[Signature]) -> Set[Tuple[int, int]]:
  """Pairs (i < j) worth verifying: images whose keypoints are among each other's nearest
  neighbours MIN_VOTES times or more (each image's TOP_CANDIDATES best)."""
  # The index holds every image as is and mirrored, and is asked with the images as they are:
  # a mirrored copy finds its source's mirrored side. Half the questions of asking both sides,
  # and an image's own mirrored keypoints take the neighbour places of symmetric look-alikes.
  sides = [(i, d) for i, s in enumerate(signatures) for d in s.descriptors if len(d)]
  if not sides:
    return set()
  owners = np.concatenate([np.full(len(d), i) for i, d in sides])
  projection, centre = _projection([d for _, d in sides])
  # Projected image by image: the float32 128-d descriptors of all images are never held.
  index = cv2.flann_Index(np.concatenate([(d - centre) @ projection for _, d in sides]),
                          dict(algorithm=1, trees=FLANN_TREES))
  queries = [(i, s.descriptors[0]) for i, s in enumerate(signatures) if len(s.descriptors[0])]
  asking = np.concatenate([np.full(len(d), i) for i, d in queries])
  chunks = [np.concatenate([d for _, d in queries[k:k + 256]]) for k in range(0, len(queries), 256)]
  k = min(NEIGHBOURS, len(owners))

  def search(chunk):  # FLANN's search is read-only and releases the GIL: a chunk a thread
    return index.knnSearch((chunk - centre) @ projection, k, params=dict(checks=FLANN_CHECKS))[0]

  found = owners[np.concatenate(list(parallel.ordered_map(search, chunks)))]  # [queries, k]
  return _most_voted(asking, found, len(signatures))


def _most_voted(asking: np.ndarray, found: np.ndarray, n: int) -> Set[Tuple[int, int]]:
  """Each asking image's TOP_CANDIDATES most found others with MIN_VOTES or more, a vote
  being one query keypoint with the other among its neighbours."""
  found = np.sort(found, axis=1)
  first = np.ones(found.shape, bool)
  first[:, 1:] = found[:, 1:] != found[:, :-1]  # an image counts once per keypoint
  keep = first & (found != asking[:, None])
  pair_keys, votes = np.unique(np.repeat(asking, found.shape[1])[keep.ravel()] * n
                               + found.ravel()[keep.ravel()], return_counts=True)
  i, j = pair_keys // n, pair_keys % n
  order = np.lexsort((j, -votes, i))  # per image, most votes first, ties by index
  i, j, votes = i[order], j[order], votes[order]
  rank = np.arange(len(i)) - np.searchsorted(i, i)
  chosen = (rank < TOP_CANDIDATES) & (votes >= MIN_VOTES)
  return {(int(min(a, b)), int(max(a, b))) for a, b in zip(i[chosen], j[chosen])}


def _projection(descriptors: Sequence[np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
  """(The INDEX_DIMS principal directions [128, INDEX_DIMS], the mean) of a sample of the
  descriptors: a smaller index."""
  rows = np.cumsum([0] + [len(d) for d in descriptors])
  chosen = np.sort(np.random.default_rng(0).permutation(rows[-1])[:20_000])
  owner = np.searchsorted(rows, chosen, side="right") - 1
  sample = np.stack([descriptors[o][r - rows[o]] for o, r in zip(owner, chosen)]).astype(np.float32)
  centre = sample.mean(axis=0)
  _, _, directions = np.linalg.svd(sample - centre, full_matrices=False)
  return np.ascontiguousarray(directions[:INDEX_DIMS].T), centre.astype(np.float32)


def verify(a: Signature, b: Signature) -> Optional[Match]:
  """The pair's Match if `a`, as is or mirrored, is `b` once aligned; else None."""
  if a.digest == b.digest:
    return Match(inliers=0, correlation=1.0, overlap=1.0)
  best = None
  for mirrored in (False, True):
    transform, inliers = _align(a, b, mirrored)
    if transform is None or inliers < MIN_INLIERS:
      continue
    correlation, overlap = _aligned_correlation(a, b, transform, mirrored)
    if overlap >= MIN_OVERLAP and correlation >= MIN_CORRELATION:
      match = Match(inliers, correlation, overlap)
      best = match if best is None or match.correlation > best.correlation else best
  return best


def _align(a: Signature, b: Signature, mirrored: bool):
  """(2x3 similarity from a's picture, mirrored if asked, to b's; RANSAC inliers)."""
  side = int(mirrored)
  points_a, descriptors_a = a.points[side], a.descriptors[side].astype(np.float32)
  points_b, descriptors_b = b.points[0], b.descriptors[0].astype(np.float32)
  if len(descriptors_a) < 3 or len(descriptors_b) < 3:
    return None, 0
  knn = cv2.BFMatcher(cv2.NORM_L2).knnMatch(descriptors_a, descriptors_b, k=2)
  good = [m[0] for m in knn if len(m) == 2 and m[0].distance < 0.8 * m[1].distance]  # Lowe's ratio
  if len(good) < 3:
    return None, 0
  transform, inliers = cv2.estimateAffinePartial2D(
      points_a[[m.queryIdx for m in good]], points_b[[m.trainIdx for m in good]],
      method=cv2.RANSAC, ransacReprojThreshold=4.0, maxIters=2000)
  return (transform, int(inliers.sum())) if transform is not None else (None, 0)


def _aligned_correlation(a: Signature, b: Signature, transform, mirrored: bool):
  """(Spearman correlation of the blurred pictures over their common valid area, that area as
  a share of the smaller picture)."""
  picture, valid = a.picture, a.valid.astype(np.uint8)
  if mirrored:
    picture, valid = picture[:, ::-1], valid[:, ::-1]
  height, width = b.picture.shape
  warped = cv2.warpAffine(np.ascontiguousarray(picture), transform, (width, height),
                          flags=cv2.INTER_LINEAR)
  warped_valid = cv2.warpAffine(np.ascontiguousarray(valid), transform, (width, height),
                                flags=cv2.INTER_NEAREST) > 0
  # Away from the borders, where interpolation and fill mix in.
  common = cv2.erode((warped_valid & b.valid).astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
  overlap = common.sum() / max(1, min(int(warped_valid.sum()), int(b.valid.sum())))
  if common.sum() < 500:
    return 0.0, float(overlap)
  x = cv2.GaussianBlur(warped, (0, 0), 2.0)[common]
  y = cv2.GaussianBlur(b.picture, (0, 0), 2.0)[common]
  return _spearman(x, y), float(overlap)


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
  """Rank correlation of two uint8 samples, tied values sharing their average rank (blurred
  8-bit pictures tie a lot, clipped ones most). Ranks by counting, not sorting: 256 values."""
  def ranks(values):
    counts = np.bincount(values, minlength=256)
    below = np.cumsum(counts) - counts
    return (below + (counts - 1) / 2.0)[values]
  rx, ry = ranks(x), ranks(y)
  if rx.std() == 0 or ry.std() == 0:
    return 0.0
  return float(np.corrcoef(rx, ry)[0, 1])


def find_groups(signatures: Sequence[Signature],
                progress: Optional[Callable[[int, int], None]] = None) -> List[List[int]]:
  """Groups of 2 or more indices of the same radiograph, each sorted, smallest first.

  `progress(done, total)` is called as candidate pairs are verified.
  """
  pairs = candidate_pairs(signatures)
  by_digest: Dict[str, List[int]] = {}
  for i, sig in enumerate(signatures):
    by_digest.setdefault(sig.digest, []).append(i)
  pairs |= {(group[0], j) for group in by_digest.values() for j in group[1:]}
  verified = []
  for done, (i, j) in enumerate(sorted(pairs), start=1):
    if verify(signatures[i], signatures[j]) is not None:
      verified.append((i, j))
    if progress:
      progress(done, len(pairs))
  return connected_groups(len(signatures), verified)


def connected_groups(n: int, pairs) -> List[List[int]]:
  """The connected components of 2 or more of `n` items joined by `pairs`, each sorted,
  smallest first."""
  parent = list(range(n))

  def root(i):
    while parent[i] != i:
      parent[i] = parent[parent[i]]
      i = parent[i]
    return i

  for i, j in pairs:
    parent[root(j)] = root(i)
  groups: Dict[int, List[int]] = {}
  for i in range(n):
    groups.setdefault(root(i), []).append(i)
  return sorted((g for g in groups.values() if len(g) > 1), key=lambda g: g[0])
