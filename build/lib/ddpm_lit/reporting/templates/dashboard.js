// The page's behaviour: Vega-Lite charts of the embedded series (log scale, smoothing, jobs shown),
// the epoch slider, the config filter and the sortable jobs table. The data is the JSON in
// #page-data; vegaEmbed comes from the bundle inlined before this script. Nothing is fetched.
const page = JSON.parse(document.getElementById("page-data").textContent);
const errors = [];
window.dashboard = { errors, rendered: 0, views: {} };

function reportError(message) {
  errors.push(String(message));
  const box = document.getElementById("page-errors");
  box.hidden = false;
  box.textContent = "page error: " + errors.join("; ");
}
window.addEventListener("error", (event) => reportError(event.message));
window.addEventListener("unhandledrejection", (event) => reportError(event.reason));

const state = {
  log: false,
  smoothing: Number(document.getElementById("smoothing").value),
  hidden: new Set(),
};

// Debiased exponential moving average, as W&B and TensorBoard smooth (figures.smooth in Python).
function smooth(values, alpha) {
  let mean = 0, weight = 0;
  return values.map((v) => {
    if (v === null) return null;
    mean = alpha * v + (1 - alpha) * mean;
    weight = alpha + (1 - alpha) * weight;
    return mean / weight;
  });
}

const EMBED = { renderer: "svg", actions: { export: true, source: false, compiled: false, editor: false } };

function colorOf(name) {
  const job = (page.jobs || []).find((j) => j.name === name);
  return job ? job.color : page.palette[0];
}

function lineSpec(chart) {
  const smoothing = chart.smooth ? state.smoothing : 0;
  const values = [];
  for (const series of chart.series) {
    if (state.hidden.has(series.name)) continue;
    const smoothed = smoothing > 0 ? smooth(series.y, 1 - smoothing) : series.y;
    series.x.forEach((x, i) => {
      const y = series.y[i];
      if (y === null || (state.log && !(y > 0 && smoothed[i] > 0))) return;
      values.push({ series: series.name, [chart.x]: x, value: y, smoothed: smoothed[i] });
    });
  }
  const names = chart.series.map((s) => s.name);
  const color = {
    field: "series", type: "nominal", title: page.kind === "sweep" ? "job" : null,
    scale: { domain: names, range: names.map(colorOf) },
    legend: page.kind === "sweep" && names.length <= 12 ? { orient: "bottom", columns: 4 } : null,
  };
  const perEpoch = chart.x === "epoch";
  // epochs are whole numbers: a few are each a tick of their own
  const epochs = perEpoch ? [...new Set(chart.series.flatMap((s) => s.x))].sort((a, b) => a - b) : [];
  const x = { field: chart.x, type: "quantitative", title: chart.x,
              axis: perEpoch ? { format: "d", ...(epochs.length <= 12 ? { values: epochs } : { tickMinStep: 1 }) } : {} };
  const y = (field) => ({ field, type: "quantitative", title: chart.title, axis: { format: ".4~g" },
                          scale: { type: state.log ? "log" : "linear", zero: false } });
  const layers = [];
  if (smoothing > 0) {
    layers.push({ mark: { type: "line", opacity: 0.25, interpolate: "linear" }, encoding: { x, y: y("value"), color } });
  }
  layers.push({ mark: { type: "line", strokeWidth: 1.6, point: perEpoch ? { filled: true, size: 30 } : false },
                encoding: { x, y: y("smoothed"), color } });
  layers.push({
    mark: { type: "point", filled: true, size: 45 },
    params: [
      { name: "hover", select: { type: "point", on: "pointerover", clear: "pointerout", nearest: true } },
      { name: "zoom", select: { type: "interval", encodings: ["x", "y"] }, bind: "scales" },
    ],
    encoding: {
      x, y: y("smoothed"), color,
      opacity: { condition: { param: "hover", empty: false, value: 1 }, value: 0 },
      tooltip: [
        { field: "series", title: page.kind === "sweep" ? "job" : "series" },
        { field: chart.x, title: chart.x, format: ",d" },
        { field: "value", title: chart.title, format: ".5g" },
        ...(smoothing > 0 ? [{ field: "smoothed", title: "smoothed", format: ".5g" }] : []),
      ],
    },
  });
  return {
    title: { text: chart.title, subtitle: chart.x === "epoch" ? "per epoch" : "per step", anchor: "start" },
    width: 500, height: 230, data: { values }, layer: layers,
    config: { view: { stroke: null }, axis: { grid: true, gridOpacity: 0.5 }, legend: { symbolOpacity: 1 } },
  };
}

function scatterSpec(item) {
  const numeric = item.points.every((p) => typeof p.value === "number");
  return {
    title: { text: item.setting, subtitle: `final ${page.objective} of each job`, anchor: "start" },
    width: 500, height: 230,
    data: { values: item.points.filter((p) => !state.hidden.has(p.job) && (!state.log || p.objective > 0)) },
    mark: { type: "point", filled: true, size: 90 },
    // zoom binds continuous scales only: the objective's, and the setting's when it is a number
    params: [{ name: "zoom", select: { type: "interval", encodings: numeric ? ["x", "y"] : ["y"] }, bind: "scales" }],
    encoding: {
      x: { field: "value", type: numeric ? "quantitative" : "nominal", title: item.setting,
           scale: numeric ? { zero: false } : undefined },
      y: { field: "objective", type: "quantitative", title: page.objective,
           scale: { type: state.log ? "log" : "linear", zero: false } },
      color: { field: "job", type: "nominal", legend: null,
               scale: { domain: page.jobs.map((j) => j.name), range: page.jobs.map((j) => j.color) } },
      tooltip: [{ field: "job" }, { field: "value", title: item.setting }, { field: "objective", title: page.objective, format: ".5g" }],
    },
  };
}

async function draw(id, spec) {
  try {
    const old = window.dashboard.views[id];
    if (old) old.finalize();
    const result = await vegaEmbed("#" + id, spec, EMBED);
    window.dashboard.views[id] = result;
    window.dashboard.rendered += 1;
  } catch (err) {
    reportError(`${id}: ${err}`);
  }
}

// Redraws run one after another: a second click while charts are drawing waits for the first.
let drawing = Promise.resolve();
function drawAll() {
  drawing = drawing.then(async () => {
    await Promise.all([
      ...page.charts.map((chart) => draw(chart.id, lineSpec(chart))),
      ...(page.scatter || []).map((item) => draw(item.id, scatterSpec(item))),
    ]);
    document.body.dataset.drawn = String(Number(document.body.dataset.drawn || 0) + 1);
  });
  return drawing;
}

document.getElementById("log-scale").addEventListener("change", (event) => {
  state.log = event.target.checked;
  drawAll();
});
const smoothingInput = document.getElementById("smoothing");
smoothingInput.addEventListener("change", () => {
  state.smoothing = Number(smoothingInput.value);
  drawAll();
});
smoothingInput.addEventListener("input", () => {
  document.getElementById("smoothing-value").textContent = Number(smoothingInput.value).toFixed(2);
});

// The validation grid of each epoch on a slider.
const slider = document.getElementById("epoch-slider");
if (slider) {
  const uris = JSON.parse(document.getElementById("grid-uris").textContent);
  slider.addEventListener("input", () => {
    const i = Number(slider.value);
    document.getElementById("epoch-grid").src = uris[i];
    document.getElementById("epoch-label").textContent = `epoch ${page.grids[i]}`;
  });
}

// The config table: a filter on keys and values, and the rows the overrides set.
const filter = document.getElementById("config-filter");
if (filter) {
  const only = document.getElementById("config-overridden");
  const apply = () => {
    const text = filter.value.toLowerCase();
    for (const row of document.querySelectorAll("#config-table tbody tr")) {
      const match = row.textContent.toLowerCase().includes(text);
      row.hidden = !match || (only.checked && !row.classList.contains("overridden"));
    }
  };
  filter.addEventListener("input", apply);
  only.addEventListener("change", apply);
}

// The jobs table: a click on a column sorts by it (numbers as numbers, "–" last).
for (const table of document.querySelectorAll("table.sortable")) {
  table.querySelectorAll("th").forEach((th, column) => {
    th.addEventListener("click", () => {
      const ascending = th.getAttribute("aria-sort") !== "ascending";
      table.querySelectorAll("th").forEach((other) => other.removeAttribute("aria-sort"));
      th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      const key = (row) => {
        const text = row.children[column].textContent.trim().replace(/,/g, "");
        const number = Number(text);
        if (text === "" || text === "–" || /^[-+]?(nan|inf)/i.test(text)) return null;  // missing: sorted last
        return Number.isNaN(number) ? text : number;
      };
      const body = table.tBodies[0];
      const rows = [...body.rows].sort((a, b) => {
        const ka = key(a), kb = key(b);
        if (ka === null || kb === null) return (ka === null) - (kb === null);
        const order = typeof ka === "number" && typeof kb === "number" ? ka - kb : String(ka).localeCompare(String(kb));
        return ascending ? order : -order;
      });
      body.append(...rows);
    });
  });
}

// The jobs shown on the sweep's charts.
for (const toggle of document.querySelectorAll(".job-toggle")) {
  toggle.addEventListener("change", () => {
    if (toggle.checked) state.hidden.delete(toggle.dataset.job);
    else state.hidden.add(toggle.dataset.job);
    drawAll();
  });
}

drawAll();
