"""Shared building blocks of dagkeeper: settings, states, errors, ZooKeeper paths, DAG logic, DB."""
