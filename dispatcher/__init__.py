"""Yujing's daemon: the imperative shell (I/O, clocks, storage, HTTP) around the
pure rule engine (`rules/`) and the delivery channels (`channels/`).

The map, in the order a forecast travels to a phone (docs/architecture.md tells
the same path in one page):

Wiring and running
    settings.py     settings: `YUJING_*` environment variables or a `.env` file
    runtime.py      the composition root: settings in, a wired pipeline and delivery worker out
    daemon.py       `yujing run`: scheduler, delivery worker and HTTP server in one process
    leader.py       on PostgreSQL only the holder of the leader lease schedules; its writes fenced
    httpclient.py   the one shared httpx client (several small connection pools)
    logs.py         text logs on a terminal, one JSON object per line under systemd
The county
    county.py       county.yaml, people.yaml, zones.yaml, checked
    roster.py       the duty roster (值班表): who is duty officer and leader on duty, when
    ical.py         the roster as an iCalendar file for people's phones
    directory.py    mirror the county's zones, people and roles into the database
    rulewatch.py    reload edited rule files safely, without a restart
    configwatch.py  reload the edited county files the same way; `evaluate-now` requests
Forecast → alerts
    feeds/          forecast sources (Open-Meteo, replay) → ForecastBatch; grid points
    pipeline.py     one poll: fetch, evaluate the rules, reconcile, commit, wake delivery
    undecided.py    the (zone, hazard) pairs the rules could not decide, and why
    alerts/         reconcile (pure) → hazards (zone alerts) → grouping (pure) → events
                    (the bureau's incidents); lifecycle (open/close), acknowledge; system, blind
    states.py       the stored rows' vocabularies (alert, outbox row, timer states) as StrEnums
Alerts → messages
    escalation/     package: policy (model; zone and bureau shares), config (escalation.yaml),
                    plan (typed planned step, transition names), engine (start/close), fire
                    (one step's messages), members (an event's zones), timers (escalate_due)
    routing.py      who a target (`mass_monitor`, `duty_officer` …) means, now
    messages.py     the texts people read or hear, per medium
    eventtext.py    an event's texts for the bureau (new, changed, reminder, overdue, ended)
    acklinks.py     signed, expiring acknowledgement links
Messages → phones
    outbox/         package: rows (idempotency key, enqueue), claim, record (audit batch),
                    worker (the one send path), receipts
    ratelimit.py    per-channel token buckets: a burst never trips a provider's block
    channelset.py   the configured channels, built from settings
    failover.py     a message that cannot go one way goes another
Acknowledgements, records, people's views
    web/            HTTP: health, provider webhooks, acknowledgements, duty console, CAP feed
    audit.py        the append-only, hash-chained audit log
    storage/        engines and sessions, models, migrations
    labels.py       the Chinese words people read for states, levels and transitions
    cap.py          CAP 1.2 messages for alert transitions
    report.py       the information report (信息报送): one or two A4 pages per event
    reporting/      its parts: detail (one read), events (a section), timeline, privacy
    metrics.py      /metrics: the database read at scrape time, polls, sends, reloads
    drill.py        a drill: the whole pipeline once on a recorded forecast
    cli.py          `yujing`: wires the command line; commands/ holds one module per area
"""
