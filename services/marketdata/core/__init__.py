"""The market-data pure core: folds of trade-log entries into views. No I/O, no clock."""
