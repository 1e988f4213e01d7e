"""The pure core of the order gateway: what traders sign and how it is checked. No I/O, no clock.

Replay protection (`services.common.nonces.ReplayGuard`) is shared with risk, which is its
authority (docs/signing.md); the gateway runs it too, as a fast local check.

* `typed_data` — EIP-712 structs, signing, recovery and verification;
* `ratelimit` — integer token buckets keyed by IP or API key;
* `idempotency` — the `Idempotency-Key` decision table and the store port it needs.
"""
