"""Valuation: every balance, transaction and prediction position worth something in the firm's currency.

- ``routes``: how a price is put together from the sources in their configured order — a direct pair, or a
  cross through a bridge asset (USDT, USDC, BTC) when no source lists one — and why a price could not be.
- ``book``: the price sources of one pricing run (exchanges' public market data, prediction markets,
  imported prices) over the stored observations: a ticker asked twice is fetched once, candles are cached
  per day.
- ``job``: the pricing job (after the syncs, never holding them up): current prices of what is held, values
  of transactions at their own time, retention of observations.
- ``imports``: `vigatra prices import` — the CSV format for air-gapped sites.
- ``read``: values as the API, the pages and the reports show them ("unpriced" with the reason, never 0).
"""
