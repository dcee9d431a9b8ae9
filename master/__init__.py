"""The master daemon: membership, command loop, event-driven workflow runner, failover."""
