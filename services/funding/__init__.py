"""funding/expiry: marks from oracle.prices and the book, hourly funding of perpetuals, cash settlement
of expired futures and options; reads oracle.prices and trade.log, sends commands to matcher.commands."""
