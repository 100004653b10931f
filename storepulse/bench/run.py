"""The bench's sequence: preload, each variant in turn, the live latency runs, the results."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from storepulse.bench.account_state import account_state_results
from storepulse.bench.checks import (
    Check,
    Expected,
    both_checks,
    count_check,
    customer_check,
    facts_published,
    naive_check,
    worker_check,
)
from storepulse.bench.customer_state import customer_state_results
from storepulse.bench.measure import Variant, measure
from storepulse.bench.options import BenchOptions
from storepulse.bench.profile import py_spy_binary, summarise
from storepulse.bench.results import (
    bench_results,
    customer_state_only,
    exporter_only_results,
    session_script_only,
    state_only,
)
from storepulse.bench.runner import Bench
from storepulse.bench.serving import (
    CLIENT_WARM_UP_S,
    WARM_S,
    running_exporter,
    serve_under_load,
)
from storepulse.bench.session_script import session_script_results
from storepulse.bench.sysinfo import Child
from streams.kafka import ensure_topics
from streams.settings import Settings

__all__ = ["run_bench"]


async def _run(bench: Bench) -> dict[str, Any]:
    opts = bench.opts
    bench.start_stack()
    if opts.exporter_only:
        return exporter_only_results(bench, await _exporter_load(bench))
    if opts.customer_state:
        figures = await customer_state_results(bench, opts.state_customers, opts.state_days)
        return customer_state_only(bench, figures)
    if opts.session_script:
        figures = await session_script_results(bench, opts.script_reps)
        return session_script_only(bench, figures)
    if opts.account_state:
        figures = await account_state_results(bench, opts.state_accounts, opts.state_days)
        return state_only(bench, figures, "accounts_api_top_30d_s")
    path, expected = await bench.generate_file()
    preload_s = await bench.preload(path)
    n = opts.events
    variants: dict[str, Variant] = {}

    async def run(name: str, mode: str, check: Check, **kw: Any) -> Variant:
        variants[name] = await measure(bench, name, mode, bench.fresh(name), n, check, **kw)
        return variants[name]

    await run("trivial", "trivial", count_check(n))
    if opts.trivial_batch:
        await run("trivial_batch", "trivial-batch", count_check(n))
    await run("naive", "naive", naive_check(n))
    # The worker publishes customer facts (the default), to a customer topic of its own.
    assert bench.base is not None
    facts_topic = f"{bench.base.topic}.customers"
    worker = bench.fresh("worker", customer_topic=facts_topic)
    variants["worker"] = await measure(bench, "worker", "worker", worker, n, worker_check(expected))
    # The worker without session figures (STOREPULSE_SESSION_FIGURES=false): the funnel alone,
    # its throughput before sessions ended (the 10 % rule of issue 13), and what session end
    # detection costs per event (Redis script time and worker CPU, the difference).
    no_sessions = bench.fresh(
        "worker_no_sessions", customer_topic=f"{facts_topic}.ns", session_figures=False
    )
    variants["worker_no_sessions"] = await measure(
        bench, "worker_no_sessions", "worker", no_sessions, n, worker_check(expected)
    )
    if opts.customer_stage:
        await _customer_stage(bench, variants, worker, expected)
    for k in range(2, opts.session_pairs + 1):
        # Alternated again: one pair is at the mercy of the machine's other load.
        for name, on in ((f"worker_s{k}", True), (f"worker_no_sessions_s{k}", False)):
            again = bench.fresh(name, customer_topic=f"{facts_topic}.{name}", session_figures=on)
            variants[name] = await measure(bench, name, "worker", again, n, worker_check(expected))
    await run("two_workers", "worker", worker_check(expected), processes=2)

    # Latency at a fixed offered load, fed live by the generator into a fresh topic: the
    # worker, then (as the floor the framework and broker set) the trivial take_events agent.
    variants["latency"] = await _live(bench, "latency", "worker")
    if opts.latency_baseline:
        variants["latency_trivial"] = await _live(bench, "latency_trivial", "trivial-batch")
    for multiple in opts.latency_multiples:
        # The latency curve: the same worker at 2x and 4x the load (where is the knee?).
        variants[f"latency_x{multiple:g}"] = await _live(
            bench, f"latency_x{multiple:g}", "worker", rate=opts.latency_rate * multiple
        )
    if opts.latency_scale_out:
        # The same load on two worker processes sharing the partitions: scaling out.
        variants["latency_two_workers"] = await _live(
            bench, "latency_two_workers", "worker", processes=2
        )
    if opts.exporter:
        variants["exporter_load"] = await _exporter_load(bench)

    profiles: dict[str, dict[str, Any]] = {}
    if opts.profile:
        if py_spy_binary() is None:
            bench.say("no py-spy (a dev dependency: `pip install py-spy`): no profile")
        else:
            for mode, check in (("worker", worker_check(expected)), ("trivial", count_check(n))):
                profiles[mode] = await _profiled(bench, mode, n, check)
    return bench_results(bench, variants, preload_s, profiles)


async def _profiled(bench: Bench, mode: str, n: int, check: Check) -> dict[str, Any]:
    """One more run of a variant with py-spy attached after the group join: where time goes."""
    opts = bench.opts
    name = "profile" if mode == "worker" else f"profile_{mode}"
    raw = bench.root / f"{name}.txt"
    prof = await measure(bench, name, mode, bench.fresh(name), n, check, profile=raw)
    summary = summarise(raw)
    output = opts.profile_output
    if mode != "worker":
        output = output.with_name(f"{output.stem}-{mode}{output.suffix}")
    output.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(raw, output)
    return {
        "tool": f"py-spy record --nonblocking --rate 250 (attached to the {mode})",
        "raw_stacks": str(output),
        "events_per_s_under_profiler": round(prof.events_per_s, 1),
        "exact": prof.exact,
        **summary.as_dict(),
        "text": summary.render(mode),
    }


async def _customer_stage(
    bench: Bench, variants: dict[str, Variant], worker: Settings, expected: Expected
) -> None:
    """The customer stage's rows: the worker without facts (its throughput before the stage
    existed, for the 10 % rule), the customer stage alone on the facts the worker variant
    published (facts/s), and both stages at once (events in to the last fact applied)."""
    assert bench.base is not None
    n = bench.opts.events
    facts = await facts_published(worker)
    bench.say(f"the worker published {facts:,} customer facts")
    variants["worker_no_facts"] = await measure(
        bench,
        "worker_no_facts",
        "worker",
        bench.fresh("worker_no_facts", customer_facts=False),
        n,
        worker_check(expected),
    )
    variants["customers"] = await measure(
        bench,
        "customers",
        "customers",
        bench.fresh("customers", customer_topic=worker.customer_topic),
        facts,
        customer_check(expected, facts),
    )
    both = bench.fresh("both_stages", customer_topic=f"{bench.base.topic}.customers.both")
    variants["both_stages"] = await measure(
        bench,
        "both_stages",
        "worker",
        both,
        n,
        both_checks(worker_check(expected), customer_check(expected, facts, with_funnel=True)),
        stages=[("worker", n), ("customers", facts)],
    )


async def _exporter_load(bench: Bench) -> Variant:
    """The worker on a live feed while 50 clients load an exporter on the same Redis.

    The exporter starts (and imports) before the feed, so its start costs the worker nothing.
    """
    assert bench.base is not None
    opts = bench.opts
    name = "exporter_load"
    topic = f"{bench.base.topic}.{name}"
    settings = bench.fresh(name, topic=topic, dlq_topic=f"{topic}.dlq")
    # The feed outlasts the clients: the warm-ups and a margin after.
    seconds = WARM_S + CLIENT_WARM_UP_S + opts.exporter_seconds + 3.0
    async with running_exporter(bench, settings) as url:

        async def load(settings: Settings) -> None:
            bench.exporter_reports[name] = await serve_under_load(bench, settings, url)

        return await _live(
            bench,
            name,
            "worker",
            rate=opts.exporter_feed_rate,
            seconds=seconds,
            during=load,
            settings=settings,
        )


async def _live(
    bench: Bench,
    name: str,
    mode: str,
    processes: int = 1,
    rate: float | None = None,
    seconds: float | None = None,
    during: Callable[[Settings], Awaitable[None]] | None = None,
    settings: Settings | None = None,
) -> Variant:
    """One variant on its own topic fed by `storepulse generate` at the offered rate.

    `during`, when given, runs on the variant's settings while the feed runs; `settings`
    are the variant's when its caller made them already.
    """
    assert bench.base is not None
    opts = bench.opts
    rate = opts.latency_rate if rate is None else rate
    seconds = opts.latency_seconds if seconds is None else seconds
    if settings is None:
        topic = f"{bench.base.topic}.{name}"
        settings = bench.fresh(name, topic=topic, dlq_topic=f"{topic}.dlq")
    manifest = bench.root / f"{name}.manifest.json"
    await ensure_topics(settings)
    fed: dict[str, Any] = {}

    async def feed(procs: Sequence[Child], markers: Sequence[Path]) -> int:
        what = f"{name}: group join and assignment"
        await bench.wait_for(what, lambda: all(m.exists() for m in markers), procs, 120)
        await asyncio.sleep(1.0)  # the first fetch after the assignment
        bench.say(f"{name}: offering {rate:,.0f} events/s for {seconds:g}s")
        generating = asyncio.create_task(
            bench.run_cli(
                settings,
                [
                    "generate",
                    "--rate",
                    str(rate),
                    "--duration",
                    str(seconds),
                    "--seed",
                    str(opts.seed + 1),
                    "--manifest",
                    str(manifest),
                    "--no-create-topics",
                    "--json",
                    "--progress",
                    "never",
                ],
                f"generate-{name}.log",
            )
        )
        try:
            if during is not None:
                await during(settings)
        except BaseException:
            generating.cancel()  # run_cli kills the generator
            await asyncio.gather(generating, return_exceptions=True)
            raise
        out = await generating
        fed["report"] = report = json.loads(out.strip().splitlines()[-1])
        fed["expected"] = Expected.from_manifest(json.loads(manifest.read_text()))
        bench.live_reports[name] = report
        return int(report["lines"])

    async def check(
        settings: Settings, bodies: list[dict[str, Any]]
    ) -> tuple[bool, dict[str, Any]]:
        if mode == "worker":
            return await worker_check(fed["expected"])(settings, bodies)
        return await count_check(int(fed["report"]["lines"]))(settings, bodies)

    return await measure(
        bench, name, mode, settings, 0, check, processes=processes, latency=True, feed=feed
    )


def run_bench(settings: Settings, opts: BenchOptions) -> dict[str, Any]:
    """Run the whole benchmark on a private stack; writes opts.output and returns the results."""
    bench = Bench(settings, opts)
    try:
        results = asyncio.run(_run(bench))
    finally:
        bench.stop_all()
        if opts.keep_dir:
            bench.say(f"kept {bench.root}")
        else:
            shutil.rmtree(bench.root, ignore_errors=True)
    opts.output.parent.mkdir(parents=True, exist_ok=True)
    opts.output.write_text(json.dumps(results, indent=2) + "\n")
    return results
