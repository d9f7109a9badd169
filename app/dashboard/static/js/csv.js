// "Download CSV": what the charts show (a zoomed chart: its range), built in the page from
// the points it holds, with the API's columns and its spreadsheet-safe cells (docs/api.md).

const HEADER = "run_id,run_name,metric,step,value,timestamp";

// A text cell: a leading =, +, -, @, tab or CR gets a ' (CSV injection); quoted if needed.
export function cell(text) {
  let s = String(text);
  if (/^[=+\-@\t\r]/.test(s)) s = "'" + s;
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

function number(v) {
  return Number.isFinite(v) ? String(v) : "";  // NaN / Infinity: an empty cell
}

// charts: Map metric -> ChartData; runs: Map run id -> {name}; runIds: the chosen order.
export function build(charts, runs, runIds) {
  const lines = [HEADER];
  for (const [metric, chart] of charts) {
    const shown = chart.shown();
    for (const runId of runIds) {
      const series = shown.get(runId);
      if (!series) continue;
      const prefix = `${cell(runId)},${cell(runs.get(runId)?.name ?? "")},${cell(metric)},`;
      const steps = series.column("steps"), values = series.column("values");
      const times = series.column("timestamps");
      for (let i = 0; i < series.length; i++)
        lines.push(prefix + `${number(steps[i])},${number(values[i])},${number(times[i])}`);
    }
  }
  return lines.join("\r\n") + "\r\n";
}

export function download(text, name = "mlflow-metrics.csv") {
  const url = URL.createObjectURL(new Blob([text], {type: "text/csv"}));
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
