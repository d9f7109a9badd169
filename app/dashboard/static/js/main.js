// Wiring: the connect form, the pickers, the board of charts, the URL hash, and the test
// hook window.dashboard (docs/dashboard.md; ids and hook: the dashboard contract).
import * as api from "./api.js";
import * as csv from "./csv.js";
import * as pickers from "./pickers.js";
import * as session from "./session.js";
import * as viewstate from "./viewstate.js";
import {Board} from "./board.js";

const $ = selector => document.querySelector(selector);
const state = {connection: null, connected: false, error: null, experiments: [],
               runList: [], view: viewstate.parse(location.hash)};
const pending = new Set();  // promises window.dashboard.ready() waits for

function track(promise) {
  pending.add(promise);
  const done = () => pending.delete(promise);
  promise.then(done, done);
  return promise;
}

async function ready() {
  while (pending.size) await Promise.allSettled([...pending]);
}

function showError(error) {
  const text = error ? String(error.message || error) : null;  // ApiError: already words
  state.error = text;
  $("#error").textContent = text || "";
  $("#error").hidden = !text;
}

function say(text) {
  $("#status").textContent = text;
}

const board = new Board($("#charts"), {
  track, problem: showError,  // charts that did not load, runs not shown
  pollState: text => { $("#poll-state").textContent = text; },
  changed: () => {
    state.view.zoom = board.view?.zoom ?? null;
    writeView();
    pickers.updateStatuses(board.runs);
  },
});

function writeView() {
  viewstate.write(state.view);
  $("#download-csv").disabled = !board.loaded().length;
}

// Run a step of the page: errors become words in #error, and ready() waits for it.
function act(step) {
  return track((async () => {
    try {
      await step();
    } catch (error) {
      if (error.name === "AbortError") return;
      showError(error);
      say(state.connected ? "Connected" : "Not connected");  // not "Loading…" any more
    }
  })());
}

async function connect(connection) {
  showError(null);
  say("Connecting…");
  try {
    state.experiments = await api.experiments(connection);
  } catch (error) {
    if (error.status === 401) session.clear();  // credentials held from before went stale
    throw error;
  }
  $("#password").value = "";  // from now on in session storage only, not in the page
  state.connection = connection;
  state.connected = true;
  session.save(connection);
  $("#disconnect").disabled = false;
  $("#connect").classList.add("is-connected");
  $("#experiment-search").disabled = false;
  say(`Connected: ${state.experiments.length} experiments`);
  renderExperiments();
  if (state.view.experimentId) await chooseExperiment(state.view.experimentId, true);
}

function renderExperiments() {
  pickers.renderExperiments(state.experiments, state.view.experimentId,
                            id => act(() => chooseExperiment(id, false)));
}

// An experiment's runs; `restoring` keeps the runs, metrics and zoom the URL named.
async function chooseExperiment(id, restoring) {
  showError(null);
  if (!restoring) state.view = {...state.view, runIds: [], metrics: [], zoom: null};
  state.view.experimentId = id;
  renderExperiments();
  board.clear();
  writeView();
  await listRuns();
  await loadBoard();
}

async function listRuns() {
  say("Loading runs…");
  state.runList = [];
  renderRuns();
  state.runList = await api.runList(state.connection, state.view.experimentId,
                                    $("#run-status").value);
  say(`${state.runList.length} runs`);
  renderRuns();
}

function renderRuns() {
  pickers.renderRuns(state.runList, state.view.runIds, (runId, picked) => {
    const ids = state.view.runIds.filter(id => id !== runId);
    state.view.runIds = picked ? [...ids, runId] : ids;
    changeView();
  });
  const keys = pickers.metricKeys(state.runList);
  for (const key of state.view.metrics) if (!keys.includes(key)) keys.push(key);
  pickers.renderMetrics(keys, state.view.metrics, metrics => {
    state.view.metrics = metrics;
    renderRuns();
    changeView();
  });
}

function changeView() {
  state.view.zoom = null;
  writeView();
  act(loadBoard);
}

async function loadBoard() {
  const {runIds, metrics} = state.view;
  if (!runIds.length || !metrics.length) {
    board.clear();
    say(runIds.length ? "Pick metrics to plot" : "Pick runs to plot");
    writeView();
    return;
  }
  showError(null);
  say(`Loading ${metrics.length} charts…`);
  await board.load({...state.view, connection: state.connection});  // each chart as it comes
  writeView();
  pickers.updateStatuses(board.runs);
  const missing = metrics.length - board.loaded().length;
  say(`${metrics.length} charts × ${board.runs.size} runs` +
      (missing ? ` (${missing} not loaded: see each chart)` : ""));
}

function disconnect() {
  session.clear();
  board.clear();
  Object.assign(state, {connection: null, connected: false, experiments: [], runList: []});
  $("#connect").reset();
  $("#disconnect").disabled = true;
  $("#connect").classList.remove("is-connected");
  $("#experiment-search").disabled = true;
  renderExperiments();
  renderRuns();
  showError(null);
  say("Disconnected");
}

function wire() {
  $("#connect").addEventListener("submit", event => {
    event.preventDefault();
    const {problem, connection} = session.fromForm({
      profile: $("#profile").value, trackingUri: $("#tracking-uri").value,
      username: $("#username").value, password: $("#password").value});
    if (problem) return showError(problem);
    act(() => connect(connection));
  });
  $("#disconnect").addEventListener("click", disconnect);
  $("#experiment-search").addEventListener("input", renderExperiments);
  $("#run-search").addEventListener("input", renderRuns);
  $("#run-status").addEventListener("change", () => act(listRuns));
  $("#x-axis").addEventListener("change", restyle);
  $("#log-scale").addEventListener("change", restyle);
  $("#download-csv").addEventListener("click", () => {
    if (board.loaded().length)
      csv.download(csv.build(board.charts(), board.runs, state.view.runIds));
  });
  window.addEventListener("hashchange", () => {  // a pasted or edited URL: that view
    state.view = viewstate.parse(location.hash);
    showControls();
    const id = state.view.experimentId;
    if (state.connected && id) act(() => chooseExperiment(id, true));
  });
}

function restyle() {
  state.view.x = $("#x-axis").value;
  state.view.log = $("#log-scale").checked;
  writeView();
  board.restyle(state.view.x, state.view.log);
}

function showControls() {
  $("#x-axis").value = state.view.x;
  $("#log-scale").checked = state.view.log;
}

window.dashboard = Object.freeze({
  state: () => JSON.parse(JSON.stringify({
    connected: state.connected, error: state.error,
    experimentId: state.view.experimentId, runIds: state.view.runIds,
    metrics: state.view.metrics, charts: board.chartsState(),
    polls: board.live.polls, polling: board.live.polling, lastPoll: board.live.lastPoll})),
  ready,
});

wire();
showControls();
const held = session.load();
if (held) {
  $("#profile").value = held.profile || "";
  $("#tracking-uri").value = held.trackingUri || "";
  $("#username").value = held.username || "";
  act(() => connect(held));
} else {
  say("Not connected");
}
