"""The ws-push pure core: channels and their rules, the protocol table, the hub (log records →
channel messages with sequence numbers) and the bounded per-connection outbox. No I/O, no clock."""
