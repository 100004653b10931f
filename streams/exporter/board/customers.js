// storepulse live board, customers panel: polls /api/customers and /api/cohorts and renders them.
"use strict";

(function () {
  // Customer periods are days and weeks: every 10 s is plenty (the exporter caches 1 s anyway).
  const REFRESH_MS = 10000;
  const $ = (sel) => document.querySelector(sel);

  function pct(value) {
    return value === null || value === undefined ? "–" : (value * 100).toFixed(1) + "%";
  }

  function count(value) {
    return Number(value).toLocaleString("en-US");
  }

  function setValue(name, text, raw) {
    const el = document.querySelector('[data-customers="' + name + '"]');
    el.textContent = text;
    el.dataset.value = raw === null || raw === undefined ? "" : String(raw);
  }

  function renderToday(report) {
    // The last row is the current day (it holds the newest complete bucket), the one before
    // it the last complete day: its retention is the one shown.
    const rows = report.rows || [];
    const today = rows[rows.length - 1];
    const yesterday = rows.length > 1 ? rows[rows.length - 2] : null;
    if (!today) {
      return;
    }
    $("#customers-day").textContent = today.start.slice(0, 10);
    setValue("new_customers", count(today.new_customers), today.new_customers);
    setValue("returning_customers", count(today.returning_customers), today.returning_customers);
    setValue("repeat_customers", count(today.repeat_customers), today.repeat_customers);
    const retention = yesterday ? yesterday.retention_rate : null;
    setValue("retention_rate", pct(retention), retention);
    const total = today.new_customers + today.returning_customers;
    const share = total ? today.new_customers / total : 0;
    $("#customers-split .new").style.width = (share * 100).toFixed(1) + "%";
    $("#customers-split .returning").style.width = ((1 - share) * 100).toFixed(1) + "%";
  }

  function renderCohorts(data) {
    const table = $("#cohorts");
    table.replaceChildren();
    const cohorts = data.cohorts || [];
    const width = Math.max(0, ...cohorts.map((c) => c.retention.length));
    const head = document.createElement("tr");
    for (const text of ["cohort", "customers", ...Array.from({ length: width }, (_, k) => "+" + k)]) {
      const th = document.createElement("th");
      th.textContent = text;
      head.appendChild(th);
    }
    table.appendChild(head);
    for (const cohort of cohorts) {
      const tr = document.createElement("tr");
      tr.dataset.cohort = cohort.start;
      const name = document.createElement("td");
      name.textContent = cohort.start.slice(0, 10);
      const size = document.createElement("td");
      size.textContent = count(cohort.customers);
      tr.append(name, size);
      cohort.retention.forEach((share) => {
        const td = document.createElement("td");
        td.className = "cell";
        td.textContent = pct(share);
        td.dataset.value = String(share);
        // Darker is more retained: the triangle reads at a glance.
        td.style.background = "rgba(74, 163, 255, " + (0.1 + 0.8 * share).toFixed(2) + ")";
        tr.appendChild(td);
      });
      table.appendChild(tr);
    }
    if (!cohorts.length) {
      const tr = document.createElement("tr");
      const td = document.createElement("td");
      td.className = "none";
      td.textContent = "no cohort yet";
      tr.appendChild(td);
      table.appendChild(tr);
    }
  }

  async function getJson(url) {
    const resp = await fetch(url, { cache: "no-store" });
    if (!resp.ok) {
      throw new Error(url.split("?")[0] + " " + resp.status);
    }
    return resp.json();
  }

  async function refresh() {
    const panel = $("#customers");
    try {
      const [days, cohorts] = await Promise.all([
        getJson("api/customers?period=day&last=2"),
        getJson("api/cohorts?period=week&last=8"),
      ]);
      renderToday(days);
      renderCohorts(cohorts);
      panel.dataset.loaded = String(Number(panel.dataset.loaded || 0) + 1);
      panel.dataset.state = "ok";
    } catch (err) {
      panel.dataset.state = "error";
      $("#customers-day").textContent = "no data: " + err.message;
    }
    setTimeout(refresh, REFRESH_MS);
  }

  refresh();
})();
