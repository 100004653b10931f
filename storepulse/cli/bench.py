"""The `storepulse bench` subcommand: arguments here, the work in storepulse.bench."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from storepulse.cli.argtypes import count, positive, seconds, share
from storepulse.cli.signals import Stopped
from streams.settings import Settings

__all__ = ["register"]

_DESCRIPTION = """\
Measures the worker on a private local stack (its own Tansu broker and redis-server on free
ports in a temporary directory, stopped afterwards; a running `storepulse stack` is not touched).

N generated events (with a share of duplicates and invalid lines) are preloaded into a topic so
the producer is not measured; then, one variant per process, each with a fresh consumer group
and a fresh Redis database, on the same events:
  trivial       a Faust agent that only decodes each message: the framework's ceiling
  trivial_batch the same decode inside take_events (the batching the worker uses)
  naive         one awaited Redis write per event: the obvious baseline
  worker        the real worker (streams.app.create_app) with the full exact semantics,
                publishing customer facts
  worker_no_facts  the same without customer facts (the 10 % rule: worker >= 0.9 x this)
  customers     the customer stage alone on the facts `worker` published (facts/s)
  both_stages   worker and customer stage at once: first event in to last fact applied
  two_workers   two worker processes sharing the partitions
Throughput is first event taken to last event acknowledged (stored, for the workers), so the
group join is excluded. Then the worker runs on a fresh topic fed live by `storepulse generate`
at --latency-rate for --latency-seconds, and every event's latency from its Kafka timestamp to
its batch being stored gives p50 and p99. Every variant's counters are checked against the
generator's ground truth (`exact`). Last, the worker carries a live feed at
--exporter-feed-rate while --exporter-clients keep-alive HTTP clients load a real
`storepulse exporter` on its Redis (/metrics and /api/kpis?window=15m in turn): requests/s,
p50, p99, max and errors per path, and the worker's latency and lag meanwhile.

Prints a table and writes --output (JSON). Default sizes took ~9 minutes on the 2-core
reference machine while other work used 1.5 of its cores (less on an idle one).
Targets on the 2-core reference machine: worker >= 1.5 x Faust's trivial agent as configured
by default, >= 2 x naive, p99 < 1 s at 5,000 events/s, exact; two workers >= 1.8 x one where
the machine has 4 cores or more; the exporter's p99 < 100 ms without errors, the worker's p99
< 1 s meanwhile. The latency is also measured at --latency-multiples of the rate (the curve:
carried, p50, p99). --exporter-only runs that last part alone (~1 minute). Unless
--no-profile, the worker and the trivial agent also run under py-spy (a dev dependency) and
the results say where their time goes. --customer-state measures the customer stage's Redis
memory and the daily report's time over a 1M-customer base instead; --account-state the
account views' memory and the top-N report's time over 100,000 accounts.
"""


def _multiples(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not numbers separated by commas: {text!r}") from None
    if any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"multiples must be positive: {text!r}")
    return values


def _cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    from storepulse.bench.options import BenchError, BenchOptions
    from storepulse.bench.render import render_table
    from storepulse.bench.run import run_bench

    def progress(line: str) -> None:
        if not args.quiet:
            print(line, file=sys.stderr, flush=True)

    opts = BenchOptions(
        events=args.events,
        partitions=args.partitions,
        latency_rate=args.latency_rate,
        latency_seconds=args.latency_seconds,
        seed=args.seed,
        duplicate_share=args.duplicate_share,
        invalid_share=args.invalid_share,
        output=args.output,
        latency_multiples=tuple(args.latency_multiples),
        profile=not args.no_profile,
        profile_output=args.profile_output,
        keep_dir=args.keep_dir,
        work_dir=args.work_dir,
        trivial_batch=not args.no_trivial_batch,
        session_pairs=args.session_pairs,
        latency_baseline=not args.no_latency_baseline,
        latency_scale_out=not args.no_latency_scale_out,
        exporter=not args.no_exporter,
        exporter_only=args.exporter_only,
        customer_state=args.customer_state,
        state_customers=args.state_customers,
        state_days=args.state_days,
        account_state=args.account_state,
        session_script=args.session_script,
        script_reps=args.script_reps,
        state_accounts=args.state_accounts,
        customer_stage=not args.no_customer_stage,
        exporter_clients=args.exporter_clients,
        exporter_seconds=args.exporter_seconds,
        exporter_interval=args.exporter_interval,
        exporter_feed_rate=args.exporter_feed_rate,
        progress=progress,
    )
    try:
        results = run_bench(settings, opts)
    except BenchError as exc:
        print(f"storepulse bench: {exc}", file=sys.stderr)
        return 1
    except Stopped as exc:
        print(f"storepulse bench: {exc} before the end; no results written", file=sys.stderr)
        raise
    print(render_table(results))
    print(f"\nwrote {args.output}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `bench` to the storepulse command."""
    bench = sub.add_parser(
        "bench",
        help="throughput, latency and cost of the worker vs. Faust's ceiling and a naive agent",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    size = bench.add_argument_group("sizes")
    size.add_argument(
        "--events",
        type=count,
        default=150_000,
        help="events preloaded for the throughput variants (default 150,000)",
    )
    size.add_argument(
        "--partitions",
        type=count,
        default=None,
        help="partitions of the bench topics (default STOREPULSE_PARTITIONS, 6)",
    )
    size.add_argument(
        "--latency-rate",
        type=positive,
        default=5_000.0,
        help="events per second offered in the latency run (default 5,000)",
    )
    size.add_argument(
        "--latency-seconds",
        type=positive,
        default=20.0,
        help="length of the latency run in seconds (default 20)",
    )
    size.add_argument(
        "--latency-multiples",
        type=_multiples,
        default=(2.0, 4.0),
        help="more latency runs at these multiples of --latency-rate, comma separated "
        "(default 2,4; '' for none)",
    )
    served = bench.add_argument_group("exporter under load")
    served.add_argument(
        "--exporter-clients",
        type=count,
        default=50,
        help="concurrent keep-alive HTTP clients on the exporter (default 50)",
    )
    served.add_argument(
        "--exporter-seconds",
        type=positive,
        default=15.0,
        help="how long the clients are measured (default 15)",
    )
    served.add_argument(
        "--exporter-interval",
        type=seconds,
        default=0.1,
        help="each client sends a request every this many seconds (default 0.1: 500 "
        "requests/s from 50 clients); 0: each as fast as it is answered",
    )
    served.add_argument(
        "--exporter-feed-rate",
        type=positive,
        default=2_000.0,
        help="events per second the worker carries meanwhile (default 2,000)",
    )
    served.add_argument(
        "--no-exporter", action="store_true", help="skip the exporter run (saves ~45 s)"
    )
    served.add_argument(
        "--exporter-only",
        action="store_true",
        help="run only the exporter run (no preload, no other variant)",
    )
    size.add_argument(
        "--session-pairs",
        type=count,
        default=3,
        help="runs of the worker with and without session figures, alternated (default 3; "
        "the ratio is the best run of each; ~50 s per extra pair)",
    )
    script = bench.add_argument_group("session end detection's Redis time")
    script.add_argument(
        "--session-script",
        action="store_true",
        help="run only the batch script on the preloaded events, with and without session "
        "figures, alternated (no broker, no worker: the Redis time per event, which moves "
        "less with the machine's other load than the worker's rows)",
    )
    script.add_argument(
        "--script-reps",
        type=count,
        default=3,
        help="alternated runs of each with --session-script (default 3; the lowest counts)",
    )
    customers = bench.add_argument_group("the customer stage")
    customers.add_argument(
        "--no-customer-stage",
        action="store_true",
        help="skip its rows: the worker without customer facts, the customer stage alone, "
        "both stages at once (saves ~1.5 min)",
    )
    customers.add_argument(
        "--customer-state",
        action="store_true",
        help="run only the customer state measurement: --state-customers customers over "
        "--state-days days written through the customer stage's Lua script, Redis bytes per "
        "customer and per active customer-day, the daily report's time (~5 min for 1M)",
    )
    customers.add_argument(
        "--state-customers",
        type=count,
        default=1_000_000,
        help="customers of --customer-state (default 1,000,000)",
    )
    customers.add_argument(
        "--state-days",
        type=count,
        default=30,
        help="days of --customer-state (default 30)",
    )
    accounts = bench.add_argument_group("the account views")
    accounts.add_argument(
        "--account-state",
        action="store_true",
        help="run only the account state measurement: --state-accounts accounts over "
        "--state-days days (and 30 before) through the customer stage's Lua script, Redis bytes "
        "per account, the top-N report's time from the query, /api/accounts and the CLI",
    )
    accounts.add_argument(
        "--state-accounts",
        type=count,
        default=100_000,
        help="accounts of --account-state (default 100,000)",
    )
    data = bench.add_argument_group("events")
    data.add_argument("--seed", type=int, default=7, help="generator seed (default 7)")
    data.add_argument(
        "--duplicate-share",
        type=share(0.5),
        default=0.01,
        help="share of re-sent duplicate events in the preloaded data (default 0.01)",
    )
    data.add_argument(
        "--invalid-share",
        type=share(0.5),
        default=0.001,
        help="share of invalid lines (dead-lettered by the worker) (default 0.001)",
    )
    out = bench.add_argument_group("output")
    out.add_argument(
        "--output",
        type=Path,
        default=Path("bench-results.json"),
        help="results JSON (default bench-results.json)",
    )
    out.add_argument(
        "--no-profile",
        action="store_true",
        help="skip the py-spy runs of the worker and the trivial agent (saves ~1 min)",
    )
    out.add_argument(
        "--profile-output",
        type=Path,
        default=Path("bench-profile.txt"),
        help="py-spy's collapsed stacks, for flamegraph.pl or speedscope (default "
        "bench-profile.txt)",
    )
    out.add_argument(
        "--no-trivial-batch",
        action="store_true",
        help="skip the take_events variant of the trivial agent (saves ~30 s)",
    )
    out.add_argument(
        "--no-latency-scale-out",
        action="store_true",
        help="skip the latency run of two worker processes at the same load (saves ~30 s)",
    )
    out.add_argument(
        "--no-latency-baseline",
        action="store_true",
        help="skip the latency run of the trivial take_events agent (the floor the framework and "
        "broker set; saves ~30 s)",
    )
    out.add_argument(
        "--keep-dir", action="store_true", help="keep the temporary directory (logs, data)"
    )
    out.add_argument(
        "--work-dir", type=Path, default=None, help="where the temporary directory is made"
    )
    out.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    bench.set_defaults(handler=_cmd_bench)
