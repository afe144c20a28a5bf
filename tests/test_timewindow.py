from datetime import UTC, datetime, timedelta

import pytest

from dreaming.errors import BadInput
from dreaming.timewindow import parse_duration, parse_since

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)


def test_durations_and_dates():
    assert parse_duration("7d") == timedelta(days=7)
    assert parse_duration(" 12h ") == timedelta(hours=12)
    assert parse_duration("2026-11-01") is None
    assert parse_since("2w", now=NOW) == NOW - timedelta(weeks=2)
    assert parse_since("2026-11-01", now=NOW) == datetime(2026, 11, 1, tzinfo=UTC)
    assert parse_since("2026-11-01T05:00:00Z") == datetime(2026, 11, 1, 5, tzinfo=UTC)
    assert parse_since(None) is None


def test_bad_since_names_the_field():
    with pytest.raises(BadInput, match="since"):
        parse_since("yesterday")
