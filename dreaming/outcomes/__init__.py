"""Does the dream help? Outcomes and backtests from the lake (docs/outcomes.md).

- ``tracking.outcomes(store)``: per promoted memory, its pattern's rate before and after the promotion,
  with a Wilson interval and a verdict (``stats``); per day, the store's rates; the top patterns.
- ``backtest.backtest(store, split=… | every=…)``: a scratch dream (in memory) over the sessions before a
  split, and how many failures and corrections after it were already covered.
- ``patterns``: the one matcher of memories to what sessions show (the miners' own keys);
  ``scope``: the store's sessions and their signals through the session index.
- ``charts`` (``--html``, matplotlib charts as inline SVG) and ``artifact`` (a Prefect markdown artifact in a run).
"""
