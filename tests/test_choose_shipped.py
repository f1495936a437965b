"""The README's rule for which candidate ships, on sweep records written here."""

import json

import pytest

from train.diagnostics import choose_shipped

FLOOR = {"instrument_f1": 0.35, "tempo": 0.40, "mode": 0.50, "drums": 0.55, "mood": 0.3}


def record(listening: dict, cider_d: float, *, split="validation", n=500) -> dict:
    setting = {"overrides": {"num_beams": 1}, "listening": {**FLOOR, **listening}, "cider_d": cider_d}
    return {"split": split, "n": n, "floor": FLOOR, "settings": [setting]}


def arguments(tmp_path, records: dict, *variants: str) -> dict:
    path = tmp_path / "sweeps.json"
    path.write_text(json.dumps(records))
    args = [str(path), "--paper", "paper", "--variant", *variants, "--json"]
    return args


def run(tmp_path, capsys, records, *variants) -> dict:
    assert choose_shipped.main(arguments(tmp_path, records, *variants)) == 0
    return json.loads(capsys.readouterr().out)


def test_the_variant_with_the_higher_mean_margin_ships(tmp_path, capsys):
    records = {
        "paper": record({"tempo": 0.60}, 0.30),
        "analysis": record({"tempo": 0.60, "mode": 0.80}, 0.32),
    }
    decision = run(tmp_path, capsys, records, "analysis")
    assert decision["ships"] == "analysis"
    assert decision["candidates"]["analysis"]["mean_margin"] == pytest.approx((0.2 + 0.3) / 4)


def test_a_variant_more_than_ten_percent_below_the_paper_cider_does_not_ship(tmp_path, capsys):
    records = {"paper": record({}, 0.30), "analysis": record({"mode": 0.90}, 0.26)}
    assert run(tmp_path, capsys, records, "analysis")["ships"] == "paper"
    records["analysis"] = record({"mode": 0.90}, 0.275)  # 8 % below: allowed
    assert run(tmp_path, capsys, records, "analysis")["ships"] == "analysis"


def test_a_tie_goes_to_the_paper_row(tmp_path, capsys):
    records = {"paper": record({"tempo": 0.60}, 0.30), "same": record({"mode": 0.70}, 0.40)}
    assert run(tmp_path, capsys, records, "same")["ships"] == "paper"


def test_records_of_another_split_or_other_clips_are_refused(tmp_path):
    records = {
        "paper": record({}, 0.3),
        "on_test": record({}, 0.3, split="test"),
        "fewer": record({}, 0.3, n=200),
    }
    with pytest.raises(SystemExit, match="validation split only"):
        choose_shipped.main(arguments(tmp_path, records, "on_test"))
    with pytest.raises(SystemExit, match="not comparable"):
        choose_shipped.main(arguments(tmp_path, records, "fewer"))
