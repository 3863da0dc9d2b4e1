"""Forecast feeds: one poller per source fetches once; the batch fans out to every zone.

base.py         the feed contract: the Feed protocol, forecast points, feed errors
openmeteo.py    the live Open-Meteo feed: its client and its response parser
qweather.py     the live QWeather feed: requests, error codes, units, its parser
qweather_auth.py  its authentication: a JWT signed with Ed25519, or the legacy key
qweather_alerts.py  QWeather's official alerts in force at a point (not yet wired to rules)
chain.py        several feeds in order: failover, and fusion per variable
replay.py       a recorded Open-Meteo or QWeather response replayed: drills, demos, tests
points.py       snap zones to a regular grid so nearby zones share one forecast point
"""
