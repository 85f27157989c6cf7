"""Conduct rules: employee groups, restricted and watch lists, the rules, and their evaluation.

- ``groups``, ``lists``, ``catalogue``: managing what the rules read, every change versioned;
- ``matching``, ``judge``: pure logic over plain rows;
- ``facts``: reading those rows; ``values``: the value of a record in the base currency;
- ``evaluate``: running the rules over the whole history or over the records a sync stored, storing
  one alert per (rule, record); ``parallel``: a whole history judged by worker processes;
  ``after_sync``: the connections a polling cycle synced, judged together; ``storing``: the bulk writes.
"""
