"""Live streams: the per-account order-event log (seq), its fan-out to WebSocket and SSE clients, and the
price, bar, account and risk messages published after the writes that cause them."""
