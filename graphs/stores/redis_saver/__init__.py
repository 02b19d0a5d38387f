"""A LangGraph checkpointer on plain Redis, Valkey or Redis Cluster (no Redis Stack modules needed)."""

from graphs.stores.redis_saver.saver import CheckpointStoreUnavailable, RedisSaver

__all__ = ["CheckpointStoreUnavailable", "RedisSaver"]
