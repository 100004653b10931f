"""`storepulse generate`: synthetic storefront traffic with incidents, to Kafka or a file."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import TYPE_CHECKING, Any

from storepulse.cli._population import add_population_arguments
from storepulse.cli._publishing import add_kafka_options, fail, progress_enabled
from storepulse.cli.argtypes import count, positive, seconds, share
from storepulse.cli.signals import stop_request
from streams.loop import use_event_loop
from streams.settings import Settings

if TYPE_CHECKING:
    from producers.generate import GenerateOptions

__all__ = ["generate_options", "register"]

_GENERATE = """\
Synthetic storefront traffic from a seeded model: sessions with a channel, device and country
browse, cart, pass the checkout steps (STOREPULSE_CHECKOUT_STEPS) and buy. Defaults land on
published e-commerce norms: session conversion 2.5%, cart abandonment 70%, mobile converting
about half as well as desktop.

Output goes to the Kafka topic of the settings (key = session_id, batched, compressed), paced in
real time at --rate with event time = now; or with --out to a JSONL file (.gz by suffix), as
fast as possible, event time simulated from --start. --manifest writes the seed, the arguments,
the scenarios and the realized ground truth: the funnel per minute, the customers per day.

Customers come back: after an order, a known user or B2B account returns with
--repurchase-probability after about --repurchase-interval (event time) and orders again; to
see it in a run, make the interval shorter than the run (e.g. --repurchase-interval 6h over
days of event time from --start). Shoppers also leave: a browsing session bounces with
--bounce-share, a carting one takes an item out with --removal-share, and a known shopper who
leaves a full cart comes back with --cart-return-share after about --cart-return-delay and
orders (a recovered cart); the manifest carries the ended sessions and carts per minute.

Scenarios (repeatable, combinable): --scenario NAME[:start=S,duration=S,strength=X,step=STEP]
with times in seconds from the run start (suffixes s, m, h allowed); without duration a scenario
lasts to the end of the run.
  steady             nothing changes (marks a baseline window)
  abandonment-spike  strength (default 0.5) = share of sessions whose step (default payment) fails
  checkout-outage    the step (default payment) fails for every session (strength 1.0)
  traffic-surge      strength (default 3) x the baseline session rate of extra low-intent sessions
  tracking-loss      strength (default 0.3) = share of events never sent

Examples:
  storepulse generate --scenario abandonment-spike:start=60,duration=120 --rate 2000 --duration 300
  storepulse generate --out day.jsonl.gz --events 1000000 --seed 7 --manifest day.manifest.json
"""


def _weights(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"expected NAME=WEIGHT, got {part!r}")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
        if out[name.strip()] < 0:
            raise argparse.ArgumentTypeError(f"weight of {name} must be >= 0")
    return out


def _factors(text: str) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    if text.strip().lower() == "none":
        return out
    for dim_name, value in _weights(text).items():
        dim, sep, name = dim_name.partition(":")
        if not sep or dim not in {"channel", "device", "country"}:
            raise argparse.ArgumentTypeError(
                f"expected channel:NAME=F, device:NAME=F or country:NAME=F, got {dim_name!r}"
            )
        out.setdefault(dim, {})[name.upper() if dim == "country" else name] = value
    return out


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `generate` to the storepulse command."""
    fmt = argparse.RawDescriptionHelpFormatter
    gen = sub.add_parser(
        "generate",
        help="synthetic storefront traffic with incident scenarios, to Kafka or a file",
        description=_GENERATE,
        formatter_class=fmt,
    )
    run = gen.add_argument_group("output and run length")
    run.add_argument(
        "--out",
        metavar="FILE",
        help="write JSONL to FILE instead of Kafka (.gz compresses; '-' is stdout); never paced",
    )
    run.add_argument(
        "--rate",
        type=positive,
        default=200.0,
        help="baseline lines per second of event time (default 200); with Kafka also the real-"
        "time sending rate, held within 5%% while the broker keeps up",
    )
    run.add_argument(
        "--no-pace",
        action="store_true",
        help="Kafka only: send as fast as the broker takes it, event time simulated from --start",
    )
    run.add_argument(
        "--duration",
        type=seconds,
        metavar="SECONDS",
        help="stop after this long (wall clock when paced, event time otherwise); e.g. 60, 5m",
    )
    run.add_argument(
        "--events",
        type=count,
        metavar="N",
        help="stop after N lines (duplicates and invalid lines included)",
    )
    run.add_argument(
        "--start",
        metavar="ISO",
        help="event time of the run start, e.g. 2024-05-01T00:00:00Z (default: now)",
    )
    run.add_argument(
        "--seed",
        type=int,
        help="random seed; the same seed and options give the same lines (default: random, "
        "recorded in the summary and manifest)",
    )
    run.add_argument("--manifest", metavar="PATH", help="write the run manifest (JSON) to PATH")
    run.add_argument(
        "--warmup",
        type=seconds,
        metavar="SECONDS",
        help="simulate sessions that started this long before the run so the rate is steady "
        "from the first second (default: 300 s, capped at 100,000 sessions, when paced; else 0)",
    )
    run.add_argument(
        "--no-create-topics",
        dest="create_topics",
        action="store_false",
        help="Kafka only: do not create the events and dead-letter topics when missing",
    )
    add_kafka_options(run)

    model = gen.add_argument_group("traffic model")
    model.add_argument(
        "--scenario",
        action="append",
        default=[],
        metavar="SPEC",
        help="NAME[:start=S,duration=S,strength=X,step=STEP], repeatable (see above)",
    )
    model.add_argument(
        "--cvr",
        type=share(),
        default=0.025,
        help="session conversion rate, purchases / sessions (default 0.025)",
    )
    model.add_argument(
        "--abandonment",
        type=share(),
        default=0.70,
        help="cart abandonment, 1 - purchases / carting sessions (default 0.70)",
    )
    model.add_argument(
        "--cvr-by",
        type=_factors,
        metavar="DIM:NAME=F,...",
        help="relative conversion per segment, normalised so the overall --cvr holds (default "
        "device:desktop=1.45,device:mobile=0.7,device:tablet=1.1 and channel factors from "
        "social=0.5 to email=1.8); 'none' turns them off",
    )
    model.add_argument(
        "--channels",
        type=_weights,
        default={},
        metavar="NAME=W,...",
        help="session shares by channel (default: organic 0.30, direct 0.20, paid_search 0.20, "
        "social 0.12, email 0.08, referral 0.06, affiliate 0.04; names from "
        "STOREPULSE_CHANNELS, unknown names an equal share)",
    )
    model.add_argument(
        "--devices",
        type=_weights,
        default={},
        metavar="NAME=W,...",
        help="session shares by device (default desktop=0.40,mobile=0.52,tablet=0.08; names "
        "from STOREPULSE_DEVICES)",
    )
    model.add_argument(
        "--countries",
        type=_weights,
        default={},
        metavar="CC=W,...",
        help="session shares by ISO country code (default: US 0.40, GB 0.12, DE 0.10, FR 0.08, "
        "CA 0.06 and seven more); given codes replace the default list",
    )
    add_population_arguments(gen)
    model.add_argument("--currency", default="USD", help="ISO 4217 currency (default USD)")
    model.add_argument(
        "--daily-shape",
        type=share(),
        default=0.0,
        metavar="AMPLITUDE",
        help="daily traffic shape: arrivals x (1 + AMPLITUDE*cos), peaking at --peak-hour UTC, "
        "mean unchanged (default 0: flat)",
    )
    model.add_argument(
        "--cvr-daily-shape",
        type=share(),
        default=0.0,
        metavar="AMPLITUDE",
        help="conversion following the day: the cart rate x (1 + AMPLITUDE*cos), peaking at "
        "--peak-hour UTC, mean --cvr unchanged (default 0: the same all day)",
    )
    model.add_argument(
        "--weekend-dip",
        type=share(0.99),
        default=0.0,
        metavar="SHARE",
        help="arrivals on Saturdays and Sundays (UTC) x (1 - SHARE) (default 0: no dip)",
    )
    model.add_argument(
        "--peak-hour",
        type=float,
        default=20.0,
        help="hour (UTC) of the daily peak (default 20)",
    )
    model.add_argument(
        "--think-scale",
        type=positive,
        default=1.0,
        metavar="FACTOR",
        help="multiply every think time by FACTOR (default 1: pages about 20 s apart, checkout "
        "steps about 25 s); 0.1 makes a session last seconds instead of minutes, to drive alert "
        "rules whose windows a test shortened the same way",
    )

    noise = gen.add_argument_group("tracker noise (all off by default)")
    noise.add_argument(
        "--late-share",
        type=share(),
        default=0.0,
        help="share of events delivered late, out of order, by up to --max-delay",
    )
    noise.add_argument(
        "--max-delay",
        type=seconds,
        default=30.0,
        metavar="SECONDS",
        help="largest delivery delay of a late event (default 30 s; keep it under "
        "STOREPULSE_ALLOWED_LATENESS_SECONDS or the worker rejects them as late)",
    )
    noise.add_argument(
        "--duplicate-share",
        type=share(),
        default=0.0,
        help="share of events re-sent within 2 s (same event_id, same bytes)",
    )
    noise.add_argument("--loss-share", type=share(), default=0.0, help="share of events never sent")
    noise.add_argument(
        "--invalid-share",
        type=share(),
        default=0.0,
        help="extra invalid lines per event: truncated JSON, non-objects, missing fields, "
        "naive timestamps, negative money, unknown types (for the dead-letter path)",
    )
    gen.set_defaults(handler=_cmd_generate)


def _jsonable(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in sorted(vars(args).items()):
        if name in {"handler", "command", "verbose"}:
            continue
        out[name] = value
    return json.loads(json.dumps(out, default=str))  # type: ignore[no-any-return]


def generate_options(args: argparse.Namespace, settings: Settings) -> GenerateOptions:
    """GenerateOptions from parsed arguments; ValueError with a readable reason when unusable."""
    from producers.config import (
        DEFAULT_CHANNEL_WEIGHTS,
        DEFAULT_COUNTRY_WEIGHTS,
        DEFAULT_CVR_FACTORS,
        DEFAULT_DEVICE_WEIGHTS,
        TrafficConfig,
        weights_for,
    )
    from producers.generate import GenerateOptions
    from producers.scenarios import parse_scenario
    from streams.contract.times import parse_ts

    for name, weights, allowed in (
        ("--channels", args.channels, settings.channels),
        ("--devices", args.devices, settings.devices),
    ):
        unknown = sorted(set(weights) - set(allowed))
        if unknown:
            raise ValueError(f"{name}: {', '.join(unknown)} not in the settings' {name[2:]}")
    countries = args.countries or DEFAULT_COUNTRY_WEIGHTS
    config = TrafficConfig(
        checkout_steps=settings.checkout_steps,
        channels=weights_for(settings.channels, DEFAULT_CHANNEL_WEIGHTS, args.channels),
        devices=weights_for(settings.devices, DEFAULT_DEVICE_WEIGHTS, args.devices),
        countries=weights_for(
            [c.upper() for c in countries], {k.upper(): v for k, v in countries.items()}, {}
        ),
        rate=args.rate,
        cvr=args.cvr,
        abandonment=args.abandonment,
        cvr_factors=DEFAULT_CVR_FACTORS if args.cvr_by is None else args.cvr_by,
        returning_share=args.returning_share,
        users=args.users,
        b2b_share=args.b2b_share,
        accounts=args.accounts,
        users_per_account=args.users_per_account,
        sales_reps=args.sales_reps,
        slowing_share=args.slowing_share,
        slowing_after_s=args.slowing_after,
        repurchase_probability=args.repurchase_probability,
        repurchase_interval_s=args.repurchase_interval,
        login_at_cart_share=args.login_at_cart,
        bounce_share=args.bounce_share,
        removal_share=args.removal_share,
        cart_return_share=args.cart_return_share,
        cart_return_delay_s=args.cart_return_delay,
        currency=args.currency.upper(),
        daily_amplitude=args.daily_shape,
        daily_peak_hour=args.peak_hour,
        cvr_daily_amplitude=args.cvr_daily_shape,
        weekend_dip=args.weekend_dip,
        late_share=args.late_share,
        max_delay_s=args.max_delay,
        duplicate_share=args.duplicate_share,
        loss_share=args.loss_share,
        invalid_share=args.invalid_share,
        think_scale=args.think_scale,
    )
    config.check()
    if len(config.currency) != 3 or not config.currency.isalpha():
        raise ValueError(f"--currency {args.currency!r} is not an ISO 4217 code")
    scenarios = [parse_scenario(spec, settings.checkout_steps) for spec in args.scenario]
    opts = GenerateOptions(
        config=config,
        scenarios=scenarios,
        out=args.out,
        pace=not args.no_pace,
        duration_s=args.duration,
        events=args.events,
        start_ms=parse_ts(args.start) if args.start else None,
        seed=args.seed,
        manifest=args.manifest,
        warmup_s=args.warmup,
        create_topics=args.create_topics,
        compression=args.compression,
        arguments=_jsonable(args),
    )
    if not opts.paced and opts.duration_s is None and opts.events is None:
        raise ValueError("a file or --no-pace run needs --events or --duration to end")
    return opts


def _cmd_generate(args: argparse.Namespace, settings: Settings) -> int:
    from producers.scenarios import ScenarioError

    try:
        opts = generate_options(args, settings)
    except (ValueError, ScenarioError) as exc:
        return fail("generate", str(exc), 2)
    use_event_loop(settings.event_loop)
    return asyncio.run(_generate_main(settings, opts, args))


async def _generate_main(
    settings: Settings, opts: GenerateOptions, args: argparse.Namespace
) -> int:
    from producers.generate import generate
    from producers.rate import Progress
    from producers.sinks import SinkError

    progress = Progress("generate", enabled=progress_enabled(args.progress))
    with stop_request() as stop:
        try:
            report = await generate(settings, opts, progress, stop.event)
        except SinkError as exc:
            return fail("generate", str(exc), 1)
    print(json.dumps(report.as_dict()) if args.json else report.summary(), flush=True)
    return 1 if report.errors else stop.status()
