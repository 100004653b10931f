"""The local stack and demo: broker, redis, prometheus and alertmanager as plain processes."""
