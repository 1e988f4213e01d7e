"""The whole-exchange fault soak: traffic, SIGKILLs and bad input at once, and nothing lost.

`stack` runs the exchange as processes, `driver` offers traffic, kills and poison, `invariants`
holds the rules the logs must obey and `checker` reads the logs and stores back to judge them;
`cli` ties them together (`python -m services.devtools.soak`, docs/reliability.md).
"""
