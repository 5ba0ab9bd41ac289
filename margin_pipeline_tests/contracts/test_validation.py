"""Whole-file validation of landing CSVs: every contract rule, its rule name and the exact line.

Line numbers are 1-based with the header on line 1, so the i-th data row (0-based) is line i + 2.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from margin_pipeline.contracts.calendar import periods_in_day
from margin_pipeline.contracts.feeds import FEEDS
from margin_pipeline.contracts.mpan import with_check_digit
from margin_pipeline.contracts.validation import FileRejected, LandingFile, read_landing_file

M1 = with_check_digit("120000000000")  # 1200000000002
M2 = with_check_digit("130000000000")
BAD_CHECK = M1[:12] + str((int(M1[12]) + 1) % 10)

ORDINARY = dt.date(2025, 10, 1)
SPRING = dt.date(2025, 3, 30)  # 46 periods
AUTUMN = dt.date(2025, 10, 26)  # 50 periods

# One valid row per upsert feed, to place before a bad row.
GOOD = {
    "metering_points": f"{M2},_B,1.05",
    "tariffs": "FLAT,MONTHLY",
    "tariff_rates": "FLAT,_B,2025-01-01T00:00:00Z,2025-02-01T00:00:00Z,24.5,45.0",
    "supply_agreements": f"ACC0,{M2},FLAT,2025-01-01,",
    "charges": "DUOS,_B,P_PER_KWH,1.5,2025-01-01,,16:00,19:00",
}


def header(feed: str) -> str:
    return ",".join(FEEDS[feed].column_names)


def text(feed: str, rows: list[str]) -> str:
    return "\n".join([header(feed), *rows]) + "\n"


def volumes(
    day: dt.date, mpans: tuple[str, ...] = (M1,), run: str = "SF", periods: int | None = None
) -> list[str]:
    """A complete day of volume rows (1 kWh each) for ``mpans``; ``periods`` overrides N(d)."""
    n = periods or periods_in_day(day)
    return [f"{m},{day},{p},{run},1.0,A" for m in mpans for p in range(1, n + 1)]


def prices(day: dt.date, run: str = "SF", periods: int | None = None, price: str = "50.0") -> list[str]:
    n = periods or periods_in_day(day)
    return [f"{day},{p},{run},{price}" for p in range(1, n + 1)]


def replace_cell(rows: list[str], index: int, column: int, value: str) -> list[str]:
    cells = rows[index].split(",")
    cells[column] = value
    return [*rows[:index], ",".join(cells), *rows[index + 1 :]]


@pytest.fixture
def write(tmp_path: Path):
    def _write(content: str | bytes, name: str = "file.csv") -> Path:
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    return _write


def reject(feed: str, path: Path) -> FileRejected:
    with pytest.raises(FileRejected) as caught:
        read_landing_file(FEEDS[feed], path)
    assert caught.value.file == str(path)
    assert caught.value.message
    return caught.value


def accept(feed: str, path: Path) -> LandingFile:
    return read_landing_file(FEEDS[feed], path)


# --- one case per rule: (feed, data rows, rule, line) ---------------------------------------------

REJECTIONS = {
    # cells
    "empty required cell": ("tariffs", ["A,HH", "B,"], "billing_grain required", 3),
    "blank required cell": ("tariffs", ["A,HH", "   ,HH"], "tariff_code required", 3),
    "empty mpan_core": ("metering_points", [GOOD["metering_points"], ",_A,1.0"], "mpan_core required", 3),
    "non-numeric line_loss_factor": (
        "metering_points",
        [GOOD["metering_points"], f"{M1},_A,one"],
        "line_loss_factor format",
        3,
    ),
    "non-numeric rate": (
        "charges",
        [GOOD["charges"], "TNUOS,_A,P_PER_DAY,1.2.3,2025-01-01,,,"],
        "rate format",
        3,
    ),
    "bad date": (
        "supply_agreements",
        [GOOD["supply_agreements"], f"ACC1,{M1},FLAT,2025/01/01,"],
        "supply_start format",
        3,
    ),
    "short date": (
        "supply_agreements",
        [GOOD["supply_agreements"], f"ACC1,{M1},FLAT,2025-1-1,"],
        "supply_start format",
        3,
    ),
    "invalid calendar date": (
        "supply_agreements",
        [GOOD["supply_agreements"], f"ACC1,{M1},FLAT,2025-02-30,"],
        "supply_start format",
        3,
    ),
    "invalid optional date": (
        "supply_agreements",
        [GOOD["supply_agreements"], f"ACC1,{M1},FLAT,2025-02-01,2025-13-01"],
        "supply_end format",
        3,
    ),
    "timestamp without Z": (
        "tariff_rates",
        [GOOD["tariff_rates"], "FLAT,_A,2025-01-01T00:00:00,2025-02-01T00:00:00Z,24.5,45.0"],
        "valid_from format",
        3,
    ),
    "timestamp with offset": (
        "tariff_rates",
        [GOOD["tariff_rates"], "FLAT,_A,2025-01-01T00:00:00Z,2025-02-01T00:00:00+00:00,24.5,45.0"],
        "valid_to format",
        3,
    ),
    "timestamp as date": (
        "tariff_rates",
        [GOOD["tariff_rates"], "FLAT,_A,2025-01-01,2025-02-01T00:00:00Z,24.5,45.0"],
        "valid_from format",
        3,
    ),
    "invalid calendar timestamp": (
        "tariff_rates",
        [GOOD["tariff_rates"], "FLAT,_A,2025-02-30T00:00:00Z,2025-03-01T00:00:00Z,24.5,45.0"],
        "valid_from format",
        3,
    ),
    "band time not HH:MM": (
        "charges",
        [GOOD["charges"], "RED,_A,P_PER_KWH,1.5,2025-01-01,,25:00,19:00"],
        "band_start format",
        3,
    ),
    # metering points
    "mpan bad check digit": (
        "metering_points",
        [GOOD["metering_points"], f"{BAD_CHECK},_A,1.0"],
        "mpan_core check digit",
        3,
    ),
    "mpan 12 digits": (
        "metering_points",
        [GOOD["metering_points"], f"{M1[:12]},_A,1.0"],
        "mpan_core check digit",
        3,
    ),
    "mpan 14 digits": (
        "metering_points",
        [GOOD["metering_points"], f"{M1}0,_A,1.0"],
        "mpan_core check digit",
        3,
    ),
    "mpan not digits": (
        "metering_points",
        [GOOD["metering_points"], f"{M1[:11]}X{M1[12]},_A,1.0"],
        "mpan_core check digit",
        3,
    ),
    "gsp_group _I": ("metering_points", [GOOD["metering_points"], f"{M1},_I,1.0"], "gsp_group", 3),
    "gsp_group _Q": ("metering_points", [GOOD["metering_points"], f"{M1},_Q,1.0"], "gsp_group", 3),
    "gsp_group lower case": ("metering_points", [GOOD["metering_points"], f"{M1},_a,1.0"], "gsp_group", 3),
    "gsp_group without underscore": (
        "metering_points",
        [GOOD["metering_points"], f"{M1},A,1.0"],
        "gsp_group",
        3,
    ),
    "gsp_group empty on a metering point": (
        "metering_points",
        [GOOD["metering_points"], f"{M1},,1.0"],
        "gsp_group required",
        3,
    ),
    "line_loss_factor 0.99": (
        "metering_points",
        [GOOD["metering_points"], f"{M1},_A,0.99"],
        "line_loss_factor",
        3,
    ),
    "line_loss_factor 1.21": (
        "metering_points",
        [GOOD["metering_points"], f"{M1},_A,1.21"],
        "line_loss_factor",
        3,
    ),
    # tariffs and rates
    "billing_grain DAILY": ("tariffs", ["A,HH", "B,DAILY"], "billing_grain", 3),
    "billing_grain lower case": ("tariffs", ["A,HH", "B,hh"], "billing_grain", 3),
    "tariff_rates gsp_group _I": (
        "tariff_rates",
        [GOOD["tariff_rates"], "FLAT,_I,2025-01-01T00:00:00Z,2025-02-01T00:00:00Z,24.5,45.0"],
        "gsp_group",
        3,
    ),
    "tariff_rates empty validity": (
        "tariff_rates",
        [GOOD["tariff_rates"], "FLAT,_A,2025-01-01T00:00:00Z,2025-01-01T00:00:00Z,24.5,45.0"],
        "validity",
        3,
    ),
    "supply_end before supply_start": (
        "supply_agreements",
        [GOOD["supply_agreements"], f"ACC1,{M1},FLAT,2025-02-01,2025-01-31"],
        "validity",
        3,
    ),
    # charges
    "charge unit invalid": (
        "charges",
        [GOOD["charges"], "TNUOS,_A,GBP_PER_KWH,1.0,2025-01-01,,,"],
        "unit",
        3,
    ),
    "charge unit lower case": (
        "charges",
        [GOOD["charges"], "TNUOS,_A,p_per_day,1.0,2025-01-01,,,"],
        "unit",
        3,
    ),
    "charge gsp_group _I": (
        "charges",
        [GOOD["charges"], "TNUOS,_I,P_PER_DAY,1.0,2025-01-01,,,"],
        "gsp_group",
        3,
    ),
    "charge validity": (
        "charges",
        [GOOD["charges"], "TNUOS,_A,P_PER_DAY,1.0,2025-02-01,2025-01-01,,"],
        "validity",
        3,
    ),
    "band_start only": ("charges", [GOOD["charges"], "RED,_A,P_PER_KWH,1.5,2025-01-01,,16:00,"], "band", 3),
    "band_end only": ("charges", [GOOD["charges"], "RED,_A,P_PER_KWH,1.5,2025-01-01,,,19:00"], "band", 3),
    "empty band": ("charges", [GOOD["charges"], "RED,_A,P_PER_KWH,1.5,2025-01-01,,16:00,16:00"], "band", 3),
    "band on P_PER_DAY": (
        "charges",
        [GOOD["charges"], "TNUOS,_A,P_PER_DAY,1.0,2025-01-01,,16:00,19:00"],
        "band",
        3,
    ),
    # duplicate keys in upsert feeds: the line of the second occurrence
    "duplicate tariff": ("tariffs", ["A,HH", "B,HH", "A,MONTHLY"], "key unique in file", 4),
    "duplicate metering point": (
        "metering_points",
        [f"{M1},_A,1.0", GOOD["metering_points"], f"{M1},_B,1.1"],
        "key unique in file",
        4,
    ),
    "duplicate all-group charge": (
        "charges",
        ["TNUOS,,P_PER_DAY,1.0,2025-01-01,,,", GOOD["charges"], "TNUOS,,P_PER_DAY,2.0,2025-01-01,,,"],
        "key unique in file",
        4,
    ),
    "duplicate rate key": (
        "tariff_rates",
        [GOOD["tariff_rates"], GOOD["tariff_rates"].replace("24.5", "30.0")],
        "key unique in file",
        3,
    ),
    # row shape
    "extra field": ("tariffs", ["A,HH", "B,HH,x"], "row shape", 3),
    "missing field": ("tariffs", ["A,HH", "B,HH", "C"], "row shape", 4),
    # volumes
    "run_type R4": ("settlement_volumes", replace_cell(volumes(ORDINARY), 5, 3, "R4"), "run_type", 7),
    "run_type lower case": ("settlement_volumes", replace_cell(volumes(ORDINARY), 0, 3, "sf"), "run_type", 2),
    "quality X": ("settlement_volumes", replace_cell(volumes(ORDINARY), 9, 5, "X"), "quality", 11),
    "quality empty": (
        "settlement_volumes",
        replace_cell(volumes(ORDINARY), 9, 5, ""),
        "quality required",
        11,
    ),
    "kwh negative": ("settlement_volumes", replace_cell(volumes(ORDINARY), 6, 4, "-0.5"), "kwh", 8),
    "kwh not a number": ("settlement_volumes", replace_cell(volumes(ORDINARY), 2, 4, "abc"), "kwh format", 4),
    "kwh nan": ("settlement_volumes", replace_cell(volumes(ORDINARY), 2, 4, "nan"), "kwh format", 4),
    "settlement_date invalid": (
        "settlement_volumes",
        replace_cell(volumes(ORDINARY), 3, 1, "2025-02-30"),
        "settlement_date format",
        5,
    ),
    "settlement_period not an integer": (
        "settlement_volumes",
        replace_cell(volumes(ORDINARY), 3, 2, "4.0"),
        "settlement_period format",
        5,
    ),
    "period 49 on a 48-period day": (
        "settlement_volumes",
        [*volumes(ORDINARY), f"{M1},{ORDINARY},49,SF,1.0,A"],
        "settlement_period range",
        50,
    ),
    "period 0": (
        "settlement_volumes",
        replace_cell(volumes(ORDINARY), 0, 2, "0"),
        "settlement_period range",
        2,
    ),
    "period 47 on the spring day": (
        "settlement_volumes",
        volumes(SPRING, periods=48),
        "settlement_period range",
        48,
    ),
    "period 51 on the autumn day": (
        "settlement_volumes",
        volumes(AUTUMN, periods=51),
        "settlement_period range",
        52,
    ),
    # prices
    "prices run_type": ("prices", replace_cell(prices(ORDINARY), 47, 2, "XX"), "run_type", 49),
    "prices not a number": (
        "prices",
        replace_cell(prices(ORDINARY), 1, 3, "£50"),
        "price_gbp_per_mwh format",
        3,
    ),
    "prices bad date": (
        "prices",
        replace_cell(prices(ORDINARY), 0, 0, "01/10/2025"),
        "settlement_date format",
        2,
    ),
    "prices period 49": (
        "prices",
        [*prices(ORDINARY), f"{ORDINARY},49,SF,50.0"],
        "settlement_period range",
        50,
    ),
    "prices period 47 on the spring day": (
        "prices",
        prices(SPRING, periods=47),
        "settlement_period range",
        48,
    ),
}


@pytest.mark.parametrize(
    ("feed", "rows", "rule", "line"),
    [pytest.param(*case, id=name) for name, case in REJECTIONS.items()],
)
def test_rule_rejects_with_rule_and_line(write, feed: str, rows: list[str], rule: str, line: int) -> None:
    rejected = reject(feed, write(text(feed, rows)))
    assert (rejected.rule, rejected.line) == (rule, line)


def test_impossible_settlement_date_rejects_the_file(write) -> None:
    # pyarrow's strptime alone would roll 2025-02-30 over to 2025-03-02; the round trip catches it.
    rows = [f"2025-02-30,{p},SF,50.0" for p in range(1, 49)]
    rejected = reject("prices", write(text("prices", rows)))
    assert (rejected.rule, rejected.line) == ("settlement_date format", 2)


# --- header, encoding, shape ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "first_line",
    [
        "tariff_code",  # missing column
        "tariff_code,billing_grain,comment",  # extra column
        "tariff_code,billing_grain,billing_grain",  # repeated column
        "tariff,billing_grain",  # misspelt
        "Tariff_Code,Billing_Grain",  # names are case sensitive
        "A,HH",  # no header row at all
        "",
    ],
)
def test_bad_header_is_line_1(write, first_line: str) -> None:
    rejected = reject("tariffs", write(first_line + "\nA,HH\n"))
    assert (rejected.rule, rejected.line) == ("header", 1)


def test_bad_header_message_names_the_columns(write) -> None:
    rejected = reject("tariffs", write("tariff_code,grain\nA,HH\n"))
    assert "billing_grain" in rejected.message
    assert "grain" in rejected.message


def test_empty_file_is_rejected_for_its_header(write) -> None:
    rejected = reject("prices", write(""))
    assert (rejected.rule, rejected.line) == ("header", 1)


def test_non_utf8_bytes_reject_with_their_line(write) -> None:
    path = write(b"tariff_code,billing_grain\nA,HH\nB\xe9,HH\nC,HH\n")  # latin-1 e-acute
    rejected = reject("tariffs", path)
    assert (rejected.rule, rejected.line) == ("encoding", 3)


def test_utf8_bom_and_crlf_are_accepted(write) -> None:
    path = write("\ufefftariff_code,billing_grain\r\nA,HH\r\nB,MONTHLY\r\n")
    landing = accept("tariffs", path)
    assert landing.rows.select(["tariff_code", "billing_grain"]).to_pylist() == [
        {"tariff_code": "A", "billing_grain": "HH"},
        {"tariff_code": "B", "billing_grain": "MONTHLY"},
    ]


def test_non_ascii_utf8_is_accepted(write) -> None:
    landing = accept("tariffs", write("tariff_code,billing_grain\nÉCO-7,MONTHLY\n"))
    assert landing.rows.column("tariff_code").to_pylist() == ["ÉCO-7"]


@pytest.mark.parametrize(
    "feed",
    [
        "metering_points",
        "tariffs",
        "tariff_rates",
        "supply_agreements",
        "charges",
        "settlement_volumes",
        "prices",
    ],
)
def test_header_only_file_is_accepted_with_no_rows(write, feed: str) -> None:
    landing = accept(feed, write(header(feed) + "\n"))
    assert landing.num_rows == 0


def test_header_only_file_without_final_newline_is_accepted(write) -> None:
    landing = accept("tariffs", write("tariff_code,billing_grain"))
    assert landing.num_rows == 0


def test_last_row_without_final_newline_is_accepted(write) -> None:
    landing = accept("tariffs", write("tariff_code,billing_grain\nA,HH\nB,MONTHLY"))
    assert landing.rows.column("tariff_code").to_pylist() == ["A", "B"]


def test_columns_in_a_different_order_are_accepted(write) -> None:
    path = write(f"line_loss_factor,mpan_core,gsp_group\n1.05,{M1},_A\n1.2,{M2},_P\n")
    landing = accept("metering_points", path)
    assert landing.rows.select(["mpan_core", "gsp_group", "line_loss_factor"]).to_pylist() == [
        {"mpan_core": M1, "gsp_group": "_A", "line_loss_factor": 1.05},
        {"mpan_core": M2, "gsp_group": "_P", "line_loss_factor": 1.2},
    ]


def test_reordered_volume_columns_keep_their_meaning(write) -> None:
    rows = [f"A,{kwh},{p},{M1},SF,{ORDINARY}" for p, kwh in zip(range(1, 49), range(48), strict=True)]
    path = write(
        "\n".join(["quality,kwh,settlement_period,mpan_core,run_type,settlement_date", *rows]) + "\n"
    )
    landing = accept("settlement_volumes", path)
    assert landing.rows.column("settlement_period").to_pylist() == list(range(1, 49))
    assert landing.rows.column("kwh").to_pylist() == [float(k) for k in range(48)]
    assert set(landing.rows.column("settlement_date").to_pylist()) == {ORDINARY}


def test_cells_are_typed_and_trimmed(write) -> None:
    path = write(text("tariff_rates", [" FLAT , _A ,2025-01-01T00:00:00Z, 2025-02-01T00:00:00Z ,-2.5, 45"]))
    row = accept("tariff_rates", path).rows.to_pylist()[0]
    assert row["tariff_code"] == "FLAT"
    assert row["gsp_group"] == "_A"
    assert row["valid_from"] == dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    assert row["valid_to"] == dt.datetime(2025, 2, 1, tzinfo=dt.UTC)
    assert row["unit_rate_p_per_kwh"] == -2.5
    assert row["standing_charge_p_per_day"] == 45.0
    assert row["_line"] == 2


# --- boundaries that are accepted -----------------------------------------------------------------


@pytest.mark.parametrize("llf", ["1.0", "1.2", "1", "1.20", "1.1"])
def test_line_loss_factor_bounds_are_inclusive(write, llf: str) -> None:
    landing = accept("metering_points", write(text("metering_points", [f"{M1},_A,{llf}"])))
    assert landing.rows.column("line_loss_factor").to_pylist() == [float(llf)]


def test_all_fourteen_gsp_groups_are_accepted(write) -> None:
    groups = "ABCDEFGHJKLMNP"
    rows = [f"{with_check_digit(f'1{i:02d}000000000')},_{g},1.0" for i, g in enumerate(groups)]
    landing = accept("metering_points", write(text("metering_points", rows)))
    assert landing.rows.column("gsp_group").to_pylist() == [f"_{g}" for g in groups]


def test_both_billing_grains_are_accepted(write) -> None:
    landing = accept("tariffs", write(text("tariffs", ["A,HH", "B,MONTHLY"])))
    assert landing.rows.column("billing_grain").to_pylist() == ["HH", "MONTHLY"]


def test_negative_unit_rates_are_accepted(write) -> None:
    row = "AGILE,_A,2025-01-01T00:00:00Z,2025-01-01T00:30:00Z,-12.75,45.0"
    landing = accept("tariff_rates", write(text("tariff_rates", [row])))
    assert landing.rows.column("unit_rate_p_per_kwh").to_pylist() == [-12.75]


def test_negative_prices_are_accepted(write) -> None:
    rows = replace_cell(prices(ORDINARY), 13, 3, "-35.5")
    landing = accept("prices", write(text("prices", rows)))
    assert landing.rows.column("price_gbp_per_mwh").to_pylist()[13] == -35.5


def test_zero_kwh_and_estimated_quality_are_accepted(write) -> None:
    rows = replace_cell(replace_cell(volumes(ORDINARY), 0, 4, "0"), 1, 5, "E")
    landing = accept("settlement_volumes", write(text("settlement_volumes", rows)))
    assert landing.rows.column("kwh").to_pylist()[0] == 0.0
    assert landing.rows.column("quality").to_pylist()[:3] == ["A", "E", "A"]


@pytest.mark.parametrize("run", ["SF", "R1", "R2", "R3", "RF", "DF"])
def test_every_run_type_is_accepted(write, run: str) -> None:
    landing = accept("prices", write(text("prices", prices(ORDINARY, run))))
    assert set(landing.rows.column("run_type").to_pylist()) == {run}


def test_charges_all_units_bands_and_open_ends(write) -> None:
    rows = [
        "TNUOS,,P_PER_DAY,12.5,2025-01-01,,,",
        "RED,_A,P_PER_KWH,3.25,2025-01-01,2025-04-01,16:00,19:00",
        "BSUOS,_A,GBP_PER_MWH,2.1,2025-01-01,,,",
        "LATE,_A,P_PER_KWH,1.0,2025-01-01,,23:00,24:00",
    ]
    landing = accept("charges", write(text("charges", rows)))
    got = landing.rows.select(["charge_code", "gsp_group", "valid_to", "band_start", "band_end"]).to_pylist()
    assert got == [
        {"charge_code": "TNUOS", "gsp_group": "", "valid_to": None, "band_start": None, "band_end": None},
        {
            "charge_code": "RED",
            "gsp_group": "_A",
            "valid_to": dt.date(2025, 4, 1),
            "band_start": "16:00",
            "band_end": "19:00",
        },
        {"charge_code": "BSUOS", "gsp_group": "_A", "valid_to": None, "band_start": None, "band_end": None},
        {
            "charge_code": "LATE",
            "gsp_group": "_A",
            "valid_to": None,
            "band_start": "23:00",
            "band_end": "24:00",
        },
    ]


def test_empty_charge_gsp_group_is_kept_as_empty_string_not_null(write) -> None:
    landing = accept("charges", write(text("charges", ["TNUOS,,P_PER_DAY,12.5,2025-01-01,,,"])))
    assert landing.rows.column("gsp_group").null_count == 0
    assert landing.rows.column("gsp_group").to_pylist() == [""]


def test_open_supply_end_is_null(write) -> None:
    landing = accept("supply_agreements", write(text("supply_agreements", [f"ACC1,{M1},FLAT,2025-01-01,"])))
    row = landing.rows.to_pylist()[0]
    assert row["supply_start"] == dt.date(2025, 1, 1)
    assert row["supply_end"] is None


# --- complete days of volumes and prices ----------------------------------------------------------


def test_volumes_missing_a_period_reject_on_the_last_line_of_that_mpan_date(write) -> None:
    rows = [r for r in volumes(ORDINARY, (M1, M2)) if not r.startswith(f"{M1},{ORDINARY},17,")]
    rejected = reject("settlement_volumes", write(text("settlement_volumes", rows)))
    # M1's 47 rows are lines 2..48; nothing marks the gap itself, so the group's last line is reported.
    assert (rejected.rule, rejected.line) == ("complete day", 48)
    assert M1 in rejected.message


def test_volumes_missing_the_last_period_reject(write) -> None:
    rows = volumes(ORDINARY, periods=47)
    rejected = reject("settlement_volumes", write(text("settlement_volumes", rows)))
    assert (rejected.rule, rejected.line) == ("complete day", 48)


def test_volumes_duplicate_period_rejects(write) -> None:
    rows = [*volumes(ORDINARY), f"{M1},{ORDINARY},48,SF,2.0,A"]
    rejected = reject("settlement_volumes", write(text("settlement_volumes", rows)))
    assert (rejected.rule, rejected.line) == ("complete day", 50)
    assert "duplicate" in rejected.message


def test_volumes_duplicate_period_rejects_on_the_duplicate_line(write) -> None:
    rows = volumes(ORDINARY)
    rows.insert(10, rows[9])  # period 10 again, on line 12
    rejected = reject("settlement_volumes", write(text("settlement_volumes", rows)))
    assert (rejected.rule, rejected.line) == ("complete day", 12)


def test_volumes_duplicate_instead_of_missing_period_rejects(write) -> None:
    rows = replace_cell(volumes(ORDINARY), 20, 2, "20")  # period 21 missing, period 20 twice: still 48 rows
    rejected = reject("settlement_volumes", write(text("settlement_volumes", rows)))
    assert rejected.rule == "complete day"
    assert "duplicate" in rejected.message


def test_volumes_incomplete_second_mpan_names_it(write) -> None:
    rows = volumes(ORDINARY, (M1,)) + volumes(ORDINARY, (M2,), periods=40)
    rejected = reject("settlement_volumes", write(text("settlement_volumes", rows)))
    assert (rejected.rule, rejected.line) == ("complete day", 89)
    assert M2 in rejected.message


def test_volumes_on_the_autumn_day_need_50_periods(write) -> None:
    landing = accept("settlement_volumes", write(text("settlement_volumes", volumes(AUTUMN, (M1, M2)))))
    assert landing.num_rows == 100
    assert sorted(set(landing.rows.column("settlement_period").to_pylist())) == list(range(1, 51))


def test_volumes_with_48_periods_on_the_autumn_day_reject(write) -> None:
    rejected = reject("settlement_volumes", write(text("settlement_volumes", volumes(AUTUMN, periods=48))))
    assert (rejected.rule, rejected.line) == ("complete day", 49)
    assert "1..50" in rejected.message


def test_volumes_on_the_spring_day_need_46_periods(write) -> None:
    landing = accept("settlement_volumes", write(text("settlement_volumes", volumes(SPRING))))
    assert landing.num_rows == 46
    assert max(landing.rows.column("settlement_period").to_pylist()) == 46


def test_volumes_each_run_of_a_date_must_be_complete(write) -> None:
    both = volumes(ORDINARY, run="SF") + volumes(ORDINARY, run="R1")
    assert accept("settlement_volumes", write(text("settlement_volumes", both))).num_rows == 96
    partial = volumes(ORDINARY, run="SF") + volumes(ORDINARY, run="R1", periods=47)
    rejected = reject("settlement_volumes", write(text("settlement_volumes", partial), "partial.csv"))
    assert (rejected.rule, rejected.line) == ("complete day", 96)
    assert "R1" in rejected.message


def test_volumes_several_dates_in_one_file(write) -> None:
    rows = volumes(SPRING) + volumes(ORDINARY) + volumes(AUTUMN)
    assert accept("settlement_volumes", write(text("settlement_volumes", rows))).num_rows == 46 + 48 + 50


def test_prices_missing_a_period_reject(write) -> None:
    rows = [r for r in prices(ORDINARY) if not r.startswith(f"{ORDINARY},30,")]
    rejected = reject("prices", write(text("prices", rows)))
    assert (rejected.rule, rejected.line) == ("complete day", 48)


def test_prices_duplicate_period_rejects(write) -> None:
    rows = [*prices(ORDINARY), f"{ORDINARY},48,SF,60.0"]
    rejected = reject("prices", write(text("prices", rows)))
    assert (rejected.rule, rejected.line) == ("complete day", 50)


def test_prices_on_the_autumn_day_need_50_periods(write) -> None:
    assert accept("prices", write(text("prices", prices(AUTUMN)))).num_rows == 50
    rejected = reject("prices", write(text("prices", prices(AUTUMN, periods=48)), "short.csv"))
    assert (rejected.rule, rejected.line) == ("complete day", 49)


def test_prices_on_the_spring_day_need_46_periods(write) -> None:
    assert accept("prices", write(text("prices", prices(SPRING)))).num_rows == 46
    rejected = reject("prices", write(text("prices", prices(SPRING, periods=45)), "short.csv"))
    assert (rejected.rule, rejected.line) == ("complete day", 46)


def test_signed_period_is_accepted_or_rejected_never_crashes(write) -> None:
    rows = replace_cell(prices(ORDINARY), 4, 1, "+5")
    try:
        landing = accept("prices", write(text("prices", rows)))
    except FileRejected as rejected:
        assert rejected.line == 6
    else:
        assert landing.rows.column("settlement_period").to_pylist()[4] == 5


def test_huge_period_is_rejected_not_a_crash(write) -> None:
    rows = [*prices(ORDINARY), f"{ORDINARY},99999999999,SF,50.0"]
    rejected = reject("prices", write(text("prices", rows)))
    assert rejected.line == 50
    assert rejected.rule.startswith("settlement_period")
