// The view in the URL's hash, so a view can be shared and restored:
//   #/e=<experiment_id>&runs=<id,id>&metrics=<k,k>&x=step|time&log=0|1&zoom=<metric>:<from>:<to>
// (plus poll=<seconds> for tests). Never credentials: those stay in session storage.

const enc = encodeURIComponent;  // also encodes "," and ":", so lists split safely

export function empty() {
  return {experimentId: null, runIds: [], metrics: [], x: "step", log: false, zoom: null,
          poll: null};
}

export function parse(hash) {
  const view = empty();
  const text = (hash || "").replace(/^#\/?/, "");
  for (const part of text.split("&")) {
    const at = part.indexOf("=");
    if (at < 0) continue;
    const key = part.slice(0, at), value = part.slice(at + 1);
    const list = () => value.split(",").filter(Boolean).map(decodeURIComponent);
    try {
      if (key === "e") view.experimentId = decodeURIComponent(value) || null;
      else if (key === "runs") view.runIds = list();
      else if (key === "metrics") view.metrics = list();
      else if (key === "x") view.x = value === "time" ? "time" : "step";
      else if (key === "log") view.log = value === "1";
      else if (key === "zoom") view.zoom = parseZoom(value);
      else if (key === "poll") view.poll = positive(value);
    } catch {
      // a malformed part (bad %-escape) is ignored, the rest of the view still applies
    }
  }
  return view;
}

function parseZoom(value) {
  // <metric>:<from>:<to>, the metric %-encoded (so its own ":" are escaped)
  const parts = value.split(":");
  if (parts.length !== 3) return null;
  const [from, to] = [Number(parts[1]), Number(parts[2])];
  if (!Number.isFinite(from) || !Number.isFinite(to) || to <= from) return null;
  return {metric: decodeURIComponent(parts[0]), from, to};
}

function positive(value) {
  const n = Number(value);
  return Number.isFinite(n) && n > 0 ? n : null;
}

export function format(view) {
  const parts = [];
  if (view.experimentId) parts.push(`e=${enc(view.experimentId)}`);
  if (view.runIds.length) parts.push(`runs=${view.runIds.map(enc).join(",")}`);
  if (view.metrics.length) parts.push(`metrics=${view.metrics.map(enc).join(",")}`);
  parts.push(`x=${view.x}`, `log=${view.log ? 1 : 0}`);
  if (view.zoom) parts.push(`zoom=${enc(view.zoom.metric)}:${view.zoom.from}:${view.zoom.to}`);
  if (view.poll) parts.push(`poll=${view.poll}`);
  return "#/" + parts.join("&");
}

// Write the view to the URL without a new history entry or a hashchange event.
export function write(view) {
  const hash = format(view);
  if (location.hash !== hash) history.replaceState(null, "", hash);
}
