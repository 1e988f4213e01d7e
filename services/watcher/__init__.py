"""The chain watcher: Vault deposits and withdrawals, once final, onto accounts.events.

- `core/`: pure — Vault log decoding, the finality tracker (confirmation depth, reorgs), the
  AccountEvent records and the restart cursor; no I/O, no clock;
- `service.py`: the adapter polling an EVM RPC (web3) and producing to Kafka in transactions;
- `deposit.py`: the local dev command that deposits MockUSDC into the Vault on anvil.

See docs/watcher.md.
"""
