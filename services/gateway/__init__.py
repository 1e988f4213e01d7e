"""order-gateway: signed REST commands → orders.commands (keyed by trader)."""
