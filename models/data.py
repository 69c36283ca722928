"""Dataset readers: Pascal VOC and KITTI (NVIDIA TAO) label folders, class mapping, split.

Every reader returns :class:`Sample` records with boxes in image pixels and the
canonical class ids of :data:`edge.decoders.CLASS_NAMES`.
"""
from __future__ import annotations

import hashlib
import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np

from edge.decoders import CLASS_NAMES

#: Source label -> canonical class name. Lower-cased, spaces and dashes as underscores.
CLASS_MAP: Dict[str, str] = {
    "with_mask": "mask", "mask": "mask", "masked": "mask", "face_mask": "mask",
    "without_mask": "no_mask", "no_mask": "no_mask", "nomask": "no_mask", "unmasked": "no_mask", "no_mask_face": "no_mask",
    "mask_weared_incorrect": "mask_incorrect", "mask_worn_incorrectly": "mask_incorrect",
    "mask_incorrect": "mask_incorrect", "incorrect_mask": "mask_incorrect",
}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


@dataclass
class Sample:
    """One labelled image.

    Attributes:
        image: path to the image file.
        boxes: (N, 4) float32 xyxy in image px.
        labels: (N,) int64 canonical class ids.
    """

    image: Path
    boxes: np.ndarray
    labels: np.ndarray

    @property
    def stem(self) -> str:
        return self.image.stem


def canonical_class(name: str) -> int:
    """Map a source class name to a canonical id; raise ``KeyError`` naming the allowed names."""
    key = name.strip().lower().replace(" ", "_").replace("-", "_")
    if key not in CLASS_MAP:
        raise KeyError(f"unknown class {name!r}; known: {sorted(CLASS_MAP)}")
    return CLASS_NAMES.index(CLASS_MAP[key])


def _find_image(images_dir: Path, stem: str) -> Path:
    for suf in IMAGE_SUFFIXES:
        p = images_dir / (stem + suf)
        if p.exists():
            return p
    raise FileNotFoundError(f"no image for {stem!r} in {images_dir}")


def read_voc(root: Path) -> List[Sample]:
    """Read a Pascal VOC folder with ``annotations/*.xml`` (or ``Annotations/``) and ``images/`` (or ``JPEGImages/``).

    Boxes with zero or negative size are dropped; VOC's 1-based corners are kept as given.
    """
    root = Path(root)
    ann_dir = next((root / d for d in ("annotations", "Annotations") if (root / d).is_dir()), None)
    img_dir = next((root / d for d in ("images", "JPEGImages") if (root / d).is_dir()), None)
    if ann_dir is None or img_dir is None:
        raise FileNotFoundError(f"{root} has no annotations/ and images/ folders")
    samples = []
    for xml in sorted(ann_dir.glob("*.xml")):
        tree = ET.parse(xml).getroot()
        boxes, labels = [], []
        for obj in tree.iter("object"):
            bb = obj.find("bndbox")
            x1, y1, x2, y2 = (float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
            if x2 <= x1 or y2 <= y1:
                continue
            boxes.append((x1, y1, x2, y2))
            labels.append(canonical_class(obj.findtext("name")))
        samples.append(Sample(_find_image(img_dir, xml.stem), np.asarray(boxes, np.float32).reshape(-1, 4),
                              np.asarray(labels, np.int64)))
    return samples


def read_kitti(root: Path) -> List[Sample]:
    """Read a KITTI folder (``labels/*.txt`` + ``images/``), the format NVIDIA TAO DetectNet_v2 uses.

    Each line: ``class truncated occluded alpha x1 y1 x2 y2 h w l x y z ry`` (only class and bbox are used).
    """
    root = Path(root)
    lab_dir = next((root / d for d in ("labels", "label_2") if (root / d).is_dir()), None)
    img_dir = next((root / d for d in ("images", "image_2") if (root / d).is_dir()), None)
    if lab_dir is None or img_dir is None:
        raise FileNotFoundError(f"{root} has no labels/ and images/ folders")
    samples = []
    for txt in sorted(lab_dir.glob("*.txt")):
        boxes, labels = [], []
        for line_no, line in enumerate(txt.read_text().splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 8:
                raise ValueError(f"{txt}:{line_no}: KITTI line needs at least 8 fields, got {len(parts)}")
            x1, y1, x2, y2 = map(float, parts[4:8])
            if x2 <= x1 or y2 <= y1:
                continue
            boxes.append((x1, y1, x2, y2))
            labels.append(canonical_class(parts[0]))
        samples.append(Sample(_find_image(img_dir, txt.stem), np.asarray(boxes, np.float32).reshape(-1, 4),
                              np.asarray(labels, np.int64)))
    return samples


def read_dataset(root: Path) -> List[Sample]:
    """Read VOC or KITTI, whichever layout ``root`` has."""
    root = Path(root)
    if any((root / d).is_dir() for d in ("labels", "label_2")):
        return read_kitti(root)
    return read_voc(root)


def is_validation(stem: str, val_hex: str = "01") -> bool:
    """Fixed split by file name: validation when ``md5(stem)`` starts with a hex digit in ``val_hex``.

    ``"01"`` puts 2/16 = 12.5 % of the stems in validation, independent of order and
    of which files are present.
    """
    return hashlib.md5(stem.encode()).hexdigest()[0] in val_hex


def split(samples: Sequence[Sample], val_hex: str = "01") -> Tuple[List[Sample], List[Sample]]:
    """(train, val) by :func:`is_validation`."""
    train = [s for s in samples if not is_validation(s.stem, val_hex)]
    val = [s for s in samples if is_validation(s.stem, val_hex)]
    return train, val


def write_split(path: Path, train: Sequence[Sample], val: Sequence[Sample], val_hex: str) -> None:
    """Record the split (rule and stems) as JSON."""
    Path(path).write_text(json.dumps({
        "rule": f"validation when md5(file stem) starts with one of {list(val_hex)}",
        "train": sorted(s.stem for s in train), "val": sorted(s.stem for s in val)}, indent=1))


def class_counts(samples: Sequence[Sample]) -> Dict[str, int]:
    labels = np.concatenate([s.labels for s in samples]) if samples else np.zeros(0, np.int64)
    return {n: int((labels == i).sum()) for i, n in enumerate(CLASS_NAMES)}


def repeat_factors(samples: Sequence[Sample], threshold: float = 0.3, n_classes: int = 3) -> np.ndarray:
    """Repeat-factor sampling weights (Gupta et al., LVIS, CVPR 2019, sec. 3.2).

    For class ``c`` with ``f_c`` the fraction of images holding it, ``r_c = max(1, sqrt(t / f_c))``;
    an image's factor is the largest ``r_c`` of its classes. Images with rare classes (here
    ``no_mask`` and ``mask_incorrect``) are drawn more often; ``threshold`` 0 gives all ones.

    Returns:
        (len(samples),) float64, each >= 1.
    """
    n = max(1, len(samples))
    has = np.zeros((len(samples), n_classes), bool)
    for i, s in enumerate(samples):
        has[i, np.unique(np.asarray(s.labels, np.int64))] = True
    f = has.sum(0) / n
    r_c = np.where(f > 0, np.maximum(1.0, np.sqrt(threshold / np.maximum(f, 1e-12))), 1.0)
    return np.where(has, r_c, 1.0).max(axis=1) if len(has) else np.ones(0)


def half(samples: Sequence[Sample], which: str) -> List[Sample]:
    """One of two fixed halves of any set by file name: ``"a"`` when ``md5(stem)`` starts with a hex digit
    0-7, ``"b"`` otherwise (about half each). Used to choose on one half of ilc2021-dev and report on the
    other (``models.evaluation.decision``, ``models.evaluation.evaluate --split half-a``)."""
    if which not in ("a", "b"):
        raise ValueError(f"half must be 'a' or 'b', got {which!r}")
    return [s for s in samples if is_validation(s.stem, "01234567") == (which == "a")]


def select(samples: Sequence[Sample], name: str) -> List[Sample]:
    """``name`` in ``val`` / ``train`` (:func:`split`), ``all``, ``half-a`` / ``half-b`` (:func:`half`)."""
    if name == "all":
        return list(samples)
    if name in ("half-a", "half-b"):
        return half(samples, name[-1])
    tr, va = split(samples)
    if name not in ("val", "train"):
        raise ValueError(f"unknown split {name!r}; known: ['val', 'train', 'all', 'half-a', 'half-b']")
    return va if name == "val" else tr
