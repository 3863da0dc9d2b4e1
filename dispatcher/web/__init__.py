"""The HTTP side (FastAPI, server-rendered; no external CDN).

app.py              the application: health, provider status webhooks; mounts the routers
state.py            what the routers share (AppState, RulesStatus), apart from the app
twilio_signature.py Twilio webhook signatures, shared by every Twilio route
acks.py             acknowledging from a phone: SMS reply, voice keypress, signed link
auth.py             duty-console accounts, logins and their tokens
console.py          the duty console (值班台): board, alerts, duty, rules, zones, report pages
cap.py              CAP 1.2 publishing: `/cap/feed.atom` and `/cap/{identifier}.xml`
templates/, static/ the console's Jinja2 pages and its CSS/JS, shipped in the package
"""
