// storepulse live board, accounts panel: polls /api/accounts and /api/reps and renders them.
"use strict";

(function () {
  // The last 30 days of whole hours: their figures move slowly; every 10 s is plenty.
  const REFRESH_MS = 10000;
  const RANGE = "days=30";
  const TOP = 10;
  const $ = (sel) => document.querySelector(sel);
  let search = "";
  let timer = null;

  function pct(value) {
    return value === null || value === undefined ? "–" : (value * 100).toFixed(1) + "%";
  }

  function count(value) {
    return Number(value).toLocaleString("en-US");
  }

  // Money arrives as exact strings; several currencies are shown side by side.
  function money(single, byCurrency) {
    const entries = Object.entries(byCurrency || {});
    if (single !== null && single !== undefined) {
      return entries.length === 1 ? single + " " + entries[0][0] : single;
    }
    return entries.length ? entries.map(([c, v]) => v + " " + c).join(" · ") : "–";
  }

  function table(el, header, rows, empty) {
    el.replaceChildren();
    const head = document.createElement("tr");
    for (const text of header) {
      const th = document.createElement("th");
      th.textContent = text;
      head.appendChild(th);
    }
    el.appendChild(head);
    for (const row of rows) {
      el.appendChild(row);
    }
    if (!rows.length) {
      const tr = document.createElement("tr");
      const td = document.createElement("td");
      td.className = "none";
      td.colSpan = header.length;
      td.textContent = empty;
      tr.appendChild(td);
      el.appendChild(tr);
    }
  }

  function cells(tr, values) {
    for (const [name, text] of values) {
      const td = document.createElement("td");
      td.dataset.field = name;
      td.textContent = text;
      tr.appendChild(td);
    }
    return tr;
  }

  function accountRow(a) {
    const tr = document.createElement("tr");
    tr.dataset.account = a.account_id;
    if (a.at_risk) {
      tr.className = "risk";
    }
    return cells(tr, [
      ["account_id", a.account_id],
      ["name", a.name || "–"],
      ["tier", a.tier],
      ["sales_rep", a.sales_rep || "–"],
      ["active_users", count(a.active_users)],
      ["usage_rate", pct(a.usage_rate)],
      ["orders", count(a.orders)],
      ["revenue", money(a.revenue, a.revenue_by_currency)],
      ["last_order_at", a.last_order_at ? a.last_order_at.slice(0, 16).replace("T", " ") : "–"],
    ]);
  }

  const ACCOUNT_HEADER = ["account", "name", "tier", "rep", "users", "usage", "orders", "revenue", "last order"];

  function renderTop(report) {
    const t = report.totals;
    $("#accounts-range").textContent = report.from + " – " + report.to;
    for (const name of ["active_accounts", "ordering_accounts", "at_risk_accounts"]) {
      const el = document.querySelector('[data-accounts="' + name + '"]');
      el.textContent = count(t[name]);
      el.dataset.value = String(t[name]);
    }
    const rev = document.querySelector('[data-accounts="revenue"]');
    rev.textContent = money(t.revenue, t.revenue_by_currency);
    $("#accounts-title").firstChild.textContent = search ? 'Accounts matching "' + search + '" ' : "Top accounts ";
    table($("#top-accounts"), ACCOUNT_HEADER, report.accounts.map(accountRow), search ? "no account matches" : "no account active");
  }

  function renderRisk(report) {
    table($("#risk-accounts"), ACCOUNT_HEADER, report.accounts.map(accountRow), "no account at risk");
  }

  function renderReps(report) {
    const rows = report.reps.map((r) => {
      const tr = document.createElement("tr");
      tr.dataset.rep = r.sales_rep === null ? "" : r.sales_rep;
      return cells(tr, [
        ["sales_rep", r.sales_rep === null ? "(no rep)" : r.sales_rep],
        ["accounts", count(r.accounts)],
        ["active_accounts", count(r.active_accounts)],
        ["ordering_accounts", count(r.ordering_accounts)],
        ["new_accounts", count(r.new_accounts)],
        ["at_risk_accounts", count(r.at_risk_accounts)],
        ["orders", count(r.orders)],
        ["revenue", money(r.revenue, r.revenue_by_currency)],
        ["revenue_growth", pct(r.revenue_growth)],
      ]);
    });
    table($("#reps"), ["sales rep", "accounts", "active", "ordering", "new", "at risk", "orders", "revenue", "growth"], rows, "no sales rep");
  }

  async function getJson(url) {
    const resp = await fetch(url, { cache: "no-store" });
    if (!resp.ok) {
      throw new Error(url.split("?")[0] + " " + resp.status);
    }
    return resp.json();
  }

  async function refresh() {
    const panel = $("#accounts");
    clearTimeout(timer);
    const q = search ? "&q=" + encodeURIComponent(search) + "&top=20" : "&top=" + TOP;
    try {
      const [top, risk, reps] = await Promise.all([
        getJson("api/accounts?" + RANGE + q),
        getJson("api/accounts?" + RANGE + "&at_risk=true&top=" + TOP),
        getJson("api/reps?" + RANGE),
      ]);
      renderTop(top);
      renderRisk(risk);
      renderReps(reps);
      panel.dataset.search = search;
      panel.dataset.loaded = String(Number(panel.dataset.loaded || 0) + 1);
      panel.dataset.state = "ok";
    } catch (err) {
      panel.dataset.state = "error";
      $("#accounts-range").textContent = "no data: " + err.message;
    }
    timer = setTimeout(refresh, REFRESH_MS);
  }

  $("#account-search").addEventListener("submit", (ev) => {
    ev.preventDefault();
    search = $("#account-q").value.trim();
    refresh();
  });
  $("#account-clear").addEventListener("click", () => {
    search = "";
    $("#account-q").value = "";
    refresh();
  });

  refresh();
})();
