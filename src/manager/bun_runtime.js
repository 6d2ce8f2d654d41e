// rip-server's Bun worker runtime.
//
// What it is: the program a Bun worker process runs. The manager embeds this
// file in the rip-server binary, writes it into a private temporary directory
// and starts `bun --no-install [--preload PLUGIN] <this file>` with the app dir
// as cwd. It loads the app (RIP_ENTRY: .ts/.js/.mjs/.tsx, or .rip through a
// preloaded Bun plugin), serves it on a Unix socket one request at a time and
// speaks the worker protocol with the control socket. No dependencies; it
// writes no file except its socket.
//
// Environment: RIP_WORKER_ID (slot), RIP_SOCKET (where to listen),
// RIP_CONTROL_SOCKET, RIP_APP, RIP_APP_DIR, RIP_ENTRY (absolute), RIP_VERSION,
// RIP_MAX_REQUESTS (0 = no limit), RIP_MAX_AGE_S (0 = no limit). RIP_MAX_RELOADS,
// RIP_HOT_RELOAD and RIP_MANAGER_PID are the manager's business: reloads are
// counted and decided by the manager, and the parent-death signal set by
// `rip-server __exec` survives the exec into Bun.
//
// Protocol (POST /worker on the control socket, JSON, reply {"ok":true}):
//   join     {"op":"join","app","workerId","pid","socket","version","reload":true}
//   quit     {"op":"quit","app","workerId","pid"}            before a clean exit
//   error    {"op":"error",...,"phase":"load"|"reload","error":"<= 8 KiB"}
//   reloaded {"op":"reloaded",...,"reloads":N}
// The app's default export is a function (Request) => Response | string | any
// or an object with fetch(Request); either may be async. A string answers
// text/plain, anything else but a Response answers JSON; a throw answers 500
// and the error goes to stderr only. One request at a time: another one
// arriving meanwhile gets 503 + Rip-Worker-Busy: 1 at once (the slot is held
// until the handler's promise settles, not until a streamed body ends).
// SIGTERM/SIGINT: finish the request in flight, quit, exit 0. SIGHUP: module
// reload once idle; a request arriving during a reload waits for it.
// Standalone: with RIP_CONTROL_SOCKET unset or empty the worker serves without
// joining, quitting or reporting (benches/compare.sh puts HAProxy and nginx in
// front of such workers, to compare front doors on the same app).
//
// What Bun 1.4.5 does, found by experiment (and why the code looks like this):
// - Reload: deleting a module's require.cache key (ESM included) makes the next
//   import evaluate it again, so deleting the app's keys and importing the
//   entry again re-evaluates the entry and every app file it imports. But a
//   module whose import FAILED (syntax error, throw at evaluation) and the
//   modules that imported it stay in Bun's registry in their failed state
//   while NOT being listed by Object.keys(require.cache): every later import
//   of the entry fails again with the old error, even after the fix. Deleting
//   the key explicitly does clear them, so a reload also deletes the key of
//   every module ever listed and of every file found under the app dir (see
//   forgetAppModules). A cache-busting query on the entry is not needed.
//   Keys are real paths, so an app dir reached through a symlink is matched
//   under both names. Packages under node_modules/ are never reloaded. With a
//   .rip plugin preloaded, a reload runs its onLoad again for the .rip files.
// - server.stop() unlinks the socket path it was given without checking that
//   the file there is still its own, which could remove a replacement worker's
//   socket. So we bind a private path next to RIP_SOCKET, chmod it 0600 and
//   rename it onto RIP_SOCKET (atomic; this also replaces a stale file); on
//   exit we unlink RIP_SOCKET only while it is still our inode. Bun does not
//   remove the socket on process.exit() without stop(): a stale file then
//   makes the next bind fail with EADDRINUSE, hence the replace.
// - Graceful server.stop() closes idle keep-alive connections at once and
//   resolves when the responses in progress (streamed bodies included) are
//   written; idleTimeout: 0 really disables Bun's 10 s idle close.
// - maxRequestBodySize: a larger Content-Length gets 413 before the handler
//   runs; a larger chunked body gets 413 too, but the handler has already
//   started and its body read rejects ("Request body exceeded
//   maxRequestBodySize"), which lands in the 500 path (logged, answer is 413).

import fs from "node:fs";
import path from "node:path";
import { format } from "node:util";

const env = process.env;
const WORKER_ID = Number(env.RIP_WORKER_ID ?? 0);
const APP = env.RIP_APP ?? "";
const SOCKET = env.RIP_SOCKET ?? "";
const CONTROL = env.RIP_CONTROL_SOCKET ?? "";
const APP_DIR = path.resolve(env.RIP_APP_DIR || ".");
const ENTRY = path.resolve(APP_DIR, env.RIP_ENTRY ?? "");
const VERSION = Number(env.RIP_VERSION ?? 0);
const MAX_REQUESTS = Number(env.RIP_MAX_REQUESTS ?? 0) || 0;
const MAX_AGE_S = Number(env.RIP_MAX_AGE_S ?? 0) || 0;
const MAX_BODY = 100 * 1024 * 1024;
const MAX_ERROR_BYTES = 8 * 1024;
const JOIN_TIMEOUT_MS = 5000; // the control socket may come up a moment late
const CONTROL_TIMEOUT_MS = 2000;
const DRAIN_TIMEOUT_MS = 5000; // responses still being written at shutdown
const FORGET_LIMIT = 20000; // files visited per reload when walking the app dir

// --- logging: every line prefixed, the app's console output included --------
const PREFIX = `[rip-server worker ${WORKER_ID} pid ${process.pid}] `;
const emit = (stream, text) => stream.write(PREFIX + String(text).replaceAll("\n", "\n" + PREFIX) + "\n");
for (const name of ["log", "info", "debug"]) console[name] = (...a) => emit(process.stdout, format(...a));
for (const name of ["warn", "error"]) console[name] = (...a) => emit(process.stderr, format(...a));
const log = (...a) => emit(process.stderr, format(...a));

/** A default export of the wrong shape: reported without a stack (it would point in here). */
class AppShapeError extends Error {}

/**
 * The full text of a thrown value, headline first: "Error: message", then Bun's
 * rendering (source line, stack). A build failure is an AggregateError whose
 * parts are the build messages; they are rendered one by one because
 * Bun.inspect renders such an AggregateError only once (empty the next time).
 */
function describe(err) {
  if (err instanceof AppShapeError) return err.message;
  if (err === null || typeof err !== "object") return String(err);
  const parts = Array.isArray(err.errors) && err.errors.length > 0 ? err.errors : [err];
  const detail = parts.map((e) => Bun.inspect(e, { colors: false }).trimEnd()).join("\n\n");
  const headline = String(err);
  return detail.startsWith(headline) ? detail : `${headline}\n${detail}`;
}

/** `text` cut to at most MAX_ERROR_BYTES of UTF-8 (never inside a character). */
function truncate(text) {
  const bytes = new TextEncoder().encode(text);
  if (bytes.length <= MAX_ERROR_BYTES) return text;
  const marker = "\n[truncated]";
  const cut = new TextDecoder().decode(bytes.subarray(0, MAX_ERROR_BYTES - marker.length));
  return cut.replace(/\uFFFD$/, "") + marker;
}

// --- control socket --------------------------------------------------------
const identity = { app: APP, workerId: WORKER_ID, pid: process.pid };

/** POSTs `message` to the control socket, retrying connection trouble and 5xx until `deadlineMs`. */
async function control(message, deadlineMs = CONTROL_TIMEOUT_MS) {
  const body = JSON.stringify(message);
  const until = Date.now() + deadlineMs;
  let why = "no attempt";
  while (Date.now() < until) {
    try {
      const res = await fetch("http://localhost/worker", {
        unix: CONTROL,
        method: "POST",
        headers: { "content-type": "application/json" },
        body,
        signal: AbortSignal.timeout(Math.max(1, until - Date.now())),
      });
      const text = await res.text();
      if (res.ok) return;
      why = `${res.status} ${text}`;
      if (res.status < 500) break; // refused: retrying would not help
    } catch (err) {
      why = String(err);
    }
    await Bun.sleep(100);
  }
  throw new Error(`control ${message.op} failed: ${why}`);
}

const STANDALONE = CONTROL === "";
const report = (message) =>
  STANDALONE ? Promise.resolve() : control({ ...message, ...identity }).catch((e) => log(String(e)));

// --- the app ---------------------------------------------------------------
/** Imports the entry and turns its default export into `(Request) => Promise<any>`. */
async function loadApp() {
  const mod = await import(ENTRY);
  const app = mod.default;
  if (typeof app === "function") return (req) => app(req);
  if (app && typeof app.fetch === "function") return (req) => app.fetch(req);
  const got = app === null ? "null" : typeof app;
  // Without a .rip plugin Bun imports the file as an asset: its default export is a path string.
  const hint = ENTRY.endsWith(".rip") ? " (is a Bun plugin for .rip preloaded? see --bun-preload)" : "";
  throw new AppShapeError(
    `${ENTRY}: the default export must be a function (Request) => Response ` +
      `or an object with fetch(Request), got ${got}${hint}`,
  );
}

// Bun keys its registry by real path: an app dir reached through a symlink is
// matched under both names.
const APP_ROOTS = [...new Set([APP_DIR, realpath(APP_DIR)])];
const seenModules = new Set([ENTRY, realpath(ENTRY)]);
const isAppFile = (p) =>
  APP_ROOTS.some((root) => p.startsWith(root + path.sep)) && !p.split(path.sep).includes("node_modules");
const rememberAppModules = () => Object.keys(require.cache).filter(isAppFile).forEach((k) => seenModules.add(k));

function realpath(p) {
  try {
    return fs.realpathSync(p);
  } catch {
    return p;
  }
}

/** Deletes every app module from Bun's module registry (see the header for why it walks the dir). */
function forgetAppModules() {
  rememberAppModules();
  for (const key of seenModules) delete require.cache[key];
  let budget = FORGET_LIMIT;
  const walk = (relative) => {
    let entries;
    try {
      entries = fs.readdirSync(path.join(APP_DIR, relative), { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      if (budget-- <= 0) return;
      if (e.name === "node_modules" || e.name.startsWith(".")) continue;
      const rel = path.join(relative, e.name);
      if (e.isDirectory()) walk(rel);
      else for (const root of APP_ROOTS) delete require.cache[path.join(root, rel)];
    }
  };
  walk("");
}

let handler = null; // the last good app, (Request) => Promise<any>
let inflight = null; // a promise settled when the request in the slot is done, or null
let reloading = null; // the running reload, or null
let reloadWanted = false; // a SIGHUP is waiting for the slot to be free
let reloads = 0;
let served = 0;
let stopping = false;
let server = null;

async function reloadOnce() {
  try {
    forgetAppModules();
    const next = await loadApp();
    rememberAppModules();
    handler = next;
    reloads += 1;
    log(`module reload ${reloads} done`);
    report({ op: "reloaded", reloads });
  } catch (err) {
    const text = describe(err);
    log(`module reload failed, keeping the last good app:\n${text}`);
    report({ op: "error", phase: "reload", error: truncate(text) });
  }
}

/** Starts the reload SIGHUP asked for once the slot is free; SIGHUPs meanwhile coalesce. */
function maybeReload() {
  if (!reloadWanted || reloading || inflight || stopping || !server) return;
  reloading = (async () => {
    while (reloadWanted && !stopping) {
      reloadWanted = false;
      await reloadOnce();
    }
  })().finally(() => {
    reloading = null;
  });
}

const TEXT = { "content-type": "text/plain; charset=utf-8" };

function toResponse(value) {
  if (value instanceof Response) return value;
  if (typeof value === "string") return new Response(value, { headers: TEXT });
  return Response.json(value === undefined ? null : value);
}

const busy = () => new Response("busy", { status: 503, headers: { "rip-worker-busy": "1" } });

async function serve(req) {
  if (inflight || stopping) return busy();
  let release;
  inflight = new Promise((resolve) => (release = resolve)); // taken before any await
  try {
    if (reloading) await reloading; // a request arriving during a reload waits for it
    return toResponse(await handler(req));
  } catch (err) {
    log(`${req.method} ${new URL(req.url).pathname} failed:\n${describe(err)}`);
    return new Response("Internal Server Error", { status: 500, headers: TEXT });
  } finally {
    inflight = null;
    release();
    served += 1;
    if (MAX_REQUESTS > 0 && served >= MAX_REQUESTS) shutdown(`served ${served} requests (RIP_MAX_REQUESTS)`);
    else maybeReload();
  }
}

// --- socket ------------------------------------------------------------------
let socketId = null; // [dev, ino] of our socket file

function removeOwnSocket() {
  try {
    const st = fs.lstatSync(SOCKET);
    if (socketId && st.dev === socketId[0] && st.ino === socketId[1]) fs.unlinkSync(SOCKET);
  } catch {}
}

function listen() {
  const temp = path.join(path.dirname(SOCKET), `.rip-w${process.pid}.sock`);
  try {
    fs.unlinkSync(temp);
  } catch {}
  const umask = process.umask(0o077); // the socket is never reachable by others, not even briefly
  let s;
  try {
    s = Bun.serve({ unix: temp, maxRequestBodySize: MAX_BODY, idleTimeout: 0, fetch: serve });
  } finally {
    process.umask(umask);
  }
  try {
    fs.chmodSync(temp, 0o600);
    fs.renameSync(temp, SOCKET); // replaces a stale file; Bun now unlinks a path that is gone
    const st = fs.lstatSync(SOCKET);
    socketId = [st.dev, st.ino];
  } catch (err) {
    s.stop(true); // unlinks `temp` if the rename did not happen
    throw err;
  }
  return s;
}

// --- lifecycle ---------------------------------------------------------------
async function shutdown(why) {
  if (stopping) return;
  stopping = true;
  log(`stopping: ${why}`);
  const stopped = server ? server.stop() : Promise.resolve(); // no new connections; idle ones close
  while (inflight || reloading) await (inflight ?? reloading);
  if (server && !STANDALONE) await control({ op: "quit", ...identity }).catch((e) => log(String(e)));
  const drained = await Promise.race([stopped.then(() => true), Bun.sleep(DRAIN_TIMEOUT_MS).then(() => false)]);
  if (!drained && server) await server.stop(true);
  removeOwnSocket();
  process.exit(0);
}

process.on("SIGTERM", () => shutdown("SIGTERM"));
process.on("SIGINT", () => shutdown("SIGINT"));
process.on("SIGHUP", () => {
  reloadWanted = true;
  maybeReload();
});

async function main() {
  if (!SOCKET || !env.RIP_ENTRY) {
    log("RIP_SOCKET and RIP_ENTRY must be set (this runs under rip-server)");
    process.exit(1);
  }
  try {
    handler = await loadApp();
    rememberAppModules();
  } catch (err) {
    const text = describe(err);
    log(`cannot load ${ENTRY}:\n${text}`);
    await report({ op: "error", phase: "load", error: truncate(text) });
    process.exit(1);
  }
  try {
    server = listen();
    if (!STANDALONE) {
      await control({ op: "join", ...identity, socket: SOCKET, version: VERSION, reload: true }, JOIN_TIMEOUT_MS);
    }
  } catch (err) {
    log(`cannot start serving on ${SOCKET}: ${err?.message ?? err}`);
    server?.stop(true);
    removeOwnSocket();
    process.exit(1);
  }
  log(`serving ${ENTRY} on ${SOCKET}`);
  if (MAX_AGE_S > 0) {
    const backstopS = MAX_AGE_S + Math.max(1, MAX_AGE_S / 10);
    setTimeout(() => shutdown(`older than ${backstopS} s (RIP_MAX_AGE_S backstop)`), backstopS * 1000).unref();
  }
  maybeReload(); // a SIGHUP that came during the start
}

await main();
