"""The comparison tables and plot are built from the released model folders (real files)."""
from __future__ import annotations

from models.evaluation.compare import detector_table, distillation_table, plot, released


def test_every_released_model_has_a_row_with_measured_figures(tmp_path):
    rows = released()
    names = [r["name"] for r in rows]
    assert "detectnet_v2_r18" in names
    for r in rows:
        assert r["ms"] and r["ms"] > 0 and 0 <= r["mAP50"] <= 1 and r["params_M"] > 0, r["name"]
        assert r["input"].count("x") == 1
    table = detector_table(rows)
    assert table.count("\n") == len(rows) + 1 and "| DetectNet_v2 ResNet-18 |" in table
    assert "teacher" in distillation_table(rows)
    plot(rows, tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 10_000
