// storepulse board: a small SVG line chart (no library): a KPI line, its alert threshold
// (dashed) and the periods its alert fired (shaded), on a time axis.
"use strict";

(function () {
  const NS = "http://www.w3.org/2000/svg";
  const HEIGHT = 150;
  const PAD = { left: 46, right: 8, top: 10, bottom: 20 };

  function el(name, attrs, text) {
    const node = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs || {})) {
      node.setAttribute(k, String(v));
    }
    if (text !== undefined) {
      node.textContent = text;
    }
    return node;
  }

  function clock(t) {
    const d = new Date(t * 1000);
    return String(d.getHours()).padStart(2, "0") + ":" + String(d.getMinutes()).padStart(2, "0");
  }

  // Runs of points without a gap (null, or a hole of more than 2 steps) become one polyline
  // each: a ratio below the minimum sample is not drawn as 0.
  function runs(points, step) {
    const out = [];
    let run = [];
    let last = null;
    for (const [t, v] of points) {
      if (v === null || v === undefined || (last !== null && t - last > 2.01 * step)) {
        if (run.length) out.push(run);
        run = [];
      }
      if (v !== null && v !== undefined) run.push([t, v]);
      last = t;
    }
    if (run.length) out.push(run);
    return out;
  }

  // spec: {label, points, threshold, firing, format(value) -> text, ratio: bool}
  // axis: {from, to, step} in epoch seconds.
  function draw(figure, spec, axis) {
    const width = Math.max(260, Math.floor(figure.clientWidth || 600));
    const values = spec.points.map((p) => p[1]).filter((v) => v !== null && v !== undefined);
    const limits = (spec.threshold || []).map((p) => p[1]).filter((v) => v !== null);
    let high = Math.max(0, ...values, ...limits);
    high = high > 0 ? high * 1.1 : 1;
    if (spec.ratio) high = Math.min(1, high);
    const x = (t) => PAD.left + ((t - axis.from) / Math.max(1, axis.to - axis.from)) * (width - PAD.left - PAD.right);
    const y = (v) => PAD.top + (1 - Math.min(v, high) / high) * (HEIGHT - PAD.top - PAD.bottom);
    const svg = el("svg", {
      viewBox: "0 0 " + width + " " + HEIGHT,
      width: width,
      height: HEIGHT,
      role: "img",
      "aria-label": spec.label,
    });
    svg.append(el("rect", { class: "plot", x: PAD.left, y: PAD.top, width: width - PAD.left - PAD.right, height: HEIGHT - PAD.top - PAD.bottom }));
    for (const [start, end] of spec.firing || []) {
      const x0 = x(Math.max(start, axis.from));
      const x1 = x(Math.min(Math.max(end, start + axis.step), axis.to));
      if (x1 <= PAD.left) continue;
      svg.append(el("rect", { class: "firing", x: x0, y: PAD.top, width: Math.max(2, x1 - x0), height: HEIGHT - PAD.top - PAD.bottom }));
    }
    const line = (points, cls) => {
      for (const run of runs(points, axis.step)) {
        const pts = run.map(([t, v]) => x(t).toFixed(1) + "," + y(v).toFixed(1)).join(" ");
        svg.append(el(run.length > 1 ? "polyline" : "circle", run.length > 1 ? { class: cls, points: pts } : { class: cls, cx: x(run[0][0]), cy: y(run[0][1]), r: 2 }));
      }
    };
    line(spec.threshold || [], "threshold");
    line(spec.points, "kpi");
    svg.append(el("text", { class: "tick", x: PAD.left - 4, y: PAD.top + 9, "text-anchor": "end" }, spec.format(high)));
    svg.append(el("text", { class: "tick", x: PAD.left - 4, y: HEIGHT - PAD.bottom, "text-anchor": "end" }, spec.format(0)));
    svg.append(el("text", { class: "tick", x: PAD.left, y: HEIGHT - 5 }, clock(axis.from)));
    svg.append(el("text", { class: "tick", x: width - PAD.right, y: HEIGHT - 5, "text-anchor": "end" }, clock(axis.to)));

    // The newest point with a value is the one the headline shows for the same window.
    const latest = [...spec.points].reverse().find((p) => p[1] !== null && p[1] !== undefined);
    const caption = figure.querySelector("figcaption") || figure.appendChild(document.createElement("figcaption"));
    caption.replaceChildren();
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = spec.label;
    const now = document.createElement("span");
    now.className = "latest";
    now.textContent = latest ? spec.format(latest[1]) : "–";
    caption.append(name, now);
    figure.dataset.latest = latest ? String(latest[1]) : "";
    figure.dataset.latestTime = latest ? String(latest[0]) : "";
    figure.dataset.firing = String((spec.firing || []).length);
    figure.dataset.thresholdPoints = String((spec.threshold || []).filter((p) => p[1] !== null).length);
    const old = figure.querySelector("svg");
    if (old) old.replaceWith(svg);
    else figure.appendChild(svg);
  }

  window.StorepulseChart = { draw: draw };
})();
