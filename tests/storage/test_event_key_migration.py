"""Migration 0010: the event key is checked at commit; the alerts (and what points at
them) are kept through it, both ways."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from dispatcher.storage import migrate
from dispatcher.storage.db import make_engine

ALERT = (
    "INSERT INTO alerts (id, code, kind, hazard, rule_id, title, level, state, evidence, "
    "opened_at, updated_at, event_id) VALUES (:id, :code, :kind, 'cold_wave', 'r', '', "
    "'red', 'firing', '{}', '2026-01-05 08:00:00', '2026-01-05 08:00:00', :event)"
)
TIMER = (
    "INSERT INTO escalation_timers (alert_id, kind, step, round, epoch, due_at, status, plan, "
    "created_at) VALUES (:alert, 'step', 1, 0, 0, '2026-01-05 08:30:00', 'pending', '{}', "
    "'2026-01-05 08:00:00')"
)


def test_upgrading_keeps_the_alerts_and_defers_the_event_key_to_the_commit(
    db_url: str,
) -> None:
    # given a database at 0009 with an event, its zone alert and a timer of it
    migrate.upgrade(db_url, "0009")
    engine = make_engine(db_url)
    with engine.begin() as connection:
        connection.execute(text(ALERT), {"id": 1, "code": "E1", "kind": "event", "event": None})
        connection.execute(text(ALERT), {"id": 2, "code": "Z2", "kind": "hazard", "event": 1})
        connection.execute(text(TIMER), {"alert": 2})
    # when it is upgraded
    migrate.upgrade(db_url)
    assert migrate.check_models_match(db_url) == []
    with engine.begin() as connection:
        rows = connection.execute(text("SELECT id, event_id FROM alerts ORDER BY id")).all()
        assert [tuple(row) for row in rows] == [(1, None), (2, 1)]
        assert connection.execute(text("SELECT alert_id FROM escalation_timers")).scalar() == 2
        # then a zone alert may name an event written after it, in one transaction
        connection.execute(text(ALERT), {"id": 3, "code": "Z3", "kind": "hazard", "event": 4})
        connection.execute(text(ALERT), {"id": 4, "code": "E4", "kind": "event", "event": None})
    # and an event that never comes still fails the commit
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(text(ALERT), {"id": 5, "code": "Z5", "kind": "hazard", "event": 9})
    # and the downgrade keeps the rows too
    engine.dispose()
    migrate.downgrade(db_url, "0009")
    engine = make_engine(db_url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM alerts")).scalar() == 4
    engine.dispose()
