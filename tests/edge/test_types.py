from __future__ import annotations

import numpy as np
import pytest

from edge.types import AlarmEvent, Detections


def test_detections_index_and_shapes():
    d = Detections([[0, 0, 10, 10], [5, 5, 25, 45]], [0.9, 0.3], [0, 1])
    assert len(d) == 2 and d.xyxy.dtype == np.float32 and d.class_id.dtype == np.int64
    hi = d[d.scores > 0.5]
    assert len(hi) == 1 and hi.class_id.tolist() == [0]
    assert d.width.tolist() == [10, 20]
    assert d.centre.tolist() == [[5, 5], [15, 25]]
    assert len(Detections.empty()) == 0 and Detections.empty().xyxy.shape == (0, 4)
    assert d[1].xyxy.tolist() == [[5, 5, 25, 45]]


@pytest.mark.parametrize("kw, msg", [
    (dict(xyxy=np.zeros((2, 3)), scores=np.zeros(2), class_id=np.zeros(2)), "xyxy must have shape"),
    (dict(xyxy=np.zeros((2, 4)), scores=np.zeros(3), class_id=np.zeros(2)), "scores must have shape"),
    (dict(xyxy=np.zeros((2, 4)), scores=np.zeros(2), class_id=np.zeros(1)), "class_id must have shape"),
    (dict(xyxy=np.zeros((2, 4)), scores=np.zeros(2), class_id=np.zeros(2), track_id=np.zeros(5)),
     "track_id must have shape"),
])
def test_detections_validate(kw, msg):
    with pytest.raises(ValueError, match=msg):
        Detections(**kw)


def test_alarm_event_dict_has_required_keys():
    ev = AlarmEvent(time="2026-01-01T10:00:00.000+00:00", frame=12, track_id=3, cls="no_mask", score=0.81234,
                    duration_s=1.25, source_t=0.48)
    d = ev.to_dict()
    for k in ("time", "frame", "track_id", "class", "score", "duration_s"):
        assert k in d
    assert d["class"] == "no_mask" and d["score"] == 0.8123
