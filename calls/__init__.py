"""Call records (one per call, written once, reconciled from Asterisk's channel event log) and the expert
handoff."""
