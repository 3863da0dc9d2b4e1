"""CLI commands, one module per area; registered in dispatcher/cli.py.

alerts.py       `yujing alerts list|ack`: the alerts in the database; acknowledge by code
audit.py        `yujing audit verify`: walk the hash-chained audit log
report.py       `yujing report`: the information report (信息报送) for a period
roster.py       `yujing roster show|ical`: who is on duty; a calendar for phones
rules_test.py   `yujing rules test`: run rule unit tests
users.py        `yujing users add|list`: duty-console accounts
"""
