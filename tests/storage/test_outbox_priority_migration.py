"""Migration 0008 gives the rows still waiting in the outbox their alert's priority."""

from __future__ import annotations

from sqlalchemy import text

from dispatcher.storage import migrate
from dispatcher.storage.db import make_engine

ALERT = (
    "INSERT INTO alerts (id, code, kind, hazard, rule_id, title, level, state, evidence, "
    "opened_at, updated_at) VALUES (:id, :code, 'event', 'cold_wave', 'r', '', :level, "
    "'firing', '{}', '2026-01-05 08:00:00', '2026-01-05 08:00:00')"
)
ROW = (
    "INSERT INTO notifications (id, idempotency_key, alert_id, transition, recipient_name, "
    "address, channel, body, status, attempts, next_attempt_at, created_at) VALUES "
    "(:id, :key, :alert, 'new', '', '+86', 'sms', 'b', :status, 0, "
    "'2026-01-05 08:00:00', '2026-01-05 08:00:00')"
)


def test_upgrading_sets_the_priority_of_waiting_rows_from_their_alerts_level(
    db_url: str,
) -> None:
    # given a database at 0005 with rows about a red, a yellow and no alert, waiting
    # or leased, and a red row already sent
    migrate.upgrade(db_url, "0005")
    engine = make_engine(db_url)
    with engine.begin() as connection:
        for id_, level in ((1, "red"), (2, "yellow")):
            connection.execute(text(ALERT), {"id": id_, "code": f"C{id_}", "level": level})
        for id_, alert, status in (
            (1, 1, "pending"),
            (2, 2, "pending"),
            (3, None, "pending"),
            (4, 1, "sending"),
            (5, 1, "sent"),
        ):
            connection.execute(
                text(ROW), {"id": id_, "key": f"k{id_}", "alert": alert, "status": status}
            )
    # when it is upgraded
    migrate.upgrade(db_url)
    # then the waiting rows rank by their alert's level (no alert: orange); the sent
    # one, which no claim reads again, keeps orange
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT id, priority FROM notifications")).all()
        got: dict[int, int] = {id_: priority for id_, priority in rows}
    engine.dispose()
    assert got == {1: 0, 2: 2, 3: 1, 4: 0, 5: 1}
