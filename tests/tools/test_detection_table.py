import json

import pytest

from lightning_skd.cli import main


def _write(path, aps, coco=(0.5, 0.25)):
    payload = {
        "class_names": list(aps),
        "voc07_ap": aps,
        "voc07_map": sum(aps.values()) / len(aps),
        "coco_map_50": coco[0],
        "coco_map": coco[1],
    }
    path.write_text(json.dumps(payload))
    return path


def test_detection_table_writes_table5_layout(tmp_path, capsys):
    base = _write(tmp_path / "b.json", {"aeroplane": 0.7648, "bicycle": 0.8296})
    skd = _write(tmp_path / "s.json", {"aeroplane": 0.7836, "bicycle": 0.8534}, coco=(0.6, 0.3))
    main(["detection-table", f"baseline={base}", f"selfkd={skd}", "--out", str(tmp_path / "out" / "table5")])
    markdown = (tmp_path / "out" / "table5.md").read_text().splitlines()
    assert markdown[0] == "| method | aeroplane | bicycle | mAP | COCO AP50 | COCO AP |"
    assert markdown[2] == "| baseline | 76.48 | 82.96 | 79.72 | 50.00 | 25.00 |"
    assert markdown[3] == "| selfkd | 78.36 | 85.34 | 81.85 | 60.00 | 30.00 |"
    csv_lines = (tmp_path / "out" / "table5.csv").read_text().splitlines()
    assert csv_lines[0] == "method,aeroplane,bicycle,mAP,COCO AP50,COCO AP"
    assert csv_lines[2] == "selfkd,78.36,85.34,81.85,60.00,30.00"
    assert "| selfkd |" in capsys.readouterr().out


def test_detection_table_refuses_missing_or_mismatched_runs(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["detection-table", f"a={tmp_path / 'none.json'}", "--out", str(tmp_path / "t")])
    assert "none.json" in capsys.readouterr().err
    a = _write(tmp_path / "a.json", {"cat": 0.5})
    b = _write(tmp_path / "b.json", {"dog": 0.5})
    with pytest.raises(ValueError, match="classes"):
        main(["detection-table", f"a={a}", f"b={b}", "--out", str(tmp_path / "t")])
