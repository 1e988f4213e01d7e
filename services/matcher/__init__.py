"""matcher: one price-time priority book per market; reads matcher.commands, writes trade.log."""
