"""Cost figures from given seconds (nothing timed here): medians, spreads, rounding, warm-up apart, no None."""

import pytest

from helpers.base.timestats import cost_columns, cost_table, readable, round_sig, round_to, run_table, spread


def _row(model, total, steps_per_s=10.0, status="ok", **extra):
    timings = {"total": total, "steps_per_s": steps_per_s}
    return {"params": {"model": model, "seed": extra.pop("seed", 1)}, "status": status, "timings": timings, **extra}


def test_median_and_spread_of_given_seconds():
    s = spread([0.10, 0.12, None, 0.11, 0.50])
    assert (s.median, s.low, s.high, s.n) == (pytest.approx(0.115), 0.10, 0.50, 4)
    assert s.noisy and s.relative == pytest.approx(0.40 / 0.115)
    steady = spread([2.0, 2.1, 2.05])
    assert steady.median == 2.05 and not steady.noisy
    assert not spread([7.38]).noisy, "one measurement has no spread to judge"
    assert spread([None]) is None


@pytest.mark.parametrize(
    "value, width, expected",
    [
        (7.379589, 0.2, 7.4),  # rounded at the spread's leading digit
        (0.102345, 0.003, 0.102),
        (7.379589, 3.0, 7.4),  # never fewer than two significant figures
        (0.1000123, 1e-7, 0.1),  # never more than four
        (123.456, 0.0, 120.0),  # no spread measured: two significant figures
    ],
)
def test_rounding_follows_the_spread(value, width, expected):
    assert round_to(value, width) == expected


def test_round_sig():
    assert round_sig(7.379589) == 7.4 and round_sig(0.0812) == 0.081 and round_sig(None) is None


def test_the_warm_up_is_its_own_column_and_not_in_the_seconds_per_image():
    rows = [
        _row("sd15", 0.10, load_s=3.14159, warmup_s=7.379589),  # the cell after the thrown-away first call
        _row("sd15", 0.112),
        _row("sd15", 0.12),
        _row("sd15", 0.10),
    ]
    cols = cost_columns(rows)
    assert cols["load_s"] == 3.1 and cols["warmup_s"] == 7.4
    assert cols["s_per_image"] == 0.11 and cols["s_per_image_spread"] == 0.02  # 0.106 ± 0.01: two decimals
    assert cols["timing_note"] == "" and cols["it_per_s"] == 10.0
    assert "peak_memory_gb" not in cols, "not measured (a CPU): left out, not None"


def test_a_spread_too_wide_to_rank_by_is_flagged():
    rows = [_row("sd15", t) for t in (0.10, 0.112, 7.38, 0.10)]
    cols = cost_columns(rows)
    assert "too wide to rank by" in cols["timing_note"] and cols["s_per_image"] == 0.11


def test_cost_table_has_no_none_and_units_in_its_column_names():
    rows = [_row("a", 1.0, load_s=2.0, warmup_s=3.0), _row("a", 1.2), _row("b", 0.5, load_s=1.0, warmup_s=1.5)]
    rows.append(_row("b", 0.6, peak_memory_gb=None))
    table = cost_table(rows)
    assert list(table.index) == ["a", "b"] and not table.isna().any().any()
    assert "failed" not in table and "peak_memory_gb" not in table
    units = ("load_s", "warmup_s", "s_per_image", "s_per_image_spread", "it_per_s")
    assert list(table.columns) == ["images", *units, "timing_note"]
    shown = readable(table)
    assert shown.index.name is None and list(shown.index) == ["a", "b"], "no index row of its own when shown"
    assert shown.columns[0] == "images" and "s / image (median)" in shown.columns
    assert "None" not in shown.to_html(index=False)


def test_run_table_shows_what_varies_rounded():
    rows = [_row("sd15", 7.379589, seed=1), _row("sd15", 0.0812, seed=2)]
    rows.append({"params": {"model": "sd15", "seed": 3}, "status": "error", "error": "ValueError: no"})
    table = run_table(rows)
    assert list(table.columns[:2]) == ["seed", "status"], "the model does not vary: no column"
    assert table["s_per_image"].tolist()[:2] == [7.4, 0.081]
    assert "peak_memory_gb" not in table and table["error"].tolist()[2] == "ValueError: no"
