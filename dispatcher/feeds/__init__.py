"""Forecast feeds: one poller per source fetches once; the batch fans out to every zone.

base.py         the feed contract: the Feed protocol, forecast points, feed errors
openmeteo.py    the live Open-Meteo feed: its client and its response parser
replay.py       a recorded Open-Meteo response replayed: drills, demos, offline tests
points.py       snap zones to a regular grid so nearby zones share one forecast point
"""
