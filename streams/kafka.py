"""Kafka connection config, rendered once for aiokafka and Faust, and topic creation."""

from __future__ import annotations

import contextlib
import logging
import ssl
from dataclasses import dataclass, field
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from streams.settings import Settings

__all__ = ["KafkaConnection", "client_options", "ensure_topics", "faust_broker_options"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KafkaConnection:
    """How to reach the brokers: servers, security protocol, TLS context, SASL credentials."""

    servers: tuple[str, ...]
    security_protocol: str
    ssl_context: ssl.SSLContext | None
    sasl_mechanism: str | None
    sasl_username: str | None
    sasl_password: str | None = field(repr=False)  # never in a log line or a traceback

    @classmethod
    def from_settings(cls, settings: Settings) -> KafkaConnection:
        protocol = settings.kafka_security_protocol
        context = None
        if protocol in {"SSL", "SASL_SSL"}:
            cafile = str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
            context = ssl.create_default_context(cafile=cafile)
        sasl = protocol.startswith("SASL")
        if sasl:
            assert settings.kafka_sasl_password is not None  # enforced by Settings
        return cls(
            servers=tuple(s.strip() for s in settings.kafka_bootstrap.split(",")),
            security_protocol=protocol,
            ssl_context=context,
            sasl_mechanism=settings.kafka_sasl_mechanism if sasl else None,
            sasl_username=settings.kafka_sasl_username if sasl else None,
            sasl_password=(
                settings.kafka_sasl_password.get_secret_value()
                if sasl and settings.kafka_sasl_password is not None
                else None
            ),
        )

    def aiokafka(self) -> dict[str, Any]:
        """Options of every aiokafka client (producer, consumer, admin)."""
        options: dict[str, Any] = {
            "bootstrap_servers": ",".join(self.servers),
            "security_protocol": self.security_protocol,
        }
        if self.ssl_context is not None:
            options["ssl_context"] = self.ssl_context
        if self.sasl_mechanism is not None:
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            options["sasl_plain_password"] = self.sasl_password
        return options

    def faust(self) -> dict[str, Any]:
        """faust.App's broker and broker_credentials."""
        import faust  # here: producers use this module too, and importing Faust takes ~1 s

        credentials: Any = None
        if self.sasl_mechanism is not None:
            credentials = faust.SASLCredentials(
                username=self.sasl_username,
                password=self.sasl_password,
                mechanism=self.sasl_mechanism,
                ssl_context=self.ssl_context,
            )
        elif self.ssl_context is not None:
            credentials = self.ssl_context
        return {
            "broker": [f"kafka://{server}" for server in self.servers],
            "broker_credentials": credentials,
        }


def client_options(settings: Settings) -> dict[str, Any]:
    """Connection options shared by every aiokafka client (producer, consumer, admin)."""
    return KafkaConnection.from_settings(settings).aiokafka()


def faust_broker_options(settings: Settings) -> dict[str, Any]:
    """The broker options of faust.App for these settings."""
    return KafkaConnection.from_settings(settings).faust()


async def ensure_topics(settings: Settings) -> list[str]:
    """Create the events, dead-letter, customer and accounts topics when missing; returns those
    created."""
    admin = AIOKafkaAdminClient(**client_options(settings), request_timeout_ms=10_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(settings.topic, settings.partitions, settings.replication_factor),
            # The dead-letter topic is low volume; one partition keeps its order readable.
            NewTopic(settings.dlq_topic, 1, settings.replication_factor),
            # Customer facts, keyed by customer: the customer stage's partitions.
            NewTopic(
                settings.customer_topic,
                settings.customer_partition_count,
                settings.replication_factor,
            ),
            # Directory upserts of a CRM: low volume, keyed by account; one partition.
            NewTopic(settings.accounts_topic, 1, settings.replication_factor),
        ]
        missing = [t for t in wanted if t.name not in existing]
        if missing:
            # Another worker or the stack may create them at the same moment.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
            log.info("created topics %s", ", ".join(t.name for t in missing))
        return [t.name for t in missing]
    finally:
        await admin.close()
