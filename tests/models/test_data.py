"""Dataset readers (VOC on the shared data, KITTI on files the test writes) and the fixed split."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from models.data import canonical_class, class_counts, is_validation, read_dataset, read_kitti, read_voc, split


def test_voc_reads_the_shared_dataset(face_mask_dir):
    samples = read_voc(face_mask_dir)
    assert len(samples) == 848
    counts = class_counts(samples)
    # README: with_mask 3,184, without_mask 716, mask_weared_incorrect 121 (a few degenerate boxes dropped)
    assert 3170 <= counts["mask"] <= 3184 and 710 <= counts["no_mask"] <= 716 and 118 <= counts["mask_incorrect"] <= 121
    for s in samples[:50]:
        assert s.image.exists() and s.boxes.dtype == np.float32
        assert (s.boxes[:, 2] > s.boxes[:, 0]).all() and (s.boxes[:, 3] > s.boxes[:, 1]).all()


def test_split_is_fixed_by_file_name(face_mask_dir):
    samples = read_voc(face_mask_dir)
    train, val = split(samples)
    assert (len(train), len(val)) == (746, 102)
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
