"""The durable outbox: notification rows, and the delivery worker that sends them.

A notification row is written in the same transaction as the alert transition
it announces (`rows.enqueue`). From then on the outbox owns it:

    pending ──claim──► sending ──send OK──► sent ──receipt──► delivered | undelivered | failed
       ▲                  │
       └── retryable ─────┤ (backoff; after max_attempts → failed)
                          └── permanent ──► failed

(`dispatcher.states.NotificationStatus` spells these states; `cancelled` is an
escalation message an acknowledgement made unnecessary before it was sent.)

Delivery is *at least once*. A claim is a lease: a worker that dies mid-send
leaves the row `sending`; when the lease runs out any worker (this process
after a restart, or another instance) claims it again. The idempotency key
goes with every attempt, but only some channels pass it on to the receiver
so that it can drop a repeat: the webhook (an ``Idempotency-Key`` header and
a body field) and the village broadcast gateway (both bundled profiles put
``{{ idempotency_key }}`` in the request). Twilio SMS and voice, WeCom, DingTalk
and Feishu calls carry none: a send repeated after a lost answer reaches its
recipient twice.

| module        | what it does                                                          |
| ------------- | --------------------------------------------------------------------- |
| `rows`        | adds a row (`enqueue`) and spells its idempotency key, in one place   |
| `claim`       | leases due rows and expired leases, paced by rate limits, by priority |
| `record`      | records send outcomes in batches, with an explicit `AuditBatch`       |
| `worker`      | `DeliveryWorker`: the one delivery loop (daemon, drills and tests)    |
| `receipts`    | provider status reports: stored, applied forward, linked when early   |
| `giveup`      | rows with no way left: marked, re-sent when their channel recovers    |

Dependencies point one way: rows ← claim ← record ← worker, and receipts
(used by record and the web callbacks) needs only rows.
"""

from __future__ import annotations

from dispatcher.outbox.claim import Claimed
from dispatcher.outbox.receipts import record_receipt
from dispatcher.outbox.record import JITTER_FRACTION, backoff_delay
from dispatcher.outbox.rows import OnFailed, enqueue, idempotency_key
from dispatcher.outbox.worker import DeliveryWorker

__all__ = [
    "JITTER_FRACTION",
    "Claimed",
    "DeliveryWorker",
    "OnFailed",
    "backoff_delay",
    "enqueue",
    "idempotency_key",
    "record_receipt",
]
