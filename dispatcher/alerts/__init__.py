"""The alert half: from what the rules say to alert rows, and from "收到" to closed.

reconcile.py    pure: assessments + open alerts + now → transitions (new, upgraded, resolved …)
lifecycle.py    the one way an alert opens and closes: its row, audit event, escalation
hazards.py      persist one poll's transitions of the zones' hazard alerts, then their events
grouping.py     pure: which zone alerts form one event, and how it changes in a poll
events.py       persist event changes: the bureau's incidents, told once per change
acknowledge.py  the one service behind every way to say "收到" (SMS, link, keypress …)
system.py       system alerts: conditions of Yujing itself people must hear about (feed down)
blind.py        the blind-hazards system alert: the forecast lacks what some rules read
"""
