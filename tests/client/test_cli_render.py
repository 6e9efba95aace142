"""The CLI's pure helpers: durations, paging through listings, JSON output."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import pytest

from authgate.client import Page
from authgate.client._cli._render import (
    all_pages,
    as_json,
    parse_duration,
    print_record,
    print_table,
    when,
)
from authgate.client._cli._session import exit_code_for_status


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90d", timedelta(days=90)),
        ("24h", timedelta(hours=24)),
        ("30m", timedelta(minutes=30)),
        ("45s", timedelta(seconds=45)),
        ("2w", timedelta(weeks=2)),
        ("0", timedelta(0)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    """Durations are a number and a unit."""
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "soon", "10", "1y", "-1d", "1.5h"])
def test_bad_durations_are_refused(text: str) -> None:
    """Anything else raises ValueError naming the accepted form."""
    with pytest.raises(ValueError, match="90d"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["36501d", "3000000d", "99999999999999999999w"])
def test_durations_past_a_century_are_refused(text: str) -> None:
    """Longer than anything the server accepts, and added to now, past the year 9999:
    a ValueError in words (the command's usage error), never an OverflowError."""
    with pytest.raises(ValueError, match="at most 36500d"):
        parse_duration(text)


class Pages:
    """A listing of ``total`` numbers served in pages; records the pages asked for."""

    def __init__(self, total: int, *, send_total: bool = True) -> None:
        self.total = total
        self.send_total = send_total
        self.asked: list[int] = []

    def __call__(self, page: int, size: int) -> Page[int]:
        self.asked.append(page)
        items = tuple(range(page * size, min((page + 1) * size, self.total)))
        return Page(items, self.total if self.send_total else None, page, size)


@pytest.mark.parametrize("send_total", [True, False])
def test_all_pages_reads_every_page(send_total: bool) -> None:
    """Every item is read, page after page, with or without X-Total-Count."""
    pages = Pages(7, send_total=send_total)
    assert list(all_pages(pages, size=3, limit=None, label="x")) == list(range(7))
    assert pages.asked == [0, 1, 2]


def test_all_pages_stops_at_the_limit() -> None:
    """With a limit, no page beyond it is fetched."""
    pages = Pages(100)
    assert list(all_pages(pages, size=10, limit=15, label="x")) == list(range(15))
    assert pages.asked == [0, 1]


def test_all_pages_of_an_empty_listing() -> None:
    """An empty listing is one request and no item."""
    pages = Pages(0)
    assert list(all_pages(pages, size=10, limit=None, label="x")) == []
    assert pages.asked == [0]


def test_as_json_handles_dataclasses_dates_and_tuples() -> None:
    """Dataclasses become objects, datetimes ISO strings, tuples lists."""

    @dataclass(frozen=True)
    class Thing:
        when: datetime
        tags: tuple[str, ...]

    value = Thing(datetime(2027, 1, 31, tzinfo=UTC), ("a", "b"))
    assert as_json([value]) == [{"when": "2027-01-31T00:00:00Z", "tags": ["a", "b"]}]


@pytest.mark.parametrize(
    ("moment", "json_form", "table_form"),
    [
        (datetime(2026, 12, 6, 10, 25, 57, tzinfo=UTC), "2026-12-06T10:25:57Z", None),
        (
            datetime(2026, 12, 6, 10, 25, 57, 937551, tzinfo=UTC),
            "2026-12-06T10:25:57.937551Z",
            "2026-12-06T10:25:57Z",
        ),
        (
            datetime(2026, 12, 6, 11, 25, 57, tzinfo=timezone(timedelta(hours=1))),
            "2026-12-06T10:25:57Z",
            None,
        ),
    ],
)
def test_times_are_printed_as_the_rest_api_writes_them(
    moment: datetime, json_form: str, table_form: str | None
) -> None:
    """JSON output has the REST API's form (UTC, ``Z``, its fraction of a second);
    tables the same to the second: never ``+00:00`` or a space before the time."""
    assert as_json(moment) == json_form
    assert when(moment) == (table_form or json_form)


@pytest.mark.parametrize(
    ("status", "code"),
    [(200, 0), (204, 0), (301, 1), (302, 1), (304, 1), (400, 1), (409, 1), (412, 1),
     (422, 1), (401, 3), (403, 4), (404, 5), (423, 6), (429, 6), (500, 7), (503, 7)],
)  # fmt: skip
def test_exit_codes_follow_the_documented_table(status: int, code: int) -> None:
    """Each status maps to the exit code the help and README document; a redirect is
    not followed, so nothing was done: 1, never 0."""
    assert exit_code_for_status(status) == code


def test_tables_are_whole_lines_in_a_pipe(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Piped (``authgate-client keys list | cat``), however narrow the terminal, each row
    is one whole line: a UUID is never split over two, as with ``authgate keys list``
    (black-box review, item 5)."""
    monkeypatch.setenv("COLUMNS", "40")
    key_id = "6f1c3e0a-2b4d-4c8e-9a7f-0d5b1e2c3a4f"
    name = "a rather long key name for a narrow terminal"

    print_table("API keys", ["id", "name", "expires"], [[key_id, name, "2027-01-01T00:00:00Z"]])
    print_record([("id", key_id), ("name", name)])
    lines = capsys.readouterr().out.splitlines()

    assert [line for line in lines if key_id in line and name in line]
    assert len([line for line in lines if key_id in line]) == 2
    assert not [line for line in lines if "6f1c3e0a" in line and key_id not in line]
    assert [line for line in lines if "│ name" in line and name in line]
