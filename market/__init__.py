"""Market data: candle models and validation, Binance clients, indicators, the bundled sample."""
