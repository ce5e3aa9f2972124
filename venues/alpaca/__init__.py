"""Alpaca: US-equity market data (the iex feed by default) and, later, paper trading."""
