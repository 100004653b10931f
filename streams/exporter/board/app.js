// storepulse live board: polls /api/kpis and /api/alerts every few seconds and renders them.
"use strict";

(function () {
  // Prometheus scrapes every 5-15 s and the exporter caches a read for 1 s: 3 s feels live
  // without loading Redis (one /api/kpis read per viewer per 3 s at most, shared within 1 s).
  const REFRESH_MS = 3000;
  const WINDOWS = ["5m", "15m", "1h"];
  let windowName = WINDOWS.includes(location.hash.slice(1)) ? location.hash.slice(1) : "15m";
  let timer = null;
  // The history costs more (up to a day of points): every 10 s, and when the range changes.
  const HISTORY_MS = 10000;
  const RANGES = ["1h", "6h", "24h"];
  let rangeName = "1h";
  let historyTimer = null;
  let lastHistory = null;
  let lastAlerts = [];

  const $ = (sel) => document.querySelector(sel);

  function pct(value) {
    return value === null || value === undefined ? "–" : (value * 100).toFixed(2) + "%";
  }

  // Seconds as "4m 05s" (or "42s"): time on site reads better in minutes.
  function duration(value) {
    if (value === null || value === undefined) {
      return "–";
    }
    const whole = Math.round(value);
    const minutes = Math.floor(whole / 60);
    const rest = String(whole % 60).padStart(2, "0");
    return minutes ? minutes + "m " + rest + "s" : whole + "s";
  }

  function count(value) {
    return Number(value).toLocaleString("en-US");
  }

  // Money arrives as exact strings with 2 decimals; shown as is, with the currency as a unit.
  function money(single, byCurrency) {
    const entries = Object.entries(byCurrency || {});
    if (single !== null && single !== undefined) {
      return entries.length === 1 ? [single, entries[0][0]] : [single, ""];
    }
    return [entries.length ? entries.map(([c, v]) => v + " " + c).join(" · ") : "–", ""];
  }

  function setKpi(name, text, raw, unit) {
    const el = document.querySelector('[data-kpi="' + name + '"]');
    el.textContent = text;
    if (unit) {
      const span = document.createElement("span");
      span.className = "unit";
      span.textContent = unit;
      el.append(" ", span);
    }
    el.dataset.value = raw === null || raw === undefined ? "" : String(raw);
  }

  function bar(list, name, fraction, text, cls) {
    const li = document.createElement("li");
    li.dataset.name = name;
    const label = document.createElement("span");
    label.className = "name";
    label.textContent = name;
    const track = document.createElement("span");
    track.className = "track";
    const fill = document.createElement("span");
    fill.className = "fill" + (cls ? " " + cls : "");
    fill.style.display = "block";
    fill.style.width = (Math.max(0, Math.min(1, fraction || 0)) * 100).toFixed(1) + "%";
    track.appendChild(fill);
    const num = document.createElement("span");
    num.className = "num";
    num.textContent = text;
    li.append(label, track, num);
    list.appendChild(li);
  }

  function renderKpis(report) {
    $("#range").textContent = report.from + " – " + report.to;
    $("#bucket").textContent = report.bucket_seconds;
    setKpi("conversion_rate", pct(report.conversion_rate), report.conversion_rate);
    setKpi("cart_abandonment_rate", pct(report.cart_abandonment_rate), report.cart_abandonment_rate);
    const [aov, aovUnit] = money(report.average_order_value, report.average_order_value_by_currency);
    setKpi("average_order_value", aov, report.average_order_value, aovUnit);
    setKpi("orders", count(report.orders), report.orders);
    const [revenue, revenueUnit] = money(report.revenue, report.revenue_by_currency);
    setKpi("revenue", revenue, report.revenue, revenueUnit);

    setKpi("bounce_rate", pct(report.bounce_rate), report.bounce_rate);
    const seconds = report.average_session_seconds;
    setKpi("average_session_seconds", duration(seconds), seconds);
    const pages = report.pages_per_session;
    setKpi("pages_per_session", pages === null ? "–" : pages.toFixed(2), pages);
    setKpi("abandoned_carts", count(report.abandoned_carts), report.abandoned_carts);
    const [risk, riskUnit] = money(report.abandoned_value, report.abandoned_value_by_currency);
    setKpi("abandoned_value", risk, report.abandoned_value, riskUnit);

    const stages = Object.keys(report.sessions);
    const visits = report.sessions[stages[0]] || 0;
    const funnel = $("#funnel");
    funnel.replaceChildren();
    for (const stage of stages) {
      const n = report.sessions[stage];
      bar(funnel, stage, visits ? n / visits : 0, count(n));
    }
    const dropoff = $("#dropoff");
    dropoff.replaceChildren();
    for (const [step, ratio] of Object.entries(report.step_dropoff)) {
      bar(dropoff, step, ratio, pct(ratio), ratio !== null && ratio >= 0.5 ? "high" : "");
    }
  }

  // The history: one chart per KPI (own SVG code, chart.js), the segment table. -------------

  function chartSpecs(history) {
    const c = history.charts;
    const specs = [
      ["conversion", c.conversion, pct, true],
      ["cart_abandonment", c.cart_abandonment, pct, true],
    ];
    for (const [step, line] of Object.entries(c.dropoff)) {
      specs.push(["dropoff:" + step, Object.assign({ step: step }, line), pct, true]);
    }
    specs.push(["orders_per_minute", c.orders_per_minute, (v) => v.toFixed(1), false]);
    for (const [currency, points] of Object.entries(c.revenue_per_minute.by_currency)) {
      const line = { label: c.revenue_per_minute.label + " (" + currency + ")", points: points };
      specs.push(["revenue_per_minute:" + currency, line, (v) => v.toFixed(2), false]);
    }
    return specs;
  }

  // Without Prometheus the exporter has no alert history: the alerts firing now are marked
  // from when they started.
  function firingNow(line, now) {
    const out = [];
    for (const alert of lastAlerts) {
      if (alert.name !== line.alert) continue;
      if (line.step && alert.labels.step && alert.labels.step !== line.step) continue;
      const start = Date.parse(alert.startsAt) / 1000;
      if (!Number.isNaN(start)) out.push([start, now]);
    }
    return out;
  }

  function renderHistory(history) {
    lastHistory = history;
    const from = Date.parse(history.from) / 1000;
    const to = Date.parse(history.to) / 1000;
    const axis = { from: from, to: to, step: history.step_seconds };
    const source = history.source === "prometheus" ? "from Prometheus" : "from the exporter's event-time buckets";
    $("#history-source").textContent = source + (history.error ? " (" + history.error + ")" : "");
    const box = $("#charts");
    const seen = new Set();
    for (const [key, line, format, ratio] of chartSpecs(history)) {
      seen.add(key);
      let figure = box.querySelector('figure[data-chart="' + key + '"]');
      if (!figure) {
        figure = document.createElement("figure");
        figure.className = "chart";
        figure.dataset.chart = key;
        box.appendChild(figure);
      }
      const firing = history.source === "prometheus" || !line.alert ? line.firing || [] : firingNow(line, to);
      window.StorepulseChart.draw(
        figure,
        { label: line.label, points: line.points, threshold: line.threshold, firing: firing, format: format, ratio: ratio },
        axis
      );
    }
    for (const figure of [...box.querySelectorAll("figure")]) {
      if (!seen.has(figure.dataset.chart)) figure.remove();
    }
    renderSegments(history.segments);
    document.body.dataset.range = history.range;
    document.body.dataset.historySource = history.source;
    document.body.dataset.history = String(Number(document.body.dataset.history || 0) + 1);
  }

  function cell(row, text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    row.appendChild(td);
  }

  function renderSegments(rows) {
    const body = $("#segments tbody");
    body.replaceChildren();
    for (const r of rows) {
      const tr = document.createElement("tr");
      tr.dataset.segment = r.channel + "/" + r.device;
      if (r.score !== null && r.score >= 1) tr.className = "beyond";
      cell(tr, r.channel);
      cell(tr, r.device);
      cell(tr, count(r.visits), "num");
      cell(tr, pct(r.conversion), "num");
      cell(tr, pct(r.conversion_baseline), "num muted");
      cell(tr, pct(r.abandonment), "num");
      cell(tr, pct(r.abandonment_baseline), "num muted");
      cell(tr, r.score === null ? "–" : Math.round(r.score * 100) + "%", "num");
      body.appendChild(tr);
    }
  }

  async function refreshHistory() {
    clearTimeout(historyTimer);
    const shown = rangeName;
    const url = "api/history?range=" + encodeURIComponent(shown);
    $("#history-link").href = url;
    try {
      const history = await getJson(url);
      if (shown === rangeName) renderHistory(history);
    } catch (err) {
      $("#history-source").textContent = "no history: " + err.message;
    }
    historyTimer = setTimeout(refreshHistory, HISTORY_MS);
  }

  function renderAlerts(data) {
    lastAlerts = data.alerts || [];
    // The buckets' history marks the alerts firing now: redrawn when they arrive after it.
    if (lastHistory && lastHistory.source !== "prometheus") renderHistory(lastHistory);
    const list = $("#alerts");
    list.replaceChildren();
    const alerts = data.alerts || [];
    const badge = $("#alert-count");
    badge.textContent = String(alerts.length);
    badge.classList.toggle("firing", alerts.length > 0);
    if (!alerts.length) {
      const li = document.createElement("li");
      li.className = "none";
      li.textContent = "none firing";
      list.appendChild(li);
      return;
    }
    for (const alert of alerts) {
      const li = document.createElement("li");
      li.className = alert.severity || "";
      li.dataset.alert = alert.name;
      const name = document.createElement("span");
      name.className = "alert-name";
      name.textContent = alert.name;
      const severity = document.createElement("span");
      severity.className = "alert-severity";
      severity.textContent = alert.severity;
      const summary = document.createElement("div");
      summary.className = "alert-summary";
      summary.textContent = alert.annotations.summary || JSON.stringify(alert.labels);
      li.append(name, severity, summary);
      list.appendChild(li);
    }
  }

  function setStatus(state, text) {
    const el = $("#status");
    el.dataset.state = state;
    el.textContent = text;
  }

  async function getJson(url) {
    const resp = await fetch(url, { cache: "no-store" });
    if (!resp.ok) {
      throw new Error(url.split("?")[0] + " " + resp.status);
    }
    return resp.json();
  }

  async function refresh() {
    clearTimeout(timer);
    const shown = windowName;
    const kpiUrl = "api/kpis?window=" + encodeURIComponent(shown);
    $("#api-link").href = kpiUrl;
    try {
      const [report, alerts] = await Promise.all([getJson(kpiUrl), getJson("api/alerts")]);
      if (shown === windowName) {
        renderKpis(report);
        renderAlerts(alerts);
        $("#updated").textContent = new Date().toLocaleTimeString();
        document.body.dataset.window = shown;
        document.body.dataset.loaded = String(Number(document.body.dataset.loaded || 0) + 1);
        setStatus("ok", "live · " + shown);
      }
    } catch (err) {
      setStatus("error", "no data: " + err.message);
    }
    timer = setTimeout(refresh, REFRESH_MS);
  }

  for (const button of document.querySelectorAll("#windows button")) {
    button.classList.toggle("active", button.dataset.window === windowName);
    button.addEventListener("click", () => {
      windowName = button.dataset.window;
      location.hash = windowName;
      for (const other of document.querySelectorAll("#windows button")) {
        other.classList.toggle("active", other === button);
      }
      refresh();
    });
  }
  for (const button of document.querySelectorAll("#ranges button")) {
    button.addEventListener("click", () => {
      rangeName = RANGES.includes(button.dataset.range) ? button.dataset.range : "1h";
      for (const other of document.querySelectorAll("#ranges button")) {
        other.classList.toggle("active", other === button);
      }
      refreshHistory();
    });
  }
  // Charts are drawn at their box's width in pixels: again when it changes (rotation, resize).
  let resizing = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizing);
    resizing = setTimeout(() => lastHistory && renderHistory(lastHistory), 200);
  });
  refresh();
  refreshHistory();
})();
