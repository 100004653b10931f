"""The storefront event contract: one JSON object per Kafka message, keyed by session_id."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)

from streams.contract.times import MAX_TS_MS, parse_ts

__all__ = [
    "DEFAULT_CHECKOUT_STEPS",
    "MAX_ID_LENGTH",
    "MAX_TS_MS",
    "AddToCart",
    "AnyEvent",
    "CheckoutStep",
    "Event",
    "EventParser",
    "EventType",
    "Purchase",
    "RejectReason",
    "Rejected",
    "RemoveFromCart",
    "Visit",
    "event_json_schema",
    "parse_ts",
]

DEFAULT_CHECKOUT_STEPS: tuple[str, ...] = ("shipping", "payment", "review")
EventType = Literal["visit", "add_to_cart", "remove_from_cart", "checkout_step", "purchase"]
# In the order the worker checks them: the first that applies is the reason (docs/semantics.md).
RejectReason = Literal["malformed", "schema", "key", "future", "late", "session_limit"]


def _segment(value: object) -> object:
    return "unknown" if value is None or (isinstance(value, str) and not value.strip()) else value


EpochMillis = Annotated[
    int,
    BeforeValidator(parse_ts),
    WithJsonSchema(
        {
            "description": "Event time: ISO 8601 with a zone (Z, +hh:mm) or epoch milliseconds.",
            "anyOf": [{"type": "string", "format": "date-time"}, {"type": "integer", "minimum": 0}],
        }
    ),
]
# Ids are kept per session in Redis (event ids) and per partition (order ids): 128 characters
# bound what one id may cost (UUIDs are 36) and, with STOREPULSE_MAX_EVENTS_PER_SESSION, what a
# session may hold.
MAX_ID_LENGTH = 128
Id = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_ID_LENGTH)
]
# The constraints before the validator: pydantic-core then applies them in its str schema,
# and _segment (the missing-or-blank rule) still runs first. The other order made pydantic
# apply them in Python: 2.2 µs/event of the worker's ~47 (docs/benchmarks.md).
Segment = Annotated[
    str,
    StringConstraints(strip_whitespace=True, to_lower=True, max_length=64),
    BeforeValidator(_segment),
]
Country = Annotated[
    str,
    StringConstraints(strip_whitespace=True, to_upper=True, max_length=64),
    BeforeValidator(_segment),
]
# Money is Decimal end to end; at most 4 decimals and 12 integer digits, so per-partition sums
# held as integer ten-thousandths in Redis stay far below 2**63. The JSON Schema is spelled out
# here rather than left to pydantic, whose rendering of Decimal changes between releases.
Money = Annotated[
    Decimal,
    Field(ge=0, max_digits=16, decimal_places=4, allow_inf_nan=False),
    WithJsonSchema(
        {
            "description": "Non-negative amount, at most 12 integer digits and 4 decimals.",
            "anyOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "pattern": r"^\+?[0-9]{1,12}(\.[0-9]{1,4})?$"},
            ],
        }
    ),
]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]


class _Base(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, str_max_length=4_096)

    event_id: Id
    ts: EpochMillis
    session_id: Id
    user_id: Id | None = None
    account_id: Id | None = None
    channel: Segment = "unknown"
    device: Segment = "unknown"
    country: Country = "UNKNOWN"


class Visit(_Base):
    """A page view; the first stage of the funnel."""

    type: Literal["visit"]
    page: Annotated[str, StringConstraints(max_length=2_048)] | None = None


class AddToCart(_Base):
    """An item put in the basket; reaches the ``cart`` stage."""

    type: Literal["add_to_cart"]
    sku: Id
    quantity: Annotated[int, Field(ge=1, le=1_000_000, strict=True)]
    unit_price: Money
    currency: Currency


class RemoveFromCart(_Base):
    """Items taken out of the basket: not a funnel stage, it lowers the cart's value.

    The sku's quantity goes down by ``quantity``, never below zero; a removal of a sku the
    cart does not hold does nothing (docs/semantics.md, "Sessions and carts").
    """

    type: Literal["remove_from_cart"]
    sku: Id
    quantity: Annotated[int, Field(ge=1, le=1_000_000, strict=True)]


class CheckoutStep(_Base):
    """A checkout step passed; ``step`` is one of the configured steps."""

    type: Literal["checkout_step"]
    step: Annotated[str, WithJsonSchema({"type": "string", "enum": list(DEFAULT_CHECKOUT_STEPS)})]

    @field_validator("step")
    @classmethod
    def _known_step(cls, step: str, info: ValidationInfo) -> str:
        steps: tuple[str, ...] = (info.context or {}).get("checkout_steps", DEFAULT_CHECKOUT_STEPS)
        if step not in steps:
            raise ValueError(
                f"unknown checkout step {step[:64]!r}, expected one of {', '.join(steps)}"
            )
        return step


class Purchase(_Base):
    """A placed order; counts once per ``order_id``."""

    type: Literal["purchase"]
    order_id: Id
    revenue: Money
    currency: Currency


AnyEvent = Visit | AddToCart | RemoveFromCart | CheckoutStep | Purchase
Event = Annotated[AnyEvent, Field(discriminator="type")]

# Errors at the top level that mean "this is not a JSON object at all".
_MALFORMED = frozenset({"json_invalid", "json_type", "dict_type", "model_attributes_type"})


class Rejected(Exception):
    """An event the worker refuses, with the reason and a readable detail."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: RejectReason = reason
        self.detail = detail


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False)[:5]:
        where = ".".join(str(p) for p in err["loc"][1:] or err["loc"]) or "event"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


class EventParser:
    """Validates raw message bytes against the contract for a set of checkout steps."""

    def __init__(
        self, checkout_steps: Iterable[str] = DEFAULT_CHECKOUT_STEPS, max_bytes: int = 65_536
    ) -> None:
        self.checkout_steps = tuple(checkout_steps)
        self.max_bytes = max_bytes
        self._adapter: TypeAdapter[AnyEvent] = TypeAdapter(Event)
        self._context = {"checkout_steps": self.checkout_steps}

    def parse(self, raw: bytes | None) -> AnyEvent:
        """The validated event, or Rejected("malformed" | "schema", detail)."""
        if not raw:
            raise Rejected("malformed", "empty message")
        if len(raw) > self.max_bytes:
            raise Rejected("schema", f"event is {len(raw)} bytes, the limit is {self.max_bytes}")
        try:
            return self._adapter.validate_json(raw, context=self._context)
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
            if any(e["type"] in _MALFORMED and not e["loc"] for e in errors):
                raise Rejected("malformed", f"not a JSON object: {errors[0]['msg']}") from None
            raise Rejected("schema", _describe(exc)) from None

    def parse_obj(self, obj: Any) -> AnyEvent:
        """Validate an already decoded object (tests, producers)."""
        try:
            return self._adapter.validate_python(obj, context=self._context)
        except ValidationError as exc:
            raise Rejected("schema", _describe(exc)) from None


def event_json_schema() -> dict[str, Any]:
    """The JSON Schema of one event, as committed in docs/event.schema.json."""
    schema = TypeAdapter(Event).json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "storepulse storefront event"
    schema["description"] = (
        "One storefront event per Kafka message, key = session_id. Unknown extra fields are "
        "ignored. checkout_step.step lists the default steps; deployments may configure others."
    )
    return schema
