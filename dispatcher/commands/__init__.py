"""CLI commands, one module per area; `dispatcher/cli.py` only wires them into `yujing`.

terminal.py     what every command shares: output, operator errors, settings, times
run.py          `yujing run`: the daemon
db.py           `yujing db upgrade`: apply the database migrations
rules_check.py  `yujing rules check`: every configuration file, every problem at file:line
rules_test.py   `yujing rules test`: run rule unit tests
drill.py        `yujing drill`: the whole pipeline once on a recorded forecast
alerts.py       `yujing alerts list|ack`: the alerts in the database; acknowledge by code
audit.py        `yujing audit verify`: walk the hash-chained audit log
report.py       `yujing report`: the information report (信息报送) for a period
roster.py       `yujing roster show|ical`: who is on duty; a calendar for phones
users.py        `yujing users add|list`: duty-console accounts
"""
