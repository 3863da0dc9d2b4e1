"""The alert half: from what the rules say to alert rows, and from "收到" to closed.

reconcile.py    pure: assessments + open alerts + now → transitions (new, upgraded, resolved …)
lifecycle.py    persist transitions: open and close alert rows, their audit events, escalation
acknowledge.py  the one service behind every way to say "收到" (SMS, link, keypress …)
system.py       system alerts: conditions of Yujing itself people must hear about (feed down)
"""
