"""The settlement service: net settlement batches from accounts.events to the Vault, and withdrawals.

`core/` is pure (the fold, the batch builder, batch ids, the status and withdrawal tables);
`service.py` runs it on Kafka, web3 (`vault.py`) and Cassandra (`store.py`). docs/settlement.md.
"""
