"""ws-push: the trade log and account events pushed to WebSocket clients (docs/wspush.md)."""
