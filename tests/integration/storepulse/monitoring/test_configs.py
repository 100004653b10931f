"""The operational configuration, validated offline: docker-compose.yml, Dockerfile, .env.example,
Prometheus config, rules and their promtool unit tests, Alertmanager config, and the docs that
the alerts point to. No Docker here: compose is checked against the Compose Specification schema
that check-jsonschema vendors (`--builtin-schema vendor.compose-spec`)."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from storepulse.local.stack import LocalStack
from storepulse.monitoring.rules import RULES_NAME, render_rules
from streams.contract.events import DEFAULT_CHECKOUT_STEPS
from streams.settings import Settings
from tests import catalogue
from tests.harness import PROJECT_DIR as ROOT

COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
PROMETHEUS_YML = ROOT / "prometheus" / "prometheus.yml"
ALERTMANAGER_YML = ROOT / "prometheus" / "alertmanager.yml"
RULE_FILES = sorted((ROOT / "prometheus" / "rules").glob("*.yml"))
RULES_FILE = ROOT / "prometheus" / "rules" / RULES_NAME
RULE_TESTS = sorted((ROOT / "prometheus" / "tests").glob("*.yml"))
METRICS_MD = ROOT / "docs" / "metrics.md"
RUNBOOKS_MD = ROOT / "docs" / "runbooks.md"

INFRA = {"kafka", "redis", "prometheus", "alertmanager", "grafana"}
APP = {"worker", "customers-worker", "exporter", "producer"}
ALERTS = {
    "CartAbandonmentSpike",
    "ConversionDrop",
    "CheckoutStepFailing",
    "PipelineStalled",
    "DeadLetterSurge",
    "StorepulseExporterDown",
    "AbandonedCartValueSpike",
    "KeyAccountsQuiet",
}
_VAR_REF = re.compile(r"(?<!\$)\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


def _run(*argv: str, cwd: Path = ROOT, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    binary = shutil.which(argv[0])
    assert binary, f"{argv[0]} not on PATH (apt-get install prometheus prometheus-alertmanager)"
    return subprocess.run(
        [binary, *argv[1:]], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


def _env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f".env.example: not NAME=value: {line!r}"
            values[name.strip()] = value
    return values


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


@pytest.fixture(scope="module")
def rules() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            found.extend(group["rules"])
    return found


# docker-compose.yml ------------------------------------------------------------------------


def _compose_schema() -> dict[str, Any]:
    # check-jsonschema's own copy of the Compose Specification schema. (Its CLI cannot be
    # imported with click 8.3, which faust-streaming pins, so the schema is used directly.)
    spec = importlib.util.find_spec("check_jsonschema")
    assert spec is not None
    assert spec.submodule_search_locations
    package = Path(next(iter(spec.submodule_search_locations)))
    schema: dict[str, Any] = json.loads(
        (package / "builtin_schemas" / "vendor" / "compose-spec.json").read_text()
    )
    return schema


def test_compose_file_is_valid_compose_spec(compose: dict[str, Any]) -> None:
    schema = _compose_schema()
    validator_class = jsonschema.validators.validator_for(schema)
    validator = validator_class(schema, format_checker=jsonschema.FormatChecker())
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []
    # The schema does reject a broken service (the check is not vacuous).
    broken = {**compose, "services": {**compose["services"], "bad": {"image": 1, "nope": True}}}
    assert list(validator.iter_errors(broken))


def test_compose_services_profiles_and_commands(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == INFRA | APP
    for name in INFRA:
        assert services[name]["profiles"] == ["infra"], name
    for name in APP:
        service = services[name]
        assert service["profiles"] == ["app"], name
        assert service["build"] == ".", name
        assert service["image"].startswith("storepulse:"), name
    assert services["worker"]["command"] == ["worker"]
    assert services["customers-worker"]["command"] == ["customers-worker"]
    # The board reads Alertmanager's API (the webhook is its fallback) and its history from
    # Prometheus (its own buckets are the fallback).
    assert services["exporter"]["command"] == [
        "exporter",
        "--alertmanager-url",
        "http://alertmanager:9093",
        "--prometheus-url",
        "http://prometheus:9090",
    ]
    producer = services["producer"]["command"]
    assert producer[0] == "generate"
    assert "--out" not in producer
    assert producer[producer.index("--scenario") + 1].endswith("steady}")
    assert "KAFKA_PROCESS_ROLES" in services["kafka"]["environment"]  # KRaft, no ZooKeeper
    assert "appendonly yes" in " ".join(services["redis"]["command"])


def _image_tag(image: str) -> str:
    name, _, tag = image.rpartition(":")
    assert name, f"{image}: no tag"
    assert "/" not in tag, f"{image}: no tag"
    return tag


def test_images_are_pinned(compose: dict[str, Any]) -> None:
    expected_prefix = {
        "kafka": "apache/kafka:",
        "redis": "redis:",
        "prometheus": "prom/prometheus:",
        "alertmanager": "prom/alertmanager:",
        "grafana": "grafana/grafana-oss:11.6.",
    }
    for name, prefix in expected_prefix.items():
        image = compose["services"][name]["image"]
        assert image.startswith(prefix), image
        tag = _image_tag(image)
        assert tag != "latest", image
        assert re.search(r"\d+\.\d+\.\d+", tag), f"{name}: {image} not pinned"
    froms = re.findall(r"^FROM\s+(\S+)", DOCKERFILE.read_text(), re.MULTILINE)
    assert froms, "Dockerfile has no FROM"
    for image in froms:
        tag = _image_tag(image)
        assert image.startswith("python:3.11"), image
        assert "slim" in tag, image
        assert re.match(r"3\.11\.\d+", tag), f"{image}: patch version not pinned"


def test_healthchecks_and_healthy_dependencies(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        check = service.get("healthcheck", {})
        assert check.get("test"), f"{name} has no healthcheck"
        assert not check.get("disable"), name
        assert check["test"][0] in {"CMD", "CMD-SHELL"}, name
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in compose["services"], (name, dependency)
            assert condition == {"condition": "service_healthy"}, (name, dependency)
    services = compose["services"]
    assert set(services["worker"]["depends_on"]) == {"kafka", "redis"}
    assert set(services["customers-worker"]["depends_on"]) == {"kafka", "redis"}
    assert set(services["exporter"]["depends_on"]) == {"redis"}
    assert "kafka" in services["producer"]["depends_on"]


def test_secrets_come_from_env_and_are_required(compose: dict[str, Any]) -> None:
    services = compose["services"]
    required = {
        ("grafana", "GF_SECURITY_ADMIN_PASSWORD"): "GRAFANA_ADMIN_PASSWORD",
        ("grafana", "GF_SECURITY_ADMIN_USER"): "GRAFANA_ADMIN_USER",
        ("redis", "REDIS_PASSWORD"): "REDIS_PASSWORD",
        ("worker", "STOREPULSE_REDIS_PASSWORD"): "REDIS_PASSWORD",
        ("exporter", "STOREPULSE_REDIS_PASSWORD"): "REDIS_PASSWORD",
        ("exporter", "STOREPULSE_WEBHOOK_TOKEN"): "WEBHOOK_TOKEN",
    }
    for (service, key), variable in required.items():
        value = services[service]["environment"][key]
        assert re.fullmatch(rf"\$\{{{variable}:\?[^}}]+\}}", value), (service, key, value)
    # No literal secret anywhere: every secret-like setting is an interpolation.
    for name, service in services.items():
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"PASSWORD|SECRET|TOKEN|_KEY$", key):
                assert re.fullmatch(r"\$\{\w+:\?[^}]+\}", str(value)), (name, key, value)
    # .env.example commits no secret values.
    example = _env_example()
    for variable in set(required.values()):
        assert example[variable] == "", f".env.example must leave {variable} empty"
    # Alertmanager gets the webhook token as a file (a compose secret), never in its config.
    assert compose["secrets"] == {"webhook_token": {"environment": "WEBHOOK_TOKEN"}}
    assert services["alertmanager"]["secrets"] == ["webhook_token"]
    assert not re.search(r"^\s*credentials:", ALERTMANAGER_YML.read_text(), re.MULTILINE)
    # Redis gets its password through stdin, not its command line.
    redis_command = " ".join(services["redis"]["command"])
    assert "--requirepass" not in redis_command
    assert 'requirepass "$$REDIS_PASSWORD"' in redis_command


def test_every_compose_variable_is_in_env_example() -> None:
    text = COMPOSE.read_text()
    used = {match.group(1) for match in _VAR_REF.finditer(text)}
    assert {"REDIS_PASSWORD", "GRAFANA_ADMIN_PASSWORD"} <= used
    missing = used - set(_env_example())
    assert not missing, f"add to .env.example: {sorted(missing)}"
    # A `:?` (required) variable is required everywhere it is used, never given a default.
    kinds: dict[str, set[str]] = {}
    for match in _VAR_REF.finditer(text):
        kinds.setdefault(match.group(1), set()).add(match.group(2) or "")
    mixed = {name for name, found in kinds.items() if ":?" in found and len(found) > 1}
    assert not mixed, f"required somewhere, defaulted elsewhere: {sorted(mixed)}"


def test_app_settings_are_real_storepulse_variables(compose: dict[str, Any]) -> None:
    fields = {f"STOREPULSE_{name.upper()}" for name in Settings.model_fields}
    for name in APP:
        environment = compose["services"][name]["environment"]
        unknown = {key for key in environment if key.startswith("STOREPULSE_")} - fields
        assert not unknown, (name, unknown)
        assert environment["STOREPULSE_KAFKA_BOOTSTRAP"] == "kafka:9092"
        assert environment["STOREPULSE_REDIS_URL"].startswith("redis://redis:6379/")
    exporter = compose["services"]["exporter"]["environment"]
    assert exporter["STOREPULSE_EXPORTER_HOST"] == "0.0.0.0"
    assert exporter["STOREPULSE_EXPORTER_PORT"] == "19100"


def _bind_mounts(compose: dict[str, Any]) -> list[tuple[str, str, str]]:
    mounts = []
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            if source.startswith("."):
                mounts.append((name, source, target))
    return mounts


def test_mounted_files_exist(compose: dict[str, Any]) -> None:
    mounts = _bind_mounts(compose)
    assert {source for _, source, _ in mounts} == {
        "./prometheus/prometheus.yml",
        "./prometheus/rules",
        "./prometheus/alertmanager.yml",
        "./grafana/provisioning",
        "./grafana/dashboards",
    }
    for name, source, _ in mounts:
        assert (ROOT / source).exists(), f"{name} mounts missing {source}"
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith("."):
                assert source in compose["volumes"], (name, source)
    assert (ROOT / "prometheus" / "rules" / "storepulse.yml").is_file()
    assert (ROOT / "grafana" / "dashboards" / "storepulse.json").is_file()


def test_only_ops_ports_are_published(compose: dict[str, Any]) -> None:
    published = {
        name: service["ports"]
        for name, service in compose["services"].items()
        if "ports" in service
    }
    assert set(published) == {"grafana", "prometheus", "alertmanager", "exporter"}
    for name, ports in published.items():
        for port in ports:
            if name != "grafana":  # Grafana alone has a login
                assert port.startswith("127.0.0.1:"), (name, port)


def test_container_paths_agree(compose: dict[str, Any]) -> None:
    services = compose["services"]
    prometheus_targets = {
        target for _, _, target in _bind_mounts({"services": {"p": services["prometheus"]}})
    }
    config = yaml.safe_load(PROMETHEUS_YML.read_text())
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    assert "/etc/prometheus/rules" in prometheus_targets
    assert "/etc/prometheus/prometheus.yml" in prometheus_targets
    scrape = {job["job_name"]: job for job in config["scrape_configs"]}
    assert scrape["storepulse"]["static_configs"][0]["targets"] == ["exporter:19100"]
    # The customer stage in its own job: PipelineStalled's no_worker leaves it out.
    customers = scrape["storepulse-customers-worker"]["static_configs"][0]["targets"]
    assert customers == ["customers-worker:16067"]
    assert 'storepulse_worker_up{job!="storepulse-customers-worker"}' in RULES_FILE.read_text()
    alertmanagers = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert alertmanagers == ["alertmanager:9093"]
    grafana_targets = {
        target for _, _, target in _bind_mounts({"services": {"g": services["grafana"]}})
    }
    provider = yaml.safe_load(
        (ROOT / "grafana" / "provisioning" / "dashboards" / "storepulse.yml").read_text()
    )
    assert provider["providers"][0]["options"]["path"] in grafana_targets
    home = services["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == provider["providers"][0]["options"]["path"] + "/storepulse.json"


def test_dockerfile_runs_storepulse_as_non_root() -> None:
    text = DOCKERFILE.read_text()
    # The runtime lock's exact versions, then the project without resolving again.
    installs = re.findall(r"^RUN (pip install .*?)(?: &&|$)", text, re.MULTILINE)
    assert installs == [
        "pip install --require-hashes -r requirements-runtime.lock",
        "pip install --no-deps .",
    ]
    users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    assert users
    assert users[-1] not in {"root", "0"}
    assert re.search(r'^ENTRYPOINT \["storepulse"\]', text, re.MULTILINE)
    # Every COPY source is let through by .dockerignore (which ignores everything else).
    allowed = {
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    for line in re.findall(r"^COPY\s+(.+)$", text, re.MULTILINE):
        *sources, _ = line.split()
        for source in sources:
            assert source.rstrip("/") in allowed, f".dockerignore excludes {source}"
            assert (ROOT / source).exists(), source


# Prometheus and Alertmanager ---------------------------------------------------------------


def test_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    # The config names the rules by their container path: check a copy pointing at the repo.
    config = yaml.safe_load(PROMETHEUS_YML.read_text())
    config["rule_files"] = [str(ROOT / "prometheus" / "rules" / "*.yml")]
    copy = tmp_path / "prometheus.yml"
    copy.write_text(yaml.safe_dump(config))
    result = _run("promtool", "check", "config", str(copy))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr
    assert f"{len(RULE_FILES)} rule files found" in result.stdout + result.stderr


def test_rules_pass_promtool_check() -> None:
    assert RULE_FILES
    result = _run("promtool", "check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.slow  # promtool evaluates every rule each minute of 30 rule tests' hours: 35 s
def test_rule_unit_tests_pass() -> None:
    assert RULE_TESTS
    # 35 s alone, 56 s beside the suite's other slow files, and once over 60 s (CI): the time
    # limit only guards against a hang.
    result = _run("promtool", "test", "rules", *map(str, RULE_TESTS), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_test_would_catch_a_wrong_expectation(tmp_path: Path) -> None:
    # The first test group, one expected value changed: promtool must fail.
    source = RULE_TESTS[0]
    tests = yaml.safe_load(source.read_text())
    tests["tests"] = tests["tests"][:1]
    tests["rule_files"] = [str((source.parent / f).resolve()) for f in tests["rule_files"]]
    first = tests["tests"][0]["promql_expr_test"][0]["exp_samples"][0]
    first["value"] = float(first["value"]) + 1
    broken = tmp_path / "broken_test.yml"
    broken.write_text(yaml.safe_dump(tests))
    result = _run("promtool", "test", "rules", str(broken))
    assert result.returncode != 0


def test_every_alert_has_firing_and_quiet_cases(rules: list[dict[str, Any]]) -> None:
    alerts = {rule["alert"] for rule in rules if "alert" in rule}
    assert alerts == ALERTS
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert alerts <= firing, f"no firing case for {sorted(alerts - firing)}"
    assert alerts <= quiet, f"no quiet case for {sorted(alerts - quiet)}"


def _anchors(markdown: str) -> set[str]:
    anchors = set()
    for heading in re.findall(r"^#+\s+(.+)$", markdown, re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


def test_alerts_are_documented_and_labelled(rules: list[dict[str, Any]]) -> None:
    runbook_anchors = _anchors(RUNBOOKS_MD.read_text())
    for rule in rules:
        if "alert" not in rule:
            continue
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        annotations = rule["annotations"]
        assert annotations["summary"], name
        assert annotations["description"], name
        path, _, anchor = annotations["runbook_url"].partition("#")
        assert path.endswith("docs/runbooks.md"), name
        assert anchor == name.lower(), name
        assert anchor in runbook_anchors, f"docs/runbooks.md has no section {name}"
        assert "for" in rule, f"{name} has no `for:`"


def test_recording_rules_follow_naming_and_are_documented(
    rules: list[dict[str, Any]], served: catalogue.Families
) -> None:
    records = {rule["record"] for rule in rules if "record" in rule}
    assert {
        "storepulse:conversion_ratio:rate15m",
        "storepulse:cart_abandonment_ratio:rate15m",
        "storepulse:checkout_dropoff_ratio:rate15m",
    } <= records
    text = METRICS_MD.read_text()
    for record in records:
        assert re.fullmatch(r"[a-z_]+:[a-z_]+:[a-z0-9_]+", record), record
        assert f"`{record}`" in text, f"docs/metrics.md does not describe {record}"
    for alert in ALERTS:
        assert alert in text, f"docs/metrics.md does not list {alert}"
    # Rules use only what the exporter and the worker serve (with labels they have), their
    # own recordings, and `up`.
    exprs = [(rule.get("record") or rule["alert"], rule["expr"]) for rule in rules]
    used = catalogue.check_expressions(exprs, served, records)
    assert {"storepulse_funnel_sessions_total", "storepulse_consumer_lag"} <= used
    assert used & records


def test_the_catalogue_is_what_the_exporter_and_the_worker_serve(
    served: catalogue.Families,
) -> None:
    documented = catalogue.documented()
    assert sorted(set(served) - set(documented)) == [], "served, missing in docs/metrics.md"
    assert sorted(set(documented) - set(served)) == [], "in docs/metrics.md, not served"
    # The high-water mark behind the lag comes from a Kafka consumer, which the fixture's
    # batch did not have, and it has no customer stage (no customer partition, no customer
    # order, no ordering customers for a retention ratio): those families alone are served
    # without a sample. Their labels are those of the exporter's own families
    # (tests/integration/streams/exporter checks they agree).
    unknown = {name for name, family in served.items() if family.labels is None}
    assert unknown == {
        "storepulse_consumer_lag",
        "storepulse_customer_consumer_lag",
        "storepulse_customer_revenue_total",  # no currency without a customer's order
        "storepulse_period_retention_ratio",
        # No account with users or revenue in the 30 days (the fixture has no account).
        "storepulse_account_usage_ratio",
        "storepulse_account_revenue",
        "storepulse_rep_account_usage_ratio",
        "storepulse_rep_account_revenue",
    }
    offline = catalogue.exporter_families()
    for name, family in served.items():
        doc = documented[name]
        assert doc.type == family.type, f"docs/metrics.md: {name} is a {family.type}"
        labels = family.labels if family.labels is not None else offline[name].labels
        assert doc.labels == labels, f"docs/metrics.md: {name} has labels {sorted(labels or ())}"


def test_a_renamed_metric_or_label_is_noticed(served: catalogue.Families) -> None:
    # The catalogue check above, on a copy of the docs with one name and one label changed.
    text = METRICS_MD.read_text()
    renamed = catalogue.documented(text.replace("`storepulse_orders_total`", "`storepulse_orders`"))
    assert "storepulse_orders_total" not in renamed
    relabelled = catalogue.documented(text.replace("`reason` (malformed", "`cause` (malformed"))
    assert relabelled["storepulse_events_rejected_total"].labels != (
        served["storepulse_events_rejected_total"].labels
    )
    # And a rule naming a series nobody serves.
    with pytest.raises(AssertionError, match="storepulse_order_total is not served"):
        catalogue.check_expressions([("r", "rate(storepulse_order_total[5m])")], served, set())
    with pytest.raises(AssertionError, match="has no label 'segment'"):
        catalogue.check_expressions([("r", 'storepulse_orders_total{segment="x"}')], served, set())


def test_alertmanager_config_passes_amtool() -> None:
    result = _run("amtool", "check-config", str(ALERTMANAGER_YML))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    config = yaml.safe_load(ALERTMANAGER_YML.read_text())
    assert config["route"]["group_by"] == ["alertname"]
    receiver = {r["name"]: r for r in config["receivers"]}[config["route"]["receiver"]]
    assert receiver["webhook_configs"][0]["url"] == "http://exporter:19100/api/alerts"
    assert receiver["webhook_configs"][0]["send_resolved"] is True
    # Authenticated with the exporter's token, read from the secret compose mounts.
    assert receiver["webhook_configs"][0]["http_config"] == {
        "authorization": {"type": "Bearer", "credentials_file": "/run/secrets/webhook_token"}
    }


def test_the_local_stacks_alertmanager_config_passes_amtool(tmp_path: Path) -> None:
    token = "local-stack-webhook-token"
    with_token = Settings(state_dir=tmp_path / "on", webhook_token=token, exporter_port=19111)
    without = Settings(state_dir=tmp_path / "off")
    for settings in (with_token, without):
        LocalStack(settings).processes()  # renders the configs; starts nothing
        path = settings.state_dir / "alertmanager" / "alertmanager.yml"
        result = _run("amtool", "check-config", str(path))
        assert result.returncode == 0, result.stdout + result.stderr
        assert "SUCCESS" in result.stdout
    on = json.loads((with_token.state_dir / "alertmanager" / "alertmanager.yml").read_text())
    (hook,) = on["receivers"][0]["webhook_configs"]
    assert hook["url"] == "http://127.0.0.1:19111/api/alerts"
    token_file = Path(hook["http_config"]["authorization"]["credentials_file"])
    assert hook["http_config"]["authorization"]["type"] == "Bearer"
    assert token_file.read_text() == token
    assert token_file.stat().st_mode & 0o777 == 0o600
    assert token not in json.dumps(on)
    # Without a token Alertmanager posts nowhere (the demo's exporter reads its API), and a
    # token file left by an earlier run is removed.
    off = json.loads((without.state_dir / "alertmanager" / "alertmanager.yml").read_text())
    assert off["receivers"] == [{"name": "storepulse-webhook"}]
    LocalStack(with_token.model_copy(update={"webhook_token": None})).processes()
    assert not token_file.exists()


def test_the_demos_exporter_reads_the_stacks_alertmanager() -> None:
    from storepulse.local.demo import demo_processes

    settings = Settings(alertmanager_port=19444)
    (exporter,) = [p for p in demo_processes(settings, 10) if p.spec.name == "demo-exporter"]
    argv = exporter.spec.argv
    assert argv[argv.index("--alertmanager-url") + 1] == "http://127.0.0.1:19444"


def test_amtool_rejects_a_broken_config(tmp_path: Path) -> None:
    config = yaml.safe_load(ALERTMANAGER_YML.read_text())
    config["route"]["receiver"] = "nobody"
    broken = tmp_path / "alertmanager.yml"
    broken.write_text(yaml.safe_dump(config))
    assert _run("amtool", "check-config", str(broken)).returncode != 0


def test_committed_rules_are_the_rendering_for_the_default_settings() -> None:
    assert RULE_FILES == [RULES_FILE]
    defaults = Settings()
    assert defaults.checkout_steps == DEFAULT_CHECKOUT_STEPS
    assert defaults.min_sample == 20
    assert RULES_FILE.read_text() == render_rules(defaults), (
        "regenerate: storepulse rules --output prometheus/rules/storepulse.yml"
    )


def test_rules_for_another_minimum_sample_change_exactly_its_places(tmp_path: Path) -> None:
    default = render_rules(Settings()).splitlines()
    fifty_text = render_rules(Settings(min_sample=50))
    fifty = fifty_text.splitlines()
    assert len(fifty) == len(default)
    changed = [(a, b) for a, b in zip(default, fifty, strict=True) if a != b]
    # Conversion (3 and 15 minutes; its baseline averages orders per usual visit, which has
    # the floor already), abandonment (3 and 15 minutes, the baseline), drop-off of cart and
    # the 3 default steps (3 windows each), conversion per usual visit (2 windows), the two
    # comment lines stating the minimum sample; sessions and carts: the bounce ratio, the mean
    # session duration, AbandonedCartValueSpike's carts, and the comments over the first and
    # the last.
    assert len(changed) == 2 + 3 + 3 * 4 + 2 + 2 + 3 + 2
    for a, b in changed:
        assert a.count("20") == 1, a
        assert b == a.replace("20", "50")
    expressions = [b for _, b in changed if not b.lstrip().startswith("#")]
    ends = (">= 50)", ">= 50), 0, 1)", ">= 50), 1)")
    assert all(b.endswith(ends) for b in expressions), expressions
    # No other comparison with 20 is left: every sample floor is the minimum sample.
    assert re.findall(r">= 20\b", fifty_text) == []
    rules = tmp_path / "rules.yml"
    rules.write_text(fifty_text)
    check = _run("promtool", "check", "rules", str(rules))
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS" in check.stdout


def test_the_minimum_sample_decides_what_is_recorded(tmp_path: Path) -> None:
    # Per minute: visit 4, cart 2, purchase 1: in 15 minutes 60 visits and 30 carts. With the
    # default 20 both ratios are recorded; with 50, conversion (60 visits) only.
    series = {"visit": 4, "cart": 2, "purchase": 1}
    input_series = [
        {
            "series": f'storepulse_funnel_sessions_total{{stage="{stage}",channel="web",'
            'device="desktop"}',
            "values": f"0+{per_minute}x20",
        }
        for stage, per_minute in series.items()
    ]
    overall = '{channel="all",device="all"}'
    expected = {
        20: {"conversion_ratio": [0.25], "cart_abandonment_ratio": [0.5]},
        50: {"conversion_ratio": [0.25], "cart_abandonment_ratio": []},
    }
    for min_sample, records in expected.items():
        rules = tmp_path / f"rules-{min_sample}.yml"
        rules.write_text(render_rules(Settings(min_sample=min_sample)))
        tests = {
            "rule_files": [str(rules)],
            "evaluation_interval": "1m",
            "tests": [
                {
                    "interval": "1m",
                    "input_series": input_series,
                    "promql_expr_test": [
                        {
                            "expr": f"storepulse:{record}:rate15m{overall}",
                            "eval_time": "20m",
                            "exp_samples": [
                                {"labels": f"storepulse:{record}:rate15m{overall}", "value": v}
                                for v in values
                            ],
                        }
                        for record, values in records.items()
                    ],
                }
            ],
        }
        test_file = tmp_path / f"rules-{min_sample}_test.yml"
        test_file.write_text(yaml.safe_dump(tests))
        result = _run("promtool", "test", "rules", str(test_file))
        assert result.returncode == 0, f"min_sample={min_sample}\n{result.stdout}{result.stderr}"


def test_rules_for_other_checkout_steps_record_each_step(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text(render_rules(Settings(checkout_steps=("address", "pay"))))
    check = _run("promtool", "check", "rules", str(rules))
    assert check.returncode == 0, check.stdout + check.stderr

    def counter(stage: str, per_minute: int) -> dict[str, str]:
        return {
            "series": f'storepulse_funnel_sessions_total{{stage="{stage}",channel="web",'
            'device="desktop"}',
            "values": f"0+{per_minute}x20",
        }

    # Per minute: cart 16 -> address 8 -> pay 4 -> purchase 1: drop-off 1/2, 1/2, 3/4.
    per_minute = {"visit": 64, "cart": 16, "address": 8, "pay": 4, "purchase": 1}
    dropoff = {"cart": 0.5, "address": 0.5, "pay": 0.75}
    tests = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [counter(s, n) for s, n in per_minute.items()],
                "promql_expr_test": [
                    {
                        # Every step of the configuration, and no default step, is recorded.
                        "expr": 'storepulse:checkout_dropoff_ratio:rate15m{channel="all", '
                        'device="all"}',
                        "eval_time": "20m",
                        "exp_samples": [
                            {
                                "labels": "storepulse:checkout_dropoff_ratio:rate15m"
                                f'{{step="{step}",channel="all",device="all"}}',
                                "value": value,
                            }
                            for step, value in dropoff.items()
                        ],
                    }
                ],
            }
        ],
    }
    test_file = tmp_path / "rules_test.yml"
    test_file.write_text(yaml.safe_dump(tests))
    result = _run("promtool", "test", "rules", str(test_file))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_local_stack_loads_rules_for_its_own_settings(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, checkout_steps=("address", "pay"), min_sample=50)
    LocalStack(settings).processes()  # renders the configs; starts nothing
    config = json.loads((tmp_path / "prometheus" / "prometheus.yml").read_text())
    (rule_file,) = config["rule_files"]
    text = Path(rule_file).read_text()
    assert text == render_rules(settings)
    assert 'labels: {step: "pay"}' in text
    assert '"shipping"' not in text
    assert '{stage="cart"} >= 50), 0, 1)' in text


def test_storepulse_rules_prints_and_writes_the_rendering(tmp_path: Path) -> None:
    from tests import harness

    settings = Settings(state_dir=tmp_path, checkout_steps=("address", "pay"), min_sample=50)
    printed = harness.run_cli(["rules"], settings)
    assert printed.stdout == render_rules(settings)
    assert '{stage="pay"} >= 50), 0, 1)' in printed.stdout
    out = tmp_path / "storepulse.yml"
    harness.run_cli(["rules", "--output", str(out)], settings)
    assert out.read_text() == printed.stdout


def test_key_accounts_quiet_watches_exactly_the_configured_tiers(tmp_path: Path) -> None:
    # The same rise in three tiers: the rendering for one key tier (with a regex character in
    # its name) fires for it alone; the one for no key tier for none.
    tiers = ["a.b", "axb", "silver"]
    input_series = [
        {"series": f'storepulse_accounts_at_risk{{tier="{t}"}}', "values": "4x200 10x8"}
        for t in tiers
    ]
    for key_tiers, firing in ((("a.b",), ["a.b"]), ((), [])):
        rules = tmp_path / f"rules-{len(key_tiers)}.yml"
        rules.write_text(render_rules(Settings(key_tiers=key_tiers)))
        tests = {
            "rule_files": [str(rules)],
            "evaluation_interval": "1h",
            "tests": [
                {
                    "interval": "1h",
                    "input_series": input_series,
                    "promql_expr_test": [
                        {
                            "expr": 'ALERTS{alertname="KeyAccountsQuiet",alertstate="firing"}',
                            "eval_time": "203h",
                            "exp_samples": [
                                {
                                    "labels": 'ALERTS{alertname="KeyAccountsQuiet",'
                                    f'alertstate="firing",severity="warning",tier="{t}"}}',
                                    "value": 1,
                                }
                                for t in firing
                            ],
                        }
                    ],
                }
            ],
        }
        test_file = tmp_path / f"rules-{len(key_tiers)}_test.yml"
        test_file.write_text(yaml.safe_dump(tests))
        result = _run("promtool", "test", "rules", str(test_file))
        assert result.returncode == 0, f"{key_tiers}\n{result.stdout}{result.stderr}"
