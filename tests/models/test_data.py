"""Dataset readers (VOC on the shared data, KITTI on files the test writes) and the fixed split."""
from __future__ import annotations

import collections
import json
import xml.etree.ElementTree as ET

import cv2
import numpy as np
import pytest

from models.data import canonical_class, class_counts, is_validation, read_dataset, read_kitti, read_voc, split
from tests.conftest import REPO


def _xml_counts(root):
    """Images and objects per VOC class name, counted straight from the XML files (independent of read_voc)."""
    n_images, names = 0, collections.Counter()
    for xml in (root / "annotations").glob("*.xml"):
        n_images += 1
        names.update(o.findtext("name") for o in ET.parse(xml).getroot().iter("object"))
    return n_images, names


def test_voc_reads_the_shared_dataset(face_mask_dir):
    samples = read_voc(face_mask_dir)
    n_xml, names = _xml_counts(face_mask_dir)
    assert len(samples) == n_xml
    # the data as of ../shared/data/README.md "Changed since the first release": 846 images (848 - the two
    # near-duplicates listed in CHANGES.json), counted from the XML on 2026-12-01: with_mask 3,170,
    # without_mask 715, mask_weared_incorrect 121 (4,006 boxes)
    assert len(samples) == 846
    changes = json.loads((face_mask_dir / "CHANGES.json").read_text())
    removed = set(changes["removed_near_duplicates_of_heldout_images"])
    assert removed and not removed & {s.stem for s in samples}
    counts = class_counts(samples)
    assert (counts["mask"], counts["no_mask"], counts["mask_incorrect"]) == \
        (names["with_mask"], names["without_mask"], names["mask_weared_incorrect"]) == (3170, 715, 121)
    for s in samples[:50]:
        assert s.image.exists() and s.boxes.dtype == np.float32
        assert (s.boxes[:, 2] > s.boxes[:, 0]).all() and (s.boxes[:, 3] > s.boxes[:, 1]).all()


def test_split_is_fixed_by_file_name(face_mask_dir):
    samples = read_voc(face_mask_dir)
    train, val = split(samples)
    # 846 = 744 + 102: the two removed photos were training photos, so the name-hash validation split is the one
    # every released model was validated on (their split.json files: 746 / 102 on the 848-image set)
    assert (len(train), len(val)) == (744, 102)
    released = json.loads((REPO / "models" / "released" / "detectnet_v2_r18" / "split.json").read_text())
    assert sorted(released["val"]) == sorted(s.stem for s in val)
    assert {s.stem for s in train}.isdisjoint({s.stem for s in val})
    # independent of order and of which other files are present
    train2, val2 = split(list(reversed(samples))[:400])
    assert {s.stem for s in val2} <= {s.stem for s in val}
    assert is_validation("maksssksksss0") == is_validation("maksssksksss0")


def test_kitti_reader_and_class_mapping(tmp_path):
    (tmp_path / "images").mkdir(); (tmp_path / "labels").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.jpg"), np.zeros((100, 200, 3), np.uint8))
    (tmp_path / "labels" / "a.txt").write_text(
        "with_mask 0.0 0 0.0 10 20 40 60 0 0 0 0 0 0 0\n"
        "No-Mask 0.0 0 0.0 50.5 20 90 70 0 0 0 0 0 0 0\n"
        "\n"
        "mask_weared_incorrect 0.0 0 0.0 100 20 100 70 0 0 0 0 0 0 0\n")  # zero width: dropped
    samples = read_dataset(tmp_path)
    assert len(samples) == 1
    s = samples[0]
    assert s.labels.tolist() == [0, 1]
    assert np.allclose(s.boxes, [[10, 20, 40, 60], [50.5, 20, 90, 70]])
    (tmp_path / "labels" / "a.txt").write_text("helmet 0 0 0 1 1 5 5\n")
    with pytest.raises(KeyError, match="helmet"):
        read_kitti(tmp_path)


def test_canonical_names():
    assert [canonical_class(n) for n in ("with_mask", "without_mask", "mask_weared_incorrect")] == [0, 1, 2]
