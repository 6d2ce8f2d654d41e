// The rip-server platform dashboard: polls the API with the login cookie,
// shows the apps, drives the buttons. Everything an app supplies is written
// with textContent (the page's policy allows no string to become HTML).
"use strict";

const DEFAULT_POLL_MS = 5000;
const MIN_POLL_MS = 100;
const MAX_POLL_MS = 60000;
// The log tail shows the last lines only (the API keeps a few hundred).
const LOG_LINES_SHOWN = 200;

// `/?poll=500` polls every 500 ms (tests); anything else, the default.
const pollMs = (() => {
  const asked = Number.parseInt(new URLSearchParams(location.search).get("poll") ?? "", 10);
  return Number.isFinite(asked) ? Math.min(MAX_POLL_MS, Math.max(MIN_POLL_MS, asked)) : DEFAULT_POLL_MS;
})();
// A request that takes longer than this counts as no answer.
const requestTimeoutMs = Math.max(2000, 2 * pollMs);

const byId = (id) => document.getElementById(id);
const list = byId("apps");
const template = byId("app-template");

// name -> its card, its latest JSON, the counters of the previous poll.
const cards = new Map();
const latest = new Map();
const previous = new Map();
// Apps with a button's request under way.
const busy = new Set();

let lastSuccess = null;
let timer = null;
let running = null;
let again = false;

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function getJson(path) {
  const response = await fetch(path, {
    credentials: "same-origin",
    cache: "no-store",
    headers: { Accept: "application/json" },
    signal: AbortSignal.timeout(requestTimeoutMs),
  });
  if (!response.ok) {
    throw new ApiError(response.status, await errorOf(response));
  }
  return response.json();
}

async function errorOf(response) {
  try {
    const body = await response.json();
    if (typeof body.error === "string") return body.error;
  } catch {
    // Not JSON: the status says enough.
  }
  return `HTTP ${response.status}`;
}

// Polls now (or right after the poll under way), then every pollMs.
function refresh() {
  clearTimeout(timer);
  if (running) {
    again = true;
    return;
  }
  running = pollOnce().finally(() => {
    running = null;
    if (again) {
      again = false;
      refresh();
    } else {
      timer = setTimeout(refresh, pollMs);
    }
  });
}

// A poll that gets no answer marks the page stale; a failure to show the
// answer is a bug of ours and is left to surface as an uncaught error.
async function pollOnce() {
  let apps;
  let logs;
  try {
    apps = await getJson("/api/apps");
    logs = await Promise.all(
      apps.map((app) =>
        getJson(`/api/apps/${encodeURIComponent(app.name)}/logs`).then(
          (body) => body.lines,
          () => null,
        ),
      ),
    );
  } catch (error) {
    markStale(error);
    return;
  }
  render(apps, logs, performance.now());
  markFresh();
}

function clock(date) {
  return date.toTimeString().slice(0, 8);
}

function markFresh() {
  lastSuccess = new Date();
  const updated = byId("updated");
  updated.textContent = clock(lastSuccess);
  updated.setAttribute("datetime", lastSuccess.toISOString());
  byId("stale").hidden = true;
  document.body.classList.remove("is-stale");
}

function markStale(error) {
  let reason;
  if (error instanceof ApiError && error.status === 401) {
    reason = "logged out: open the URL the platform printed at start";
  } else if (error instanceof ApiError) {
    reason = `HTTP ${error.status}: ${error.message}`;
  } else if (error && error.name === "TimeoutError") {
    reason = `no answer in ${requestTimeoutMs} ms`;
  } else {
    reason = "cannot reach it";
  }
  byId("stale-reason").textContent = reason;
  byId("stale-since").textContent = lastSuccess ? clock(lastSuccess) : "never";
  byId("stale").hidden = false;
  document.body.classList.add("is-stale");
}

function render(apps, logs, now) {
  const seen = new Set();
  apps.forEach((app, i) => {
    seen.add(app.name);
    latest.set(app.name, app);
    let card = cards.get(app.name);
    if (!card) {
      card = template.content.firstElementChild.cloneNode(true);
      card.dataset.app = app.name;
      cards.set(app.name, card);
    }
    fill(card, app, logs[i], now);
    // Keep the API's order without moving cards that are in place (a
    // moved button loses focus).
    if (list.children[i] !== card) list.insertBefore(card, list.children[i] ?? null);
  });
  for (const [name, card] of cards) {
    if (!seen.has(name)) {
      card.remove();
      cards.delete(name);
      latest.delete(name);
      previous.delete(name);
    }
  }
  byId("empty").hidden = apps.length > 0;
  const runningApps = apps.filter((app) => app.status === "running").length;
  const workers = apps.reduce((sum, app) => sum + app.pool.length, 0);
  byId("summary").textContent =
    `${apps.length} ${apps.length === 1 ? "app" : "apps"}, ${runningApps} running, ` +
    `${workers} ${workers === 1 ? "worker" : "workers"}`;
}

function field(card, name) {
  return card.querySelector(`[data-field="${name}"]`);
}

function setText(element, text) {
  const value = String(text);
  if (element.textContent !== value) element.textContent = value;
}

// Requests/s and 5xx/s from this poll's counters and the previous poll's;
// null on the first poll, or when a counter went back (a redeploy).
function rates(name, counters, now) {
  const before = previous.get(name);
  previous.set(name, { at: now, requests: counters.requests, serverErrors: counters.serverErrors });
  if (!before || now <= before.at) return null;
  if (counters.requests < before.requests || counters.serverErrors < before.serverErrors) return null;
  const seconds = (now - before.at) / 1000;
  return {
    requests: (counters.requests - before.requests) / seconds,
    errors: (counters.serverErrors - before.serverErrors) / seconds,
  };
}

function perSecond(value) {
  if (value === null) return "—";
  return value.toFixed(value < 10 ? 2 : value < 100 ? 1 : 0);
}

function fill(card, app, lines, now) {
  card.dataset.status = app.status;
  setText(field(card, "name"), app.name);
  const status = field(card, "status");
  setText(status, app.status);
  status.dataset.status = app.status;
  setText(field(card, "version"), app.version ?? "—");
  const error = field(card, "error");
  error.hidden = !app.error;
  setText(error, app.error ?? "");
  setText(field(card, "hosts"), app.hosts.length ? app.hosts.join(", ") : "(none)");
  setText(field(card, "workers"), `${app.pool.length} of ${app.workers}`);
  const states = new Map();
  for (const worker of app.pool) states.set(worker.state, (states.get(worker.state) ?? 0) + 1);
  setText(
    field(card, "states"),
    states.size
      ? [...states]
          .sort(([a], [b]) => a.localeCompare(b))
          .map(([state, n]) => `${state} ${n}`)
          .join(", ")
      : "—",
  );
  setText(field(card, "queue"), `${app.queue.depth} / ${app.queue.max}`);
  if (now !== null) {
    const rate = rates(app.name, app.counters, now);
    setText(field(card, "rps"), perSecond(rate && rate.requests));
    setText(field(card, "eps"), perSecond(rate && rate.errors));
  }
  setText(field(card, "requests"), app.counters.requests);
  setText(field(card, "restarts"), app.counters.restarts);
  setText(field(card, "started"), app.startedAt ?? "—");
  setText(field(card, "env"), app.envKeys.length ? app.envKeys.join(", ") : "(none)");
  fillPool(field(card, "pool"), app.pool);
  if (lines) fillLog(card, lines);
  const waiting = busy.has(app.name);
  const stopped = app.desired === "stopped";
  const button = (action) => card.querySelector(`button[data-action="${action}"]`);
  button("start").disabled = waiting || !stopped;
  button("stop").disabled = waiting || stopped;
  button("restart").disabled = waiting || stopped;
  button("scale-up").disabled = waiting;
  button("scale-down").disabled = waiting || app.workers <= 1;
}

function fillPool(body, pool) {
  const rows = pool.map((worker) => {
    const row = document.createElement("tr");
    row.dataset.pid = worker.pid;
    for (const value of [worker.pid, worker.state, worker.version, worker.served]) {
      const cell = document.createElement("td");
      cell.textContent = String(value);
      row.append(cell);
    }
    return row;
  });
  body.replaceChildren(...rows);
}

function fillLog(card, lines) {
  const pre = field(card, "log");
  const shown = lines.slice(-LOG_LINES_SHOWN).join("\n");
  setText(field(card, "log-count"), lines.length);
  if (pre.textContent === shown) return;
  const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
  pre.textContent = shown;
  if (atBottom) pre.scrollTop = pre.scrollHeight;
}

function notice(text, isError) {
  const element = byId("notice");
  element.textContent = text;
  element.classList.toggle("failed", Boolean(isError));
  element.hidden = false;
}

// A button: POST the action, say how it went, poll again.
async function act(name, action) {
  const app = latest.get(name);
  if (!app || busy.has(name)) return;
  let path = `/api/apps/${encodeURIComponent(name)}/`;
  let body = null;
  if (action === "scale-up" || action === "scale-down") {
    path += "scale";
    body = JSON.stringify({ workers: app.workers + (action === "scale-up" ? 1 : -1) });
  } else {
    path += action;
  }
  busy.add(name);
  fill(cards.get(name), app, null, null);
  try {
    const response = await fetch(path, {
      method: "POST",
      credentials: "same-origin",
      cache: "no-store",
      headers: body ? { "Content-Type": "application/json" } : {},
      body,
      signal: AbortSignal.timeout(requestTimeoutMs),
    });
    if (response.ok) {
      const answer = await response.json();
      const workers = answer.workers === undefined ? "" : ` to ${answer.workers} workers`;
      notice(`${name}: ${answer.status}${workers}`, false);
    } else {
      notice(`${name}: ${action} refused: ${await errorOf(response)}`, true);
    }
  } catch (error) {
    notice(`${name}: ${action} failed: ${error.message}`, true);
  } finally {
    busy.delete(name);
    refresh();
  }
}

list.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-action]");
  const card = button && button.closest("section.app");
  if (card) act(card.dataset.app, button.dataset.action);
});

byId("poll-interval").textContent = pollMs >= 1000 ? `${pollMs / 1000} s` : `${pollMs} ms`;
refresh();
