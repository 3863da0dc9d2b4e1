"""Provider receipts: a provider's later report of what became of a sent message.

Twilio (and the channels that imitate it) call back with a message status
after the send itself went through. The report is stored as a `Receipt` and,
if it ends the message's life, moves its row on: sent → delivered,
undelivered or failed. A receipt never moves a row backwards, and one that
arrives before the worker recorded the provider id is linked when it does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatcher import audit
from dispatcher.outbox.rows import ERROR_CODE_WIDTH, OnFailed, clip
from dispatcher.states import NotificationStatus
from dispatcher.storage.models import Notification, Receipt

# How far along a row is; a receipt may only move a row to a higher rank.
_RANK: Final[Mapping[str, int]] = {
    NotificationStatus.PENDING: 0,
    NotificationStatus.SENDING: 1,
    NotificationStatus.SENT: 2,
    NotificationStatus.DELIVERED: 3,
    NotificationStatus.UNDELIVERED: 3,
    NotificationStatus.FAILED: 3,
}

# Provider (Twilio MessageStatus) values that end a message's life, and the
# notification status each one means. queued/accepted/scheduled/sending/sent
# are progress reports that never change the row: it is already `sent`.
_TERMINAL_RECEIPTS: Final[Mapping[str, NotificationStatus]] = {
    "delivered": NotificationStatus.DELIVERED,
    "read": NotificationStatus.DELIVERED,  # WhatsApp: read implies delivered
    "undelivered": NotificationStatus.UNDELIVERED,
    "failed": NotificationStatus.FAILED,
    "canceled": NotificationStatus.FAILED,  # a scheduled message cancelled before it went out
}


def record_receipt(
    session: Session,
    *,
    provider_id: str,
    status: str,
    error_code: str | None,
    payload: Mapping[str, str],
    at: datetime,
    actor: str = "provider",
    on_failed: OnFailed | None = None,
) -> Notification | None:
    """Store a provider's status report and apply it to its notification; does not commit.

    A report that the message was undelivered or failed calls `on_failed` (the
    failover) in the same transaction.

    A report the provider already made (same message, status and error) is not
    stored again: a replayed callback adds no row. Otherwise the receipt row is
    stored — even when no notification carries `provider_id` yet (then
    `notification_id` is NULL; the worker links it when it records that
    provider id). Terminal statuses (delivered, read,
    undelivered, failed, canceled) finish the notification; progress reports
    (queued, sending, sent …) change nothing, and no receipt ever moves a row
    backwards: a late "sent" after "delivered" is stored but ignored.
    Returns the notification, or None when the provider id is unknown.
    """
    notification = session.scalars(
        select(Notification)
        .where(Notification.provider_id == provider_id)
        .order_by(Notification.id)
        .limit(1)
        # two callbacks for one message may arrive at once; apply them one by one
        .with_for_update()
    ).first()
    said = select(Receipt.id).where(
        Receipt.provider_id == provider_id,
        Receipt.status == status,
        Receipt.error_code.is_(None) if error_code is None else Receipt.error_code == error_code,
    )
    if session.scalar(said.limit(1)) is not None:
        # the same report again (a provider's retry, or a replayed request): nothing new
        return notification
    receipt = Receipt(
        notification_id=notification.id if notification is not None else None,
        provider_id=provider_id,
        status=status,
        error_code=error_code,
        received_at=at,
        payload=dict(payload),
    )
    session.add(receipt)
    session.flush()  # assigns receipt.id for the audit event
    change = _apply_receipt(notification, receipt) if notification is not None else None
    audit.record(
        session,
        at=at,
        actor=actor,
        action="notification.receipt",
        subject=(
            f"notification:{notification.id}"
            if notification is not None
            else f"provider_message:{provider_id}"
        ),
        data=_receipt_audit_data(receipt, change),
    )
    if (
        on_failed is not None
        and notification is not None
        and change is not None
        and change[1] in (NotificationStatus.UNDELIVERED, NotificationStatus.FAILED)
    ):
        on_failed(session, notification, notification.last_error or receipt.status, at)
    return notification


def link_early_receipts(
    session: Session, sent: Mapping[str, int], *, actor: str, now: datetime
) -> None:
    """Attach receipts that arrived before the worker recorded their provider ids.

    A fast provider can call back while the outcome transaction is still
    waiting for the database; those receipts were stored unattached and would
    otherwise never reach the row. `sent` maps the provider ids just recorded
    to their notification ids; one query finds the receipts for all of them.
    """
    if not sent:
        return
    early: Iterable[Receipt] = session.scalars(
        select(Receipt)
        .where(Receipt.provider_id.in_(sorted(sent)), Receipt.notification_id.is_(None))
        .order_by(Receipt.id)
    ).all()
    for receipt in early:
        notification = session.get_one(Notification, sent[receipt.provider_id])
        receipt.notification_id = notification.id
        change = _apply_receipt(notification, receipt)
        audit.record(
            session,
            at=now,
            actor=actor,
            action="notification.receipt",
            subject=f"notification:{notification.id}",
            data={**_receipt_audit_data(receipt, change), "linked_late": True},
        )


def _apply_receipt(notification: Notification, receipt: Receipt) -> tuple[str, str] | None:
    """Move `notification` forward as `receipt` says; return (from, to) if it moved."""
    target = _TERMINAL_RECEIPTS.get(receipt.status.lower())
    if target is None or _RANK[target] <= _RANK.get(notification.status, 0):
        return None
    before = notification.status
    notification.status = target
    notification.finished_at = receipt.received_at
    notification.lease_until = None
    if target != NotificationStatus.DELIVERED:
        notification.error_code = clip(receipt.error_code, ERROR_CODE_WIDTH)
        code = f" (error {receipt.error_code})" if receipt.error_code else ""
        notification.last_error = f"provider reported {receipt.status}{code}"
    return before, target


def _receipt_audit_data(receipt: Receipt, change: tuple[str, str] | None) -> dict[str, Any]:
    return {
        "receipt_id": receipt.id,
        "provider_id": receipt.provider_id,
        "status": receipt.status,
        "error_code": receipt.error_code,
        "received_at": receipt.received_at.isoformat(),
        "from": change[0] if change else None,
        "to": change[1] if change else None,
    }
