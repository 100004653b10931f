// storepulse live board, carts panel: abandoned carts and value at risk per 15 minutes, and the
// share of the last day's abandoned carts recovered so far, from /api/kpis ranges.
"use strict";

(function () {
  // Sessions end 30 min after their last event and recoveries take days: every 30 s is plenty
  // (9 reads of a few buckets each, and one of a day's buckets).
  const REFRESH_MS = 30000;
  const SLICE_S = 900;
  const SLICES = 8;
  const DAY_S = 86400;
  const $ = (sel) => document.querySelector(sel);

  function iso(epochS) {
    return new Date(epochS * 1000).toISOString().replace(".000Z", "Z");
  }

  async function getJson(url) {
    const resp = await fetch(url, { cache: "no-store" });
    if (!resp.ok) {
      throw new Error(url.split("?")[0] + " " + resp.status);
    }
    return resp.json();
  }

  function risk(report) {
    if (report.abandoned_value !== null) {
      const currencies = Object.keys(report.abandoned_value_by_currency);
      return report.abandoned_value + (currencies.length === 1 ? " " + currencies[0] : "");
    }
    return Object.entries(report.abandoned_value_by_currency)
      .map(([c, v]) => v + " " + c)
      .join(" · ");
  }

  function render(slices, day) {
    const list = $("#carts-history");
    list.replaceChildren();
    const most = Math.max(1, ...slices.map((r) => r.abandoned_carts));
    for (const report of slices) {
      const li = document.createElement("li");
      li.dataset.name = report.from;
      li.dataset.carts = String(report.abandoned_carts);
      li.dataset.value = risk(report);
      const label = document.createElement("span");
      label.className = "name";
      label.textContent = report.from.slice(11, 16);
      const track = document.createElement("span");
      track.className = "track";
      const fill = document.createElement("span");
      fill.className = "fill";
      fill.style.display = "block";
      fill.style.width = ((report.abandoned_carts / most) * 100).toFixed(1) + "%";
      track.appendChild(fill);
      const num = document.createElement("span");
      num.className = "num";
      num.textContent = report.abandoned_carts + " · " + risk(report);
      li.append(label, track, num);
      list.appendChild(li);
    }
    const el = document.querySelector('[data-carts="cart_recovery_rate"]');
    const rate = day.cart_recovery_rate;
    el.textContent = rate === null ? "–" : (rate * 100).toFixed(1) + "%";
    el.dataset.value = rate === null ? "" : String(rate);
    document.body.dataset.carts = String(Number(document.body.dataset.carts || 0) + 1);
  }

  async function refresh() {
    try {
      // The window end of the other panels: the newest complete bucket.
      const now = await getJson("api/kpis?window=15m");
      const to = Date.parse(now.to) / 1000;
      const reads = [];
      for (let k = SLICES; k >= 1; k--) {
        const hi = to - (k - 1) * SLICE_S;
        reads.push(getJson("api/kpis?from=" + iso(hi - SLICE_S) + "&to=" + iso(hi)));
      }
      reads.push(getJson("api/kpis?from=" + iso(to - DAY_S) + "&to=" + iso(to)));
      const got = await Promise.all(reads);
      render(got.slice(0, SLICES), got[SLICES]);
    } catch (err) {
      // The main panel's status line says when the API is unreachable.
    }
    setTimeout(refresh, REFRESH_MS);
  }

  refresh();
})();
