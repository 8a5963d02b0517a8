"""Operator tools shipped with the app and exposed by the `tradedesk` CLI (not imported by the API)."""
