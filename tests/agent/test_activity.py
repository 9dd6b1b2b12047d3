"""Activity: the front's connections, their rates, the traffic series and the totals kept in traffic.json."""

from __future__ import annotations

import json
import time

from fakeclock import FakeClock

from ladder.agent.activity import LISTED, SERIES_SECONDS, Activity

NOON = time.mktime((2026, 12, 3, 12, 0, 0, 0, 0, -1))  # local time, as the totals' calendar is


def test_a_connection_is_listed_with_its_bytes_rates_and_age_and_leaves_when_closed():
    clock = FakeClock(NOON)
    activity = Activity(clock)
    cuts: list[int] = []
    a = activity.opened("example.com", 443, "exit", lambda: cuts.append(1))
    b = activity.opened("10.0.0.1", 80, "direct", lambda: cuts.append(2))
    a.exit_id = "x" * 24
    activity.exit_name = {"x" * 24: "alpha"}.get
    for _ in range(5):
        a.count(up=100)
        a.count(down=1000)
        clock.advance(1)
        activity.tick()
    listed = activity.connections()
    assert [c["id"] for c in listed] == [b.id, a.id], "newest first"
    first = listed[1]
    assert first["route"] == "exit:alpha" and listed[0]["route"] == "direct"
    assert (first["up"], first["down"], first["rate_up"], first["rate_down"]) == (500, 5000, 100, 1000)
    assert first["age"] == 5 and first["opened"] == NOON
    activity.closed(b)
    assert [c["id"] for c in activity.connections()] == [a.id]
    assert activity.counters() == {"bytes_up": 500, "bytes_down": 5000, "connections_opened": 2,
                                   "connections_open": 1, "refusals": {}}


def test_close_cuts_the_connection_once_and_says_whether_it_was_open():
    activity = Activity(FakeClock(NOON))
    cuts: list[str] = []
    tracked = activity.opened("example.com", 443, "exit", lambda: cuts.append("cut"))
    assert activity.close(tracked.id) is True
    assert cuts == ["cut"] and activity.connections() == []
    assert activity.close(tracked.id) is False and activity.close(12345) is False
    assert cuts == ["cut"]


def test_the_list_is_bounded_and_refusals_are_counted_by_reason():
    activity = Activity(FakeClock(NOON))
    for i in range(LISTED + 50):
        activity.opened(f"h{i}", 80, "direct", lambda: None)
    listed = activity.connections()
    assert len(listed) == LISTED and listed[0]["host"] == f"h{LISTED + 49}"
    activity.refused("blocked")
    activity.refused("blocked")
    activity.opened("x", 1, "exit", lambda: None).refused("TARGET_REFUSED")
    assert activity.counters()["refusals"] == {"blocked": 2, "TARGET_REFUSED": 1}


def test_the_series_holds_one_point_a_second_for_the_last_five_minutes():
    clock = FakeClock(NOON)
    activity = Activity(clock)
    tracked = activity.opened("example.com", 443, "exit", lambda: None)
    for second in range(SERIES_SECONDS + 20):
        tracked.count(up=second, down=2 * second)
        clock.advance(1)
        activity.tick()
    series = activity.series()
    assert len(series) == SERIES_SECONDS
    last = SERIES_SECONDS + 19
    assert series[-1] == [NOON + last + 1, last, 2 * last]
    assert series[0][0] == NOON + 21, "the oldest points fall off"


def test_totals_survive_a_restart_and_start_over_on_a_new_day_and_month(tmp_path):
    path = tmp_path / "traffic.json"
    clock = FakeClock(NOON)
    activity = Activity(clock, path)
    activity.opened("a", 1, "direct", lambda: None).count(up=10, down=20)
    activity.save()
    again = Activity(clock, path)
    again.opened("a", 1, "direct", lambda: None).count(up=1, down=2)
    totals = again.totals()
    assert totals["today"] == {"up": 11, "down": 22} and totals["this_month"] == {"up": 11, "down": 22}

    clock.advance(24 * 3600)  # 4 December: a new day, the same month
    again.tick()
    assert again.totals()["today"] == {"up": 0, "down": 0}
    assert again.totals()["this_month"] == {"up": 11, "down": 22}
    clock.advance(28 * 24 * 3600)  # January
    assert again.totals()["this_month"] == {"up": 0, "down": 0}


def test_the_totals_are_saved_every_thirty_seconds_and_a_damaged_file_starts_over(tmp_path):
    path = tmp_path / "traffic.json"
    clock = FakeClock(NOON)
    activity = Activity(clock, path)
    activity.opened("a", 1, "direct", lambda: None).count(down=7)
    for _ in range(29):
        clock.advance(1)
        activity.tick()
    assert not path.exists()
    clock.advance(1)
    activity.tick()
    assert json.loads(path.read_text())["day_down"] == 7
    path.write_text('{"day": 5, "day_up": "lots"')
    assert Activity(clock, path).totals()["today"] == {"up": 0, "down": 0}
    path.write_text('["not", "an", "object"]')
    assert Activity(clock, path).totals()["this_month"] == {"up": 0, "down": 0}
