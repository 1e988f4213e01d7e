"""replay: run recorded commands through the real engine, offline — the seed of backtesting.

It imports only the matcher core (and the schemas' serde for files and topics), never a service.
"""
