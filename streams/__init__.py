"""storepulse's pipeline: the event contract, settings, the Redis store, the worker, the read side.

Imports go one way: contract <- store <- worker, and contract <- store <- query <- exporter;
settings, kafka and loop are shared at the bottom. Nothing here imports producers or storepulse.
"""
