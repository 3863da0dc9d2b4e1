"""The duty roster: rotations, handover, holiday overrides, gaps, iCalendar, CLI."""

from __future__ import annotations

import re
import shutil
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dispatcher.cli import app
from dispatcher.county import County
from dispatcher.ical import to_ical
from dispatcher.roster import load_roster
from rules.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]
COUNTY_DIR = ROOT / "examples" / "liulin"
SHANGHAI = timezone(timedelta(hours=8))

OFFICERS = "[p-duty-zhang, p-duty-li, p-duty-liu]"
LEADERS = "[p-lead-gao, p-lead-xue]"


def roster_file(tmp_path: Path, body: str) -> Path:
    (tmp_path / "roster.yaml").write_text(body, encoding="utf-8")
    return tmp_path


def simple(
    overrides: str = "", horizon: str = "{from: 2026-01-01, to: 2026-01-31}", to: str = "2026-01-31"
) -> str:
    return f"""roster:
  handover: "08:30"
  horizon: {horizon}
  rotations:
    - name: 常规
      from: 2026-01-01
      to: {to}
      duty_officer: {OFFICERS}
      leader_on_duty: {LEADERS}
{overrides}"""


def local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


def problems(tmp_path: Path, county: County, body: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_roster(roster_file(tmp_path, body), county)
    return [str(p) for p in caught.value.problems]


# --- who is on duty -----------------------------------------------------------------


def test_the_shift_changes_at_the_handover_not_at_midnight(tmp_path: Path, county: County) -> None:
    roster = load_roster(roster_file(tmp_path, simple()), county)

    before = roster.on_duty(local("2026-01-02T08:29:59"))
    after = roster.on_duty(local("2026-01-02T08:30:00"))

    assert before.duty_officer is not None and before.duty_officer.id == "p-duty-zhang"
    assert after.duty_officer is not None and after.duty_officer.id == "p-duty-li"
    assert before.leader_on_duty is not None and before.leader_on_duty.id == "p-lead-gao"
    assert after.leader_on_duty is not None and after.leader_on_duty.id == "p-lead-xue"


def test_just_after_midnight_is_still_the_previous_duty_day(tmp_path: Path, county: County) -> None:
    roster = load_roster(roster_file(tmp_path, simple()), county)

    assert roster.duty_day(local("2026-01-03T00:10")) == date(2026, 1, 2)
    assert roster.shift_at(local("2026-01-03T00:10")).start == local("2026-01-02T08:30")


def test_people_take_turns_one_duty_day_each(tmp_path: Path, county: County) -> None:
    roster = load_roster(roster_file(tmp_path, simple()), county)

    shifts = roster.shifts(date(2026, 1, 1), 5)

    assert [s.duty_officer.id for s in shifts if s.duty_officer] == [
        "p-duty-zhang",
        "p-duty-li",
        "p-duty-liu",
        "p-duty-zhang",
        "p-duty-li",
    ]
    assert [s.leader_on_duty.id for s in shifts if s.leader_on_duty] == [
        "p-lead-gao",
        "p-lead-xue",
    ] * 2 + ["p-lead-gao"]


def test_days_per_shift_keeps_one_person_on_for_several_days(
    tmp_path: Path, county: County
) -> None:
    body = simple().replace(
        "      leader_on_duty:", "      days_per_shift: 2\n      leader_on_duty:"
    )
    roster = load_roster(roster_file(tmp_path, body), county)

    officers = [s.duty_officer.id for s in roster.shifts(date(2026, 1, 1), 4) if s.duty_officer]

    assert officers == ["p-duty-zhang", "p-duty-zhang", "p-duty-li", "p-duty-li"]


def test_an_override_replaces_the_rotation_on_its_days_only(tmp_path: Path, county: County) -> None:
    holiday = """  overrides:
    - name: 元旦值班
      from: 2026-01-01
      to: 2026-01-02
      duty_officer: [p-duty-guo]
      leader_on_duty: [p-lead-xue]
"""
    roster = load_roster(roster_file(tmp_path, simple(holiday)), county)

    first, second, third = roster.shifts(date(2026, 1, 1), 3)

    assert (first.duty_officer and first.duty_officer.id) == "p-duty-guo"
    assert (second.duty_officer and second.duty_officer.id) == "p-duty-guo"
    assert first.duty_officer_from == "元旦值班"
    # the regular rotation kept counting through the holiday
    assert (third.duty_officer and third.duty_officer.id) == "p-duty-liu"
    assert third.duty_officer_from == "常规"


def test_an_override_for_one_role_leaves_the_other_to_the_rotation(
    tmp_path: Path, county: County
) -> None:
    leader_only = """  overrides:
    - name: 两会值班
      from: 2026-01-05
      to: 2026-01-06
      leader_on_duty: [p-lead-xue]
"""
    roster = load_roster(roster_file(tmp_path, simple(leader_only)), county)

    shift = roster.shift(date(2026, 1, 5))

    assert shift.leader_on_duty is not None and shift.leader_on_duty.id == "p-lead-xue"
    assert shift.leader_on_duty_from == "两会值班"
    assert shift.duty_officer is not None and shift.duty_officer_from == "常规"


def test_without_roster_yaml_nobody_in_particular_is_rostered(
    tmp_path: Path, county: County
) -> None:
    roster = load_roster(tmp_path, county)

    assert not roster.configured
    assert roster.on_duty(local("2026-01-05T12:00")) == (None, None)


def test_the_example_roster_covers_2026_with_the_holiday_duty(county: County) -> None:
    roster = load_roster(COUNTY_DIR, county)

    assert roster.horizon == (date(2026, 1, 1), date(2026, 12, 31))
    assert roster.shift(date(2026, 1, 2)).duty_officer_from == "元旦值班"
    assert roster.shift(date(2026, 2, 17)).leader_on_duty_from == "春节值班"
    assert roster.shift(date(2026, 3, 8)).duty_officer_from == "全国两会值班"
    assert roster.shift(date(2026, 7, 1)).duty_officer_from == "2026年常规值班"
    every_day = roster.shifts(date(2026, 1, 1), 365)
    assert all(s.duty_officer and s.leader_on_duty for s in every_day)


# --- what is refused ---------------------------------------------------------------


def test_a_gap_in_coverage_is_an_error_naming_it_at_the_rotation_before_it(
    tmp_path: Path, county: County
) -> None:
    body = simple(to="2026-01-20")  # the horizon runs to 01-31

    found = problems(tmp_path, county, body)

    path = tmp_path / "roster.yaml"
    assert (
        f"{path}:7:11: gap in the roster: no duty_officer (值班员) from 2026-01-21 08:30 "
        in (found[0])
    )
    assert "to 2026-02-01 08:30 (11 duty days, Asia/Shanghai)" in found[0]
    assert "covering 2026-01-21..2026-01-31" in found[0]
    assert any("no leader_on_duty (带班领导)" in p for p in found)


def test_a_gap_before_the_first_rotation_points_at_its_start(
    tmp_path: Path, county: County
) -> None:
    body = simple(horizon="{from: 2025-12-30, to: 2026-01-31}")

    found = problems(tmp_path, county, body)

    assert found[0].startswith(f"{tmp_path / 'roster.yaml'}:6:13: gap in the roster")
    assert "from 2025-12-30 08:30 to 2026-01-01 08:30 (2 duty days" in found[0]


def test_an_unknown_person_is_reported_where_written_with_a_suggestion(
    tmp_path: Path, county: County
) -> None:
    body = simple().replace("p-duty-li,", "p-duty-lee,")

    found = problems(tmp_path, county, body)

    assert len(found) == 1
    assert re.match(rf"{re.escape(str(tmp_path))}/roster\.yaml:8:\d+: ", found[0])
    assert "unknown person 'p-duty-lee'" in found[0] and "did you mean 'p-duty-li'?" in found[0]


def test_a_leader_listed_as_duty_officer_is_reported(tmp_path: Path, county: County) -> None:
    body = simple().replace(OFFICERS, "[p-duty-zhang, p-lead-gao]")

    found = problems(tmp_path, county, body)

    assert len(found) == 1
    assert "p-lead-gao (高建斌) is listed as duty_officer" in found[0]
    assert "duty_role: leader_on_duty" in found[0]


def test_overlapping_overrides_for_one_role_are_refused(tmp_path: Path, county: County) -> None:
    two = """  overrides:
    - name: 甲
      from: 2026-01-01
      to: 2026-01-05
      duty_officer: [p-duty-guo]
    - name: 乙
      from: 2026-01-05
      to: 2026-01-06
      duty_officer: [p-duty-li]
"""
    found = problems(tmp_path, county, simple(two))

    assert len(found) == 1
    assert ":16:13: " in found[0] and "乙: overlaps 甲 (line 11) for duty_officer" in found[0]


def test_a_handover_that_is_not_a_time_is_refused(tmp_path: Path, county: County) -> None:
    found = problems(tmp_path, county, simple().replace('"08:30"', '"8.30"'))

    assert len(found) == 1
    assert ":2:13: handover: '8.30' is not a time of day; expected \"HH:MM\"" in found[0]


def test_rules_check_reports_roster_problems_with_the_other_files(tmp_path: Path) -> None:
    config = tmp_path / "county"
    shutil.copytree(COUNTY_DIR, config, ignore=shutil.ignore_patterns("scenarios"))
    roster = config / "roster.yaml"
    roster.write_text(
        roster.read_text(encoding="utf-8").replace("to: 2026-12-31\n", "to: 2026-11-30\n", 1),
        encoding="utf-8",
    )

    result = CliRunner().invoke(app, ["rules", "check", "--config", str(config)])

    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert any(
        line.startswith(f"{roster}:") and "gap in the roster: no duty_officer" in line
        for line in lines
    ), result.stderr
    assert lines[-1] == "2 problem(s) in the configuration; nothing was changed."


# --- iCalendar ---------------------------------------------------------------------


def test_ical_is_rfc5545_text_with_crlf_lines_uid_dtstamp_and_utc_times(
    tmp_path: Path, county: County
) -> None:
    roster = load_roster(roster_file(tmp_path, simple()), county)
    now = datetime(2025, 12, 20, 9, 0, tzinfo=UTC)

    text = to_ical(
        roster, roster.shifts(date(2026, 1, 1), 2), now=now, calendar_name="值班表, 2026; 柳林"
    )

    assert text.startswith("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:")
    assert text.endswith("END:VCALENDAR\r\n")
    assert "X-WR-CALNAME:值班表\\, 2026\\; 柳林\r\n" in text  # TEXT values are escaped
    assert "\n" not in text.replace("\r\n", "")
    events = text.split("BEGIN:VEVENT")[1:]
    assert len(events) == 4  # two officers and two leaders, one day each
    first = events[0]
    assert "UID:duty_officer-p-duty-zhang-20260101T003000Z@yujing\r\n" in first
    assert "DTSTAMP:20251220T090000Z\r\n" in first
    assert "DTSTART:20260101T003000Z\r\nDTEND:20260102T003000Z\r\n" in first
    assert "SUMMARY:值班员：张志强\r\n" in first


def test_ical_makes_one_event_of_consecutive_days_of_one_person(
    tmp_path: Path, county: County
) -> None:
    holiday = """  overrides:
    - name: 元旦值班
      from: 2026-01-01
      to: 2026-01-03
      leader_on_duty: [p-lead-gao]
"""
    roster = load_roster(roster_file(tmp_path, simple(holiday)), county)
    now = datetime(2025, 12, 20, tzinfo=UTC)

    text = to_ical(
        roster,
        roster.shifts(date(2026, 1, 1), 3),
        now=now,
        calendar_name="值班表",
        person_id="p-lead-gao",
    )

    [event] = text.split("BEGIN:VEVENT")[1:]
    assert "DTSTART:20260101T003000Z\r\nDTEND:20260104T003000Z\r\n" in event
    assert "DESCRIPTION:元旦值班（带班领导，08:30 交接班）\r\n" in event


def test_ical_folds_long_lines_at_75_octets_without_splitting_a_character(
    tmp_path: Path, county: County
) -> None:
    roster = load_roster(roster_file(tmp_path, simple()), county)
    name = "柳林县自然资源局地质灾害防治" * 4

    text = to_ical(roster, [], now=datetime(2026, 1, 1, tzinfo=UTC), calendar_name=name)

    lines = text.split("\r\n")
    assert all(len(line.encode()) <= 75 for line in lines)
    unfolded = text.replace("\r\n ", "")
    assert f"X-WR-CALNAME:{name}\r\n" in unfolded


def test_roster_ical_writes_one_persons_calendar(tmp_path: Path) -> None:
    out = tmp_path / "gao.ics"

    result = CliRunner().invoke(
        app,
        [
            "roster",
            "ical",
            "--out",
            str(out),
            "--person",
            "p-lead-gao",
            "--config",
            str(COUNTY_DIR),
        ],
    )

    assert result.exit_code == 0, result.output
    text = out.read_bytes().decode("utf-8")
    assert text.count("BEGIN:VEVENT") > 100
    assert "高建斌" in text and "薛文杰" not in text
    assert "wrote" in result.output and "2026-01-01..2026-12-31" in result.output


def test_roster_show_prints_who_is_on_duty_then_the_next_shifts() -> None:
    result = CliRunner().invoke(
        app,
        ["roster", "show", "--at", "2026-01-02T08:29", "--days", "3", "--config", str(COUNTY_DIR)],
    )

    assert result.exit_code == 0, result.output
    first = result.output.splitlines()[0]
    assert first.startswith("2026-01-02 08:29 Asia/Shanghai 在岗：值班员 张志强")
    assert "带班领导 高建斌" in first
    assert "元旦值班" in result.output
    assert "2026-01-03" in result.output and "2026-01-04" not in result.output
