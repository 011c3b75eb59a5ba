"""Agent and expert seats: logging in to queues, pausing with a reason, logging out, and the intervals kept."""
