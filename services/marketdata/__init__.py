"""marketdata: read-side views of the trade log (L2 depth), for ws-push and funding/expiry."""
