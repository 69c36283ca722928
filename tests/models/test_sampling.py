"""Repeat-factor sampling (LVIS) draws the rare-class photos more often."""
from __future__ import annotations

import numpy as np

from models.data import Sample, read_voc, repeat_factors


def _s(*labels):
    return Sample(image=None, boxes=np.zeros((len(labels), 4), np.float32), labels=np.array(labels, np.int64))


def test_repeat_factor_follows_sqrt_of_threshold_over_image_frequency():
    # 8 images: class 0 in all, class 1 in 2 (f=0.25), class 2 in 1 (f=0.125)
    samples = [_s(0)] * 5 + [_s(0, 1), _s(1), _s(0, 2)]
    r = repeat_factors(samples, threshold=0.5)
    np.testing.assert_allclose(r[:5], 1.0)
    np.testing.assert_allclose(r[5:7], np.sqrt(0.5 / 0.25))
    np.testing.assert_allclose(r[7], np.sqrt(0.5 / 0.125))
    np.testing.assert_allclose(repeat_factors(samples, threshold=0.0), 1.0)


def test_no_mask_photos_are_oversampled_on_the_shared_data(face_mask_dir):
    samples = read_voc(face_mask_dir)
    r = repeat_factors(samples, threshold=0.6)
    has_rare = np.array([bool(np.isin(s.labels, [1, 2]).any()) for s in samples])
    assert (r[has_rare] > 1).all() and (r[~has_rare] == 1).all()
