"""Graphs and what surrounds them: state and result types, the run-time context, graph builders, the service
facade, operations, and the stores (checkpoints, cost ledger, outcome feedback, the Redis saver)."""
