import time, json
from pathlib import Path
from tests import harness
from tests.integration.test_alerting_e2e import *

def test_dbg(make_settings, tmp_path: Path):
    s = make_settings(partitions=3)
    rules = write_short_rules(tmp_path)
    with WebhookReceiver() as receiver:
        exporter, exporter_url = start_exporter(s, tmp_path)
        am = start_alertmanager(tmp_path, [receiver.url])
        prometheus = harness.start_prometheus(tmp_path, [exporter_url.removeprefix("http://")], [am.address], [str(rules)], interval="1s")
        t0 = time.time()
        worker = None
        try:
            with generator(s, tmp_path, "--rate=400", "--duration=90", "--seed=11", "--scenario=steady:duration=30", "--scenario=abandonment-spike:start=30,strength=0.9,step=review"):
                tw = time.time()
                worker = harness.Worker(s, tmp_path).start()
                print("worker start took", time.time()-tw)
                time.sleep(75)
            end = time.time()
            for q in ['storepulse:cart_abandonment_ratio:rate15m{channel="all",device="all"}', 'storepulse:cart_abandonment_ratio:alert_threshold{channel="all",device="all"}', 'storepulse:funnel_sessions:increase15m{stage="cart",channel="all",device="all"}', 'storepulse:funnel_sessions:increase15m{stage="purchase",channel="all",device="all"}','storepulse:consumer_lag:sum', 'sum(storepulse_events_total)']:
                r = prom(prometheus.address, "query_range", query=q, start=str(t0), end=str(end), step="3")["result"]
                print(q)
                for ser in r:
                    print("   ", " ".join(f"{float(t)-t0:.0f}:{float(v):.2f}" for t, v in ser["values"]))
            print([ (a["at"]-t0, a["labels"]["alertname"], a["status"]) for a in receiver.alerts()])
        finally:
            if worker: worker.stop()
            prometheus.stop(); am.stop(); exporter.stop()
