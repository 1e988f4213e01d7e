"""The pure core of the order gateway: what traders sign and how it is checked. No I/O, no clock.

* `typed_data` — EIP-712 structs, signing, recovery and verification;
* `nonces` — replay protection (timestamp nonces per signer, deadlines);
* `ratelimit` — integer token buckets keyed by IP or API key;
* `idempotency` — the `Idempotency-Key` decision table and the store port it needs.
"""
