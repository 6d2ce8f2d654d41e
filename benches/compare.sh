#!/usr/bin/env bash
# Side-by-side load test: rip-server vs HAProxy vs nginx in front of the same
# single-request workers, plus the workers hit directly (the ceiling).
#
#   benches/compare.sh                 # DURATION=5 ROUNDS=3, about 13 minutes,
#                                      # then the acceptance run (ACCEPT below)
#   QUICK=1 benches/compare.sh         # DURATION=2 ROUNDS=1, a smoke run
#   ACCEPT=only benches/compare.sh     # the seeds' acceptance run alone, ~40 s
#   RIP_BIN=/path/to/rip-server benches/compare.sh   # that binary, no build
#   DURATION=10 ROUNDS=5 benches/compare.sh
#   CONTENDERS="rip nginx" SHAPES="/ping:4:16" benches/compare.sh
#   APP=bun benches/compare.sh         # the TypeScript app in Bun workers
#   PROTO=https benches/compare.sh     # TLS at the front door (rip, HAProxy, nginx)
#   METRICS=1 benches/compare.sh       # rip-server with and without --metrics-port
#
# Knobs (environment):
#   APP         builtin (default): the built-in worker (`rip-server worker
#               --builtin`). bun: examples/hello-ts in Bun workers, rip-server
#               running the app against HAProxy (and nginx, if asked) in front
#               of standalone Bun workers (src/manager/bun_runtime.js with no
#               RIP_CONTROL_SOCKET); defaults then become SHAPES "/ping:2:16
#               /ping:2:128 /ping:4:16 /ping:4:128", CONTENDERS "rip haproxy",
#               MEMORY 0. No "direct": the Bun runtime listens on Unix sockets
#               only. Bun is $RIP_BUN, else bun on PATH
#   PROTO       http (default) or https: every front door terminates TLS with
#               the same certificate, one P-256 self-signed leaf for localhost
#               and 127.0.0.1 made by openssl here (rip-server: https:PORT
#               cert: key: --no-redirect-http; HAProxy: bind ... ssl crt
#               alpn http/1.1; nginx: listen ... ssl), wrk against
#               https://127.0.0.1:PORT. Defaults then become SHAPES "/ping:2:16
#               /ping:2:128 /ping:4:16 /ping:4:128 /ping:2:16:close
#               /ping:4:16:close", CONTENDERS "rip haproxy haproxy-reuse
#               nginx", MEMORY 0; no "direct" (the workers speak plain HTTP).
#               Results in results-https.csv, table-https.txt, raw-https/
#   METRICS     1: add the contender rip-metrics (rip-server with
#               --metrics-port=PORT on 127.0.0.1, /metrics scraped once a
#               second during each of its measured runs) next to rip; the
#               default CONTENDERS become "rip rip-metrics" and MEMORY 0, and
#               the results go to results-metrics.csv, table-metrics.txt,
#               raw-metrics/. 0 (default): rip-metrics runs only when named in
#               CONTENDERS
#   DURATION    seconds per wrk run (default 5; QUICK=1: 2)
#   ROUNDS      measurements per contender and shape (default 3; QUICK=1: 1)
#   WARMUP      seconds of unrecorded load per front door when it starts (default 1)
#   THREADS     wrk threads (default 2; never more than the connections)
#   CONTENDERS  subset of: rip rip-default rip-metrics haproxy haproxy-reuse
#               nginx direct (direct: builtin app and PROTO=http only). Default
#               (APP=builtin PROTO=http METRICS=0): "rip rip-default haproxy
#               haproxy-reuse nginx direct". rip-default is rip-server in its
#               default configuration: the same workers, --bind, log settings
#               and PIN placement as rip, but none of RIP_ARGS (so the
#               contract's r:10000 recycling, queue 8192, ...) and with the
#               variables that tune it (RIP_MAX_QUEUE, RIP_QUEUE_TIMEOUT_MS,
#               RIP_CONNECT_TIMEOUT_MS, RIP_READ_TIMEOUT_MS, RIP_HOT_RELOAD,
#               RIP_RELOAD, RIP_MAX_RELOADS, RIP_RETRY_SENT, RIP_THREADS)
#               removed from its environment. The table then adds, per shape,
#               rip-default/rip (2xx/s) and both p99s next to rip/HAProxy:
#               issue 18's target is the default within 3% of r:0 at w2 c16
#               and w4 c16, p99 included
#   SHAPES      space-separated PATH:WORKERS:CONNECTIONS[:close]; ":close"
#               sends every request with "Connection: close", so each one is a
#               new connection (with PROTO=https a new TLS handshake): its
#               label is "ping-close w4 c16" and its req/s is connections/s
#   DIAGNOSE    1 (default): re-run the rip and rip-default shapes that had
#               non-2xx answers with a Lua script that tallies status and
#               Rip-Reason (diagnosis.txt; raw/diagnose-[rip-default-]SHAPE.txt)
#   RIP_ARGS    extra rip-server tokens/flags (default "r:0": the standalone
#               workers behind HAProxy and nginx never recycle, so neither do
#               rip-server's; see docs/benchmarking.md)
#   PEER_HEADERS 1 (default): HAProxy and nginx send the workers the same
#               forwarding headers rip-server adds (X-Forwarded-For,
#               X-Forwarded-Proto, X-Request-Id, X-Request-Start), so every
#               worker parses the same request; 0: the peers add nothing
#   MEMORY      1 (default): also measure rip-server's RSS holding IDLE_CONNS
#               idle keep-alive connections (benches/idle_conns.py) and its
#               peak RSS growth during a 64 MB upload; 0 skips it (APP=builtin
#               only: the front door's memory does not depend on the app)
#   IDLE_CONNS  connections for the memory run (default 10000; needs ulimit -n)
#   PIN         1: fix which CPU every process runs on, the same for every
#               contender: the front door on CPU 0, worker i on CPU (i+1) mod
#               ncpu, wrk on CPUs 1..ncpu-1 (taskset). The scheduler's
#               placement then stops being a variable of the run (see
#               docs/benchmarking.md). 0 (default): the scheduler decides,
#               as it would in production
#   ACCEPT      the seeds' acceptance run: for w:2 and w:4, rip-server in its
#               default configuration (as rip-default above), warmed up, then
#               `wrk -t8 -c512 -d15s --latency /ping`; records 2xx/s, p50,
#               p99, non-2xx and socket errors (connect/read/write/timeout) in
#               acceptance.csv and prints a table, PASS = zero non-2xx and zero
#               socket errors, else FAIL (a FAIL still exits 0: the script
#               reports). 1: after the comparison (and the memory run); 0:
#               skipped; only: the acceptance run alone (no comparison, no
#               memory run, results.csv and raw/ untouched; HAProxy and nginx
#               not needed). Default 1 for a full default run (APP=builtin
#               PROTO=http METRICS=0 with SHAPES and CONTENDERS unset, QUICK=1
#               included: its 15 s runs stay 15 s), else 0.
#               Other APP/PROTO values work when asked (acceptance-bun.csv,
#               acceptance-https.csv)
#   ACCEPT_DURATION  seconds of the acceptance wrk run (default 15, the seeds')
#   RIP_BIN     a built rip-server to use as is (also the built-in workers
#               behind HAProxy and nginx); default: cargo build --release here,
#               then target/release/rip-server. Results still go to this
#               checkout's target/compare
#
#   benches/compare.sh --table [results.csv]   re-prints the table of a run
#                                              (APP=bun: results-bun.csv,
#                                              PROTO=https: results-https.csv,
#                                              METRICS=1: results-metrics.csv;
#                                              ACCEPT=only or an
#                                              acceptance.csv: the acceptance
#                                              table)
#
# Writes target/compare/results.csv (one row per run), target/compare/table.txt
# (the printed table) and target/compare/raw/ (every wrk output); with APP=bun
# results-bun.csv, table-bun.txt and raw-bun/, so the apps never mix; PROTO=https
# adds -https and METRICS=1 -metrics to the names the same way (APP=bun
# PROTO=https: results-bun-https.csv). The acceptance run writes
# target/compare/acceptance.csv, acceptance.txt and raw-acceptance/ (with the
# same -bun/-https names), and table.txt ends with its table. Everything
# listens on 127.0.0.1 (rip-server with --bind=127.0.0.1). Every process this
# script starts is stopped by PID on
# exit; nothing else is touched. See docs/benchmarking.md.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

APP=${APP:-builtin}
case $APP in
builtin) SUFFIX="" ;;
bun) SUFFIX=-bun ;;
*)
    echo "compare.sh: APP=$APP: expected builtin or bun" >&2
    exit 2
    ;;
esac
PROTO=${PROTO:-http}
case $PROTO in
http) ;;
https) SUFFIX+=-https ;;
*)
    echo "compare.sh: PROTO=$PROTO: expected http or https" >&2
    exit 2
    ;;
esac
# The acceptance run's files: by app and protocol (it never runs rip-metrics).
ACCEPT_SUFFIX=$SUFFIX
METRICS=${METRICS:-0}
case $METRICS in
0) ;;
1) SUFFIX+=-metrics ;;
*)
    echo "compare.sh: METRICS=$METRICS: expected 0 or 1" >&2
    exit 2
    ;;
esac
# The original (TypeScript) Rip Server's figure for the Bun app's /ping at
# w:2 c16 on the machine of issue 14; the Bun table is read against it.
ORIGINAL_RPS=9900

# The table (medians per contender x shape) and its notes, from a results.csv.
print_table() { # csv
    awk -F, -v original="$ORIGINAL_RPS" '
    function median(list,    a, n, i, j, x) {
        n = split(list, a, " ")
        for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > x + 0; j--) a[j + 1] = a[j]; a[j + 1] = x }
        if (n == 0) return "NA"
        return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    function add(k, f, v) { vals[k, f] = vals[k, f] " " v }
    NR == 1 { next }
    {
        who = $2; shape = $3; k = who SUBSEP shape
        if ($22 == "bun") bun = 1 # the app column (absent from older CSVs: builtin)
        if (!(shape in seen_shape)) { seen_shape[shape] = 1; shapes[++ns] = shape }
        if (!(k in seen)) { seen[k] = 1 }
        add(k, "rps", $9); add(k, "ok", $10); add(k, "p50", $11); add(k, "p99", $12)
        add(k, "non", $13); add(k, "err", $14 + $15 + $16 + $17); add(k, "la", $20)
        if ($19 != "NA") add(k, "cpu", $19)
        if ($13 > maxnon[k] + 0) maxnon[k] = $13
        la = $20 + 0; if (lamin == "" || la < lamin) lamin = la; if (la > lamax) lamax = la
    }
    function row(label, k, rip_ok,    ok, cpu, ratio, non) {
        ok = median(vals[k, "ok"])
        cpu = (vals[k, "cpu"] == "") ? "-" : sprintf("%.3f", median(vals[k, "cpu"]))
        ratio = (rip_ok > 0) ? sprintf("%.2f", ok / rip_ok) : "-"
        non = sprintf("%d", median(vals[k, "non"]))
        if (maxnon[k] + 0 > non + 0) non = non " (max " maxnon[k] ")"
        printf "%-22s %-16s %9.0f %9.0f %8.3f %8.3f %20s %8d %10s %7s\n", label, shape_now,
            median(vals[k, "rps"]), ok, median(vals[k, "p50"]), median(vals[k, "p99"]),
            non, median(vals[k, "err"]), cpu, ratio
    }
    END {
        printf "%-22s %-16s %9s %9s %8s %8s %20s %8s %10s %7s\n", "contender", "shape", "req/s", "2xx/s",
            "p50 ms", "p99 ms", "non-2xx", "sock err", "CPU s/10k", "vs rip"
        for (i = 1; i <= ns; i++) {
            shape_now = shapes[i]
            rk = "rip" SUBSEP shape_now
            rip_ok = ((rk) in seen) ? median(vals[rk, "ok"]) : 0
            if ((rk) in seen) row("rip-server", rk, rip_ok)
            ddk = "rip-default" SUBSEP shape_now
            if ((ddk) in seen) { row("rip-server (default)", ddk, rip_ok); has_default = 1 }
            mk = "rip-metrics" SUBSEP shape_now
            if ((mk) in seen) row("rip-server + metrics", mk, rip_ok)
            h1 = "haproxy" SUBSEP shape_now; h2 = "haproxy-reuse" SUBSEP shape_now
            best = ""
            if ((h1) in seen) best = h1
            if ((h2) in seen && (best == "" || median(vals[h2, "ok"]) > median(vals[h1, "ok"]))) best = h2
            if (best != "") row((best == h1) ? "haproxy (best: safe)" : "haproxy (best: reuse)", best, rip_ok)
            nk = "nginx" SUBSEP shape_now
            if ((nk) in seen) row("nginx", nk, rip_ok)
            dk = "direct" SUBSEP shape_now
            if ((dk) in seen) row("workers direct (ceil)", dk, rip_ok)
            print ""
        }
        printf "1-min load average during the runs: min %.2f, max %.2f\n", lamin, lamax
        if (bun) bun_reference()
        if (has_default) default_reference()
    }
    # The better (by 2xx/s) of haproxy and haproxy-reuse at shape s, or "".
    function best_haproxy(s,    hk, h2) {
        hk = "haproxy" SUBSEP s; h2 = "haproxy-reuse" SUBSEP s
        if (!((hk) in seen) || (((h2) in seen) && median(vals[h2, "ok"]) > median(vals[hk, "ok"]))) hk = h2
        return ((hk) in seen) ? hk : ""
    }
    # Issue 18: rip-server in its default configuration (rip-default: r:10000
    # recycling) against rip (RIP_ARGS, r:0 by default), per shape, next to
    # rip/HAProxy; the target: within 3% at ping w2 c16 and ping w4 c16, p99
    # included (2xx/s at least 0.97x, p99 at most 1.03x).
    function default_reference(    i, s, rk, dk, hk, r_ok, d_ok, rp99, dp99, ratio, p99s, rh, within, verdict, met, asked) {
        print ""
        print "rip-server'"'"'s default configuration (rip-default: no RIP_ARGS, so r:10000 recycling) against rip:"
        printf "%-16s %14s %24s %12s   %s\n", "shape", "default/rip", "p99 ms rip / default", "rip/HAProxy", "within 3% (2xx/s, p99)"
        met = 1; asked = 0
        for (i = 1; i <= ns; i++) {
            s = shapes[i]; rk = "rip" SUBSEP s; dk = "rip-default" SUBSEP s
            if (!((dk) in seen)) continue
            d_ok = median(vals[dk, "ok"]); dp99 = median(vals[dk, "p99"])
            ratio = "-"; within = "-"; rh = "-"
            p99s = ((rk) in seen) ? sprintf("%.3f / %.3f", median(vals[rk, "p99"]), dp99) : sprintf("- / %.3f", dp99)
            if (((rk) in seen) && median(vals[rk, "ok"]) > 0) {
                r_ok = median(vals[rk, "ok"]); rp99 = median(vals[rk, "p99"])
                ratio = sprintf("%.3f", d_ok / r_ok)
                within = sprintf("%s, %s", (d_ok >= 0.97 * r_ok) ? "yes" : "no", (dp99 <= 1.03 * rp99) ? "yes" : "no")
                if (s == "ping w2 c16" || s == "ping w4 c16") {
                    asked++
                    if (!(d_ok >= 0.97 * r_ok && dp99 <= 1.03 * rp99)) met = 0
                }
                hk = best_haproxy(s)
                if (hk != "" && median(vals[hk, "ok"]) > 0) rh = sprintf("%.2f", r_ok / median(vals[hk, "ok"]))
            }
            printf "%-16s %14s %24s %12s   %s\n", s, ratio, p99s, rh, within
        }
        verdict = (asked == 0) ? "not measured here (needs rip and rip-default at ping w2 c16 and/or ping w4 c16)" : (met ? "met" : "NOT met")
        if (asked == 1) verdict = verdict " (only one of the two shapes measured)"
        print "target (issue 18): rip-default within 3% of rip at ping w2 c16 and ping w4 c16, 2xx/s and p99: " verdict
    }
    # Issue 14: rip-server against HAProxy on the same Bun workers, and the
    # ping w2 c16 figure against the original TypeScript Rip Server.
    function bun_reference(    i, s, rk, hk, h2, rip_ok, h_ok, rp99, hp99, orig, tp, tl, to, ratio, p99s) {
        printf "\noriginal (TypeScript Rip Server, w:2 c16): %.1fk req/s\n", original / 1000
        printf "%-16s %12s %22s %13s   %s\n", "shape", "rip/HAProxy", "p99 ms rip / HAProxy", "rip/original", "targets met (2xx/s, p99, 2x original)"
        for (i = 1; i <= ns; i++) {
            s = shapes[i]; rk = "rip" SUBSEP s; hk = "haproxy" SUBSEP s; h2 = "haproxy-reuse" SUBSEP s
            if (!((rk) in seen)) continue
            if (!((hk) in seen) || (((h2) in seen) && median(vals[h2, "ok"]) > median(vals[hk, "ok"]))) hk = h2
            rip_ok = median(vals[rk, "ok"]); rp99 = median(vals[rk, "p99"])
            tp = "-"; tl = "-"; to = "-"
            if ((hk) in seen) {
                h_ok = median(vals[hk, "ok"]); hp99 = median(vals[hk, "p99"])
                ratio = sprintf("%.2f", (h_ok > 0) ? rip_ok / h_ok : 0)
                p99s = sprintf("%.3f / %.3f", rp99, hp99)
                tp = (rip_ok >= h_ok) ? "yes" : "no"; tl = (rp99 <= hp99) ? "yes" : "no"
            } else { ratio = "-"; p99s = sprintf("%.3f / -", rp99) }
            orig = "-"
            if (s == "ping w2 c16") { orig = sprintf("%.2f", rip_ok / original); to = (rip_ok >= 2 * original) ? "yes" : "no" }
            printf "%-16s %12s %22s %13s   %s, %s, %s\n", s, ratio, p99s, orig, tp, tl, to
        }
        print "targets (issue 14): rip-server at least HAProxy'"'"'s 2xx/s and p99 on the same workers, and 2x the original at w2 c16"
    }' "$1"
    echo "req/s counts every answer; 2xx/s only successes; 'vs rip' = 2xx/s / rip-server's 2xx/s."
    echo "CPU s/10k = front-door CPU seconds (utime+stime) per 10k requests; '-' for workers hit directly."
    echo "haproxy: the better (by 2xx/s) of http-reuse safe (default) and http-reuse always; both in results.csv."
    if awk -F, '$3 ~ /-close / { found = 1 } END { exit !found }' "$1"; then
        echo "*-close shapes: every request with Connection: close, so req/s = new connections (with TLS: handshakes) per second."
    fi
    if awk -F, '$2 == "rip-default" { found = 1 } END { exit !found }' "$1"; then
        echo "rip-server (default): rip-default, rip-server in its default configuration (no RIP_ARGS; r:10000, queue 8192); its 'vs rip' is default/rip."
    fi
    if awk -F, '$2 == "rip-metrics" { found = 1 } END { exit !found }' "$1"; then
        echo "rip-server + metrics: --metrics-port on 127.0.0.1, GET /metrics once a second during each run; its CPU includes the scrapes."
    fi
    awk -F, 'NR > 1 && ($2 == "rip" || $2 == "rip-default" || $2 == "rip-metrics") {
            runs++; k = ($2 == "rip") ? $3 : ($2 == "rip-default") ? $3 " (default)" : $3 " (+metrics)"
            if ($21 != "0") { bad++; shapes[k] = shapes[k] " " $21 }
        }
        END {
            if (bad) {
                printf "\nrip-server kept requests in flight after the load stopped in %d of %d runs (a worker stays busy\n", bad, runs
                print "for good; the script restarted rip-server after each). In-flight count left, per shape:"
                for (s in shapes) printf "  %-16s%s\n", s, shapes[s]
            }
        }' "$1"
}

# The acceptance run's table, from an acceptance.csv.
ACCEPT_HEADER="workers,conns,threads,duration_s,requests,rps,ok_rps,p50_ms,p99_ms,non2xx,err_connect,err_read,err_write,err_timeout,rip_stuck,loadavg1,result,note,app,proto"
print_acceptance() { # csv
    awk -F, '
    function num(v, f) { return (v == "NA" || v == "") ? "-" : sprintf(f, v) }
    NR == 1 { next }
    NR == 2 {
        printf "acceptance (the seeds'"'"' run): wrk -t%s -c%s -d%ds --latency /ping against rip-server in its default configuration (app %s, %s)\n",
            $3, $2, int($4 + 0.5), $19, $20
        printf "%-8s %9s %8s %8s %8s %24s %6s  %s\n", "workers", "2xx/s", "p50 ms", "p99 ms", "non-2xx", "sock err conn/rd/wr/tmo", "stuck", "result"
    }
    {
        n++
        if ($17 == "PASS") pass++
        err = ($11 == "NA") ? "-" : $11 "/" $12 "/" $13 "/" $14
        printf "%-8s %9s %8s %8s %8s %24s %6s  %s\n", "w:" $1, num($7, "%.0f"), num($8, "%.3f"), num($9, "%.3f"),
            num($10, "%d"), err, $15, ($18 == "") ? $17 : $17 " (" $18 ")"
    }
    END {
        print "PASS = zero non-2xx answers and zero socket errors, else FAIL; stuck = requests rip-server still showed"
        print "in flight after the load (0 = none; not part of the verdict)."
        printf "acceptance: %d of %d PASS%s\n", pass, n, (pass == n) ? "" : "  <<< FAIL"
    }' "$1"
}

if [[ ${1:-} == --table ]]; then
    # Re-print the table of an earlier run without running anything.
    default_csv=results$SUFFIX.csv
    if [[ ${ACCEPT:-} == only ]]; then default_csv=acceptance$ACCEPT_SUFFIX.csv; fi
    csv=${2:-${CARGO_TARGET_DIR:-$ROOT/target}/compare/$default_csv}
    [[ -f $csv ]] || {
        echo "compare.sh: $csv: no such file" >&2
        exit 2
    }
    if [[ $(head -n1 "$csv") == "$ACCEPT_HEADER" ]]; then
        print_acceptance "$csv"
    else
        print_table "$csv"
    fi
    exit 0
elif (($#)); then
    echo "usage: benches/compare.sh [--table [results.csv]]   (knobs are environment variables; see the header)" >&2
    exit 2
fi

if [[ ${QUICK:-0} == 1 ]]; then
    DURATION=${DURATION:-2}
    ROUNDS=${ROUNDS:-1}
fi
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-1}
THREADS=${THREADS:-2}
# The acceptance run by default only with a full default run (decided before
# the defaults below fill SHAPES and CONTENDERS in).
if [[ -z ${ACCEPT:-} ]]; then
    ACCEPT=0
    if [[ $APP == builtin && $PROTO == http && $METRICS == 0 && -z ${SHAPES:-} && -z ${CONTENDERS:-} ]]; then ACCEPT=1; fi
fi
case $ACCEPT in
0 | 1 | only) ;;
*)
    echo "compare.sh: ACCEPT=$ACCEPT: expected 0, 1 or only" >&2
    exit 2
    ;;
esac
ACCEPT_DURATION=${ACCEPT_DURATION:-15}
if [[ $ACCEPT == only ]]; then
    # No comparison and no memory run: only the acceptance run's server.
    MEMORY=0
fi
if ((METRICS)); then
    # The point is rip-server with and without metrics; others only if asked.
    CONTENDERS=${CONTENDERS:-"rip rip-metrics"}
    if [[ " $CONTENDERS " != *" rip-metrics "* ]]; then CONTENDERS+=" rip-metrics"; fi
    MEMORY=${MEMORY:-0}
fi
if [[ $PROTO == https ]]; then
    CONTENDERS=${CONTENDERS:-"rip haproxy haproxy-reuse nginx"}
    SHAPES=${SHAPES:-"/ping:2:16 /ping:2:128 /ping:4:16 /ping:4:128 /ping:2:16:close /ping:4:16:close"}
    MEMORY=${MEMORY:-0}
fi
if [[ $APP == bun ]]; then
    CONTENDERS=${CONTENDERS:-"rip haproxy"}
    SHAPES=${SHAPES:-"/ping:2:16 /ping:2:128 /ping:4:16 /ping:4:128"}
    MEMORY=${MEMORY:-0}
else
    CONTENDERS=${CONTENDERS:-"rip rip-default haproxy haproxy-reuse nginx direct"}
    SHAPES=${SHAPES:-"/ping:2:2 /ping:2:16 /ping:2:128 /ping:4:2 /ping:4:4 /ping:4:16 /ping:4:128 /sleep?ms=5:4:4 /sleep?ms=5:4:16"}
    MEMORY=${MEMORY:-1}
fi
DIAGNOSE=${DIAGNOSE:-1}
PEER_HEADERS=${PEER_HEADERS:-1}
RIP_ARGS=${RIP_ARGS-r:0}
IDLE_CONNS=${IDLE_CONNS:-10000}
PIN=${PIN:-0}

for v in DURATION ROUNDS THREADS WARMUP ACCEPT_DURATION; do
    if ! [[ ${!v} =~ ^[0-9]+$ ]] || { [[ $v != WARMUP ]] && ((${!v} < 1)); }; then
        echo "compare.sh: $v=${!v}: expected a positive integer (WARMUP may be 0)" >&2
        exit 2
    fi
done

if [[ $APP == bun ]]; then
    if [[ " $CONTENDERS " == *" direct "* ]]; then
        # Hitting a worker directly needs it on TCP (RIP_WORKER_TCP), which
        # only the built-in worker does; the Bun runtime serves a Unix socket.
        echo "compare.sh: APP=bun: no \"direct\" contender (the Bun runtime listens on Unix sockets only); leaving it out" >&2
        CONTENDERS=" $CONTENDERS "
        CONTENDERS=${CONTENDERS// direct / }
    fi
    if [[ $MEMORY == 1 ]]; then
        echo "compare.sh: APP=bun: MEMORY=1 measures the front door with the built-in app; run it with APP=builtin" >&2
        exit 2
    fi
fi

if [[ $PROTO == https ]]; then
    if [[ " $CONTENDERS " == *" direct "* ]]; then
        # The workers speak plain HTTP: hitting them directly measures no TLS.
        echo "compare.sh: PROTO=https: no \"direct\" contender (the workers speak plain HTTP); leaving it out" >&2
        CONTENDERS=" $CONTENDERS "
        CONTENDERS=${CONTENDERS// direct / }
    fi
    if [[ $MEMORY == 1 ]]; then
        echo "compare.sh: PROTO=https: MEMORY=1 measures the plain HTTP front door; run it with PROTO=http" >&2
        exit 2
    fi
fi

if [[ $PIN != 0 && $PIN != 1 ]]; then
    echo "compare.sh: PIN=$PIN: expected 0 or 1" >&2
    exit 2
fi
NCPU=$(nproc)
if ((PIN && NCPU < 2)); then
    echo "compare.sh: PIN=1 needs at least 2 CPUs (this machine has $NCPU)" >&2
    exit 2
fi

log() { printf '[compare %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# ---------------------------------------------------------------- tools

sudo_cmd=()
if ((EUID != 0)); then sudo_cmd=(sudo); fi

find_tool() { # name -> path or empty (haproxy and nginx live in /usr/sbin)
    command -v "$1" 2>/dev/null || { [[ -x /usr/sbin/$1 ]] && echo "/usr/sbin/$1"; } || true
}

missing=()
[[ -n $(find_tool wrk) ]] || missing+=(wrk)
if [[ $ACCEPT != only ]]; then # the acceptance run needs neither
    [[ -n $(find_tool haproxy) ]] || missing+=(haproxy)
    [[ -n $(find_tool nginx) ]] || missing+=(nginx-light)
fi
[[ -n $(find_tool curl) ]] || missing+=(curl)
[[ -n $(find_tool python3) ]] || missing+=(python3)
if [[ $PROTO == https && -z $(find_tool openssl) ]]; then missing+=(openssl); fi
if ((${#missing[@]})); then
    log "installing ${missing[*]} (apt-get; note: Debian starts the haproxy/nginx system services on install)"
    command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get; install them yourself"
    "${sudo_cmd[@]}" apt-get update -qq
    "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
fi
BUN=""
BUN_VERSION=""
if [[ $APP == bun ]]; then
    BUN=${RIP_BUN:-$(command -v bun 2>/dev/null || true)}
    [[ -n $BUN && -x $BUN ]] || die "APP=bun needs Bun: set RIP_BUN=/path/to/bun or install it (npm install -g bun)"
    BUN_VERSION=$("$BUN" --version 2>/dev/null) || die "$BUN --version failed (RIP_BUN=${RIP_BUN:-unset})"
    export RIP_BUN=$BUN # rip-server starts its workers with the same Bun
    BUN_APP_DIR=$ROOT/examples/hello-ts
    [[ -f $BUN_APP_DIR/index.ts ]] || die "$BUN_APP_DIR/index.ts: no such file"
    BUN_RUNTIME=$ROOT/src/manager/bun_runtime.js
    [[ -f $BUN_RUNTIME ]] || die "$BUN_RUNTIME: no such file"
fi
WRK=$(find_tool wrk)
HAPROXY=$(find_tool haproxy)
NGINX=$(find_tool nginx)
[[ -n $WRK ]] || die "wrk still missing"
[[ $ACCEPT == only || (-n $HAPROXY && -n $NGINX) ]] || die "haproxy or nginx still missing"
WRK_RUN=("$WRK")
if ((PIN)); then
    command -v taskset >/dev/null || die "PIN=1 needs taskset (util-linux)"
    WRK_CPUS=1
    if ((NCPU > 2)); then WRK_CPUS=1-$((NCPU - 1)); fi
    WRK_RUN=(taskset -c "$WRK_CPUS" "$WRK")
fi

TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
[[ $TARGET_DIR == /* ]] || TARGET_DIR=$ROOT/$TARGET_DIR
if [[ -n ${RIP_BIN:-} ]]; then
    BIN=$RIP_BIN
    [[ $BIN == /* ]] || BIN=$PWD/$BIN
    [[ -f $BIN && -x $BIN ]] || die "RIP_BIN=$RIP_BIN: not an executable file"
    log "rip-server: $BIN (RIP_BIN; not built here)"
else
    log "building rip-server (release)"
    cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" --bin rip-server
    BIN=$TARGET_DIR/release/rip-server
    [[ -x $BIN ]] || die "$BIN not built"
fi

OUT=$TARGET_DIR/compare
mkdir -p "$OUT"
RAW=$OUT/raw$SUFFIX
if [[ $ACCEPT != only ]]; then
    rm -rf "$RAW"
    mkdir -p "$RAW"
fi
CSV=$OUT/results$SUFFIX.csv
TABLE=$OUT/table$SUFFIX.txt
DIAGNOSIS=$OUT/diagnosis$SUFFIX.txt
ACCEPT_CSV=$OUT/acceptance$ACCEPT_SUFFIX.csv
ACCEPT_TABLE=$OUT/acceptance$ACCEPT_SUFFIX.txt
ACCEPT_RAW=$OUT/raw-acceptance$ACCEPT_SUFFIX

DIR=$(mktemp -d /tmp/ripcmp.XXXX)
CLK_TCK=$(getconf CLK_TCK)
hard_fds=$(ulimit -Hn)
[[ $hard_fds == unlimited ]] && hard_fds=65536
ulimit -n "$hard_fds" 2>/dev/null || true

# PROTO=https: one certificate for every front door, so none gets a cheaper
# key: a P-256 (ECDSA) self-signed leaf for localhost and 127.0.0.1, made
# here. rip-server reads tls.crt and tls.key, nginx the same two files,
# HAProxy tls.pem (the certificate followed by its key). wrk does not verify
# it; curl (rip-server's /status) is told not to (-k).
SCHEME=$PROTO
CURL_TLS=()
TLS_LINE=""
if [[ $PROTO == https ]]; then
    CURL_TLS=(-k)
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
        -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$DIR/tls.key" -out "$DIR/tls.crt" >"$DIR/openssl.log" 2>&1 ||
        die "openssl could not make the certificate: $(tail -n 3 "$DIR/openssl.log")"
    cat "$DIR/tls.crt" "$DIR/tls.key" >"$DIR/tls.pem"
    TLS_LINE="certificate: $(openssl x509 -in "$DIR/tls.crt" -noout -subject | sed 's/^subject=//'), P-256 ECDSA, self-signed, the same file for every front door"
fi

# ---------------------------------------------------------------- processes

# pid -> what it is; only processes started here, removed once reaped.
declare -A LIVE=()

alive() { # pid: running (not a zombie)?
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat:0:1} != Z ]]
}

stop_pids() { # pid...: SIGTERM, up to 5 s grace, SIGKILL, reap
    local pid i any
    for pid in "$@"; do
        if [[ -n ${LIVE[$pid]+x} ]]; then kill -TERM "$pid" 2>/dev/null || true; fi
    done
    for ((i = 0; i < 50; i++)); do
        any=0
        for pid in "$@"; do
            if [[ -n ${LIVE[$pid]+x} ]] && alive "$pid"; then any=1; fi
        done
        ((any)) || break
        sleep 0.1
    done
    for pid in "$@"; do
        if [[ -n ${LIVE[$pid]+x} ]]; then
            if alive "$pid"; then
                log "${LIVE[$pid]} (pid $pid) ignored SIGTERM; SIGKILL"
                kill -KILL "$pid" 2>/dev/null || true
            fi
            wait "$pid" 2>/dev/null || true
            unset "LIVE[$pid]"
        fi
    done
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if ((${#LIVE[@]})); then
        stop_pids "${!LIVE[@]}"
    fi
    rm -rf "$DIR"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Below the kernel's ephemeral range (ip_local_port_range, 32768 and up by
# default): the memory run's 10,000 client sockets take ephemeral ports, and
# a port in use as one cannot be listened on even though nobody answers it.
EPHEMERAL_LOW=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
NEXT_PORT=$((10000 + RANDOM % (EPHEMERAL_LOW - 12000)))
PORT=0
pick_port() { # sets PORT to a loopback port nobody answers on
    local i
    for ((i = 0; i < 200; i++)); do
        NEXT_PORT=$((NEXT_PORT + 1))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$NEXT_PORT") 2>/dev/null; then
            PORT=$NEXT_PORT
            return 0
        fi
    done
    die "no free port found"
}

wait_port() { # port pid what log
    local i
    for ((i = 0; i < 200; i++)); do
        if ! alive "$2"; then
            tail -n 5 "$4" >&2 2>/dev/null || true
            die "$3 (pid $2) exited during start"
        fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    tail -n 5 "$4" >&2 2>/dev/null || true
    die "$3 did not listen on port $1 within 10 s"
}

children_of() { # pid -> its child pids
    local f stat rest
    for f in /proc/[0-9]*/stat; do
        stat=$(cat "$f" 2>/dev/null) || continue
        rest=${stat##*) }
        read -r -a fields <<<"$rest"
        if [[ ${fields[1]} == "$1" ]]; then
            f=${f#/proc/}
            echo "${f%/stat}"
        fi
    done
}

cpu_ticks() { # pid -> utime+stime in clock ticks (all threads)
    local stat rest
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || {
        echo 0
        return
    }
    rest=${stat##*) }
    read -r -a fields <<<"$rest"
    # After "comm)", fields[0] is field 3 (state): utime is field 14, stime 15.
    echo $((fields[11] + fields[12]))
}

loadavg1() { cut -d' ' -f1 /proc/loadavg; }

# PIN=1: every thread of each pid on the given CPUs; otherwise nothing.
pin() { # cpus pid...
    ((PIN)) || return 0
    local cpus=$1 pid
    shift
    for pid in "$@"; do
        taskset -a -p -c "$cpus" "$pid" >/dev/null || die "taskset could not pin pid $pid"
    done
}
pin_front_door() { pin 0 "$@"; }
pin_worker() { pin $((($1 + 1) % NCPU)) "$2"; } # index pid

# ---------------------------------------------------------------- contenders

# Per worker-count group: the front doors' ports and CPU-accounting pids.
declare -A FD_PORT=() FD_PID=()
DIRECT_PORTS=()
GROUP_PIDS=()

# The standalone workers HAProxy and nginx share (Unix sockets): built-in
# workers, or (APP=bun) the Bun runtime rip-server embeds, run as rip-server
# runs it (cwd = the app dir, the contract's environment) but with no control
# socket, so it serves without joining anyone.
start_workers() { # n
    local i pid pids=()
    for ((i = 0; i < $1; i++)); do
        if [[ $APP == bun ]]; then
            (
                cd "$BUN_APP_DIR"
                exec env -u RIP_CONTROL_SOCKET RIP_SOCKET="$DIR/a$i.sock" RIP_ENTRY="$BUN_APP_DIR/index.ts" \
                    RIP_APP_DIR="$BUN_APP_DIR" RIP_APP=hello-ts RIP_WORKER_ID="$i" RIP_VERSION=1 RIP_MAX_REQUESTS=0 \
                    "$BUN" --no-install "$BUN_RUNTIME"
            ) >"$DIR/a$i.log" 2>&1 &
        else
            RUST_LOG=warn "$BIN" worker --builtin --socket "$DIR/a$i.sock" >"$DIR/a$i.log" 2>&1 &
        fi
        pid=$!
        LIVE[$pid]="worker a$i"
        GROUP_PIDS+=("$pid")
        pids+=("$pid")
        pin_worker "$i" "$pid"
    done
    for ((i = 0; i < $1; i++)); do
        local k
        for ((k = 0; k < 200; k++)); do
            [[ -S $DIR/a$i.sock ]] && break
            alive "${pids[i]}" || break # it exited: say why now, not in 10 s
            sleep 0.05
        done
        if [[ ! -S $DIR/a$i.sock ]]; then
            tail -n 5 "$DIR/a$i.log" >&2
            die "worker a$i did not bind $DIR/a$i.sock"
        fi
    done
}

# The same workers on TCP, one port each (RIP_WORKER_TCP), for the ceiling.
start_direct() { # n
    local i pid
    DIRECT_PORTS=()
    for ((i = 0; i < $1; i++)); do
        pick_port
        RUST_LOG=warn RIP_WORKER_TCP=127.0.0.1:$PORT "$BIN" worker --builtin >"$DIR/d$i.log" 2>&1 &
        pid=$!
        LIVE[$pid]="tcp worker d$i"
        GROUP_PIDS+=("$pid")
        pin_worker "$i" "$pid"
        wait_port "$PORT" "$pid" "tcp worker d$i" "$DIR/d$i.log"
        DIRECT_PORTS+=("$PORT")
    done
}

RIP_STARTS=0
RIP_RESTARTS=0
RIP_APP_ARG=builtin:hello
if [[ $APP == bun ]]; then RIP_APP_ARG=$BUN_APP_DIR; fi
# The variables that would move rip-default (and the acceptance run) off
# rip-server's defaults; their environment has none of them.
DEFAULT_UNSET=(RIP_MAX_QUEUE RIP_QUEUE_TIMEOUT_MS RIP_CONNECT_TIMEOUT_MS RIP_READ_TIMEOUT_MS
    RIP_HOT_RELOAD RIP_RELOAD RIP_MAX_RELOADS RIP_RETRY_SENT RIP_THREADS)
DEFAULT_IGNORED=() # those set here, for the table's header
for v in "${DEFAULT_UNSET[@]}"; do
    if [[ -n ${!v:-} ]]; then DEFAULT_IGNORED+=("$v=${!v}"); fi
done
# rip (and rip-metrics: the same with --metrics-port, for METRICS=1;
# rip-default: the same without RIP_ARGS and without DEFAULT_UNSET).
start_rip() { # n [rip|rip-default|rip-metrics]
    local pid i child who=${2:-rip} mport="" status_ok args=$RIP_ARGS
    local -a listen=() extra=() envs=(env)
    if [[ $who == rip-default ]]; then
        args=""
        for i in "${DEFAULT_UNSET[@]}"; do envs+=(-u "$i"); done
    fi
    pick_port
    listen=("http:$PORT")
    if [[ $PROTO == https ]]; then
        # Its HTTPS front door alone: no HTTP port (and so no redirect).
        listen=("https:$PORT" "cert:$DIR/tls.crt" "key:$DIR/tls.key" --no-redirect-http)
    fi
    local port=$PORT
    if [[ $who == rip-metrics ]]; then
        pick_port
        mport=$PORT
        extra=("--metrics-port=$mport")
        PORT=$port
    fi
    RIP_STARTS=$((RIP_STARTS + 1))
    # shellcheck disable=SC2086 # RIP_ARGS is a list of words
    "${envs[@]}" RUST_LOG=warn "$BIN" "$RIP_APP_ARG" "w:$1" "${listen[@]}" --bind=127.0.0.1 --no-access-log \
        --socket-prefix="$DIR/r$RIP_STARTS" "${extra[@]}" $args >"$DIR/$who.log" 2>&1 &
    pid=$!
    LIVE[$pid]=$who
    GROUP_PIDS+=("$pid")
    wait_port "$PORT" "$pid" "$who" "$DIR/$who.log"
    for ((i = 0; i < 200; i++)); do
        status_ok=0
        if curl -fsS "${CURL_TLS[@]}" "$SCHEME://127.0.0.1:$PORT/status" 2>/dev/null | grep -q "\"workers\":$1[,}]"; then
            status_ok=1
            # rip-metrics: its metrics port answers too before it counts as started.
            if [[ -n $mport ]] && ! curl -fsS -m 2 -o /dev/null "http://127.0.0.1:$mport/metrics" 2>/dev/null; then status_ok=0; fi
        fi
        if ((status_ok)); then
            FD_PORT[$who]=$PORT
            FD_PID[$who]=$pid
            if [[ -n $mport ]]; then METRICS_PORT=$mport; fi
            if ((PIN)); then
                # Its workers started on the front door's CPUs; spread them.
                pin_front_door "$pid"
                i=0
                for child in $(children_of "$pid"); do
                    pin_worker "$i" "$child"
                    i=$((i + 1))
                done
            fi
            return 0
        fi
        if ! alive "$pid"; then
            tail -n 5 "$DIR/$who.log" >&2
            die "$who exited during start"
        fi
        sleep 0.05
    done
    tail -n 5 "$DIR/$who.log" >&2
    die "$who did not register $1 workers within 10 s"
}

start_haproxy() { # name n reuse(0|1)
    local name=$1 n=$2 reuse=$3 cfg=$DIR/$1.cfg pid i
    pick_port
    {
        echo "global"
        echo "    nbthread 1"
        echo "    maxconn 2000"
        echo "defaults"
        echo "    mode http"
        echo "    option http-keep-alive"
        echo "    timeout connect 200ms"
        echo "    timeout client 30s"
        echo "    timeout server 5s"
        echo "    timeout queue 2s"
        echo "    timeout http-keep-alive 10s"
        echo "frontend fe"
        if [[ $PROTO == https ]]; then
            echo "    bind 127.0.0.1:$PORT ssl crt $DIR/tls.pem alpn http/1.1"
        else
            echo "    bind 127.0.0.1:$PORT"
        fi
        if ((PEER_HEADERS)); then
            echo "    option forwardfor"
            echo "    unique-id-format %{+X}o\\ %ci%cp%Ts%rt"
            echo "    unique-id-header X-Request-Id"
            echo "    http-request set-header X-Forwarded-Proto $PROTO"
            echo "    http-request set-header X-Request-Start t=%[date(0,us)]"
        fi
        echo "    default_backend workers"
        echo "backend workers"
        echo "    balance first"
        if ((reuse)); then echo "    http-reuse always"; fi
        for ((i = 0; i < n; i++)); do
            echo "    server w$i unix@$DIR/a$i.sock maxconn 1"
        done
    } >"$cfg"
    "$HAPROXY" -c -q -f "$cfg" >"$DIR/$name.check" 2>&1 || die "haproxy rejects $cfg: $(cat "$DIR/$name.check")"
    "$HAPROXY" -db -f "$cfg" >"$DIR/$name.log" 2>&1 &
    pid=$!
    LIVE[$pid]=$name
    GROUP_PIDS+=("$pid")
    wait_port "$PORT" "$pid" "$name" "$DIR/$name.log"
    FD_PORT[$name]=$PORT
    FD_PID[$name]=$pid
    pin_front_door "$pid"
}

start_nginx() { # n
    local n=$1 prefix=$DIR/nginx conf master worker i m
    pick_port
    mkdir -p "$prefix"
    conf=$prefix/nginx.conf
    local modules
    modules=$("$NGINX" -V 2>&1)
    {
        if ((EUID == 0)); then echo "user root;"; fi # the workers' sockets are 0600
        echo "worker_processes 1;"
        echo "error_log $prefix/error.log warn;"
        echo "pid $prefix/nginx.pid;"
        echo "events { worker_connections 8192; }"
        echo "http {"
        echo "    access_log off;"
        echo "    client_body_temp_path $prefix/body;"
        echo "    proxy_temp_path $prefix/proxy;"
        for m in fastcgi uwsgi scgi; do
            [[ $modules == *"--without-http_${m}_module"* ]] || echo "    ${m}_temp_path $prefix/$m;"
        done
        echo "    upstream workers {"
        for ((i = 0; i < n; i++)); do
            echo "        server unix:$DIR/a$i.sock max_conns=1;"
        done
        echo "        keepalive 16;"
        echo "    }"
        echo "    server {"
        if [[ $PROTO == https ]]; then
            echo "        listen 127.0.0.1:$PORT ssl;"
            # nginx 1.22's default leaves TLS 1.3 out; the others offer 1.2 and 1.3.
            echo "        ssl_protocols TLSv1.2 TLSv1.3;"
            echo "        ssl_certificate $DIR/tls.crt;"
            echo "        ssl_certificate_key $DIR/tls.key;"
        else
            echo "        listen 127.0.0.1:$PORT;"
        fi
        echo "        location / {"
        echo "            proxy_pass http://workers;"
        echo "            proxy_http_version 1.1;"
        echo "            proxy_set_header Connection \"\";"
        if ((PEER_HEADERS)); then
            echo "            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;"
            echo "            proxy_set_header X-Forwarded-Proto \$scheme;"
            echo "            proxy_set_header X-Request-Id \$request_id;"
            echo "            proxy_set_header X-Request-Start \"t=\${msec}\";"
        fi
        echo "        }"
        echo "    }"
        echo "}"
    } >"$conf"
    "$NGINX" -e "$prefix/error.log" -p "$prefix/" -c "$conf" -g "daemon off;" >"$prefix/stdout.log" 2>&1 &
    master=$!
    LIVE[$master]="nginx master"
    GROUP_PIDS+=("$master")
    wait_port "$PORT" "$master" nginx "$prefix/error.log"
    worker=""
    for ((i = 0; i < 100; i++)); do
        worker=$(children_of "$master" | head -n1)
        [[ -z $worker ]] || break
        sleep 0.05
    done
    [[ -n $worker ]] || die "no nginx worker process under pid $master"
    FD_PORT[nginx]=$PORT
    FD_PID[nginx]=$worker # CPU is accounted to the worker that proxies
    pin_front_door "$master" "$worker"
}

# ---------------------------------------------------------------- measuring

cat >"$DIR/report.lua" <<'EOF'
-- Machine-readable summary; defines no per-request callback (no slowdown).
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %.1f %.1f %d %d %d %d %d\n",
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99),
    e.status, e.connect, e.read, e.write, e.timeout))
end
EOF

cat >"$DIR/reasons.lua" <<'EOF'
-- Tallies non-2xx answers by status and Rip-Reason (slow: parses every answer).
local names = { "queue_full", "queue_timeout", "upstream_timeout", "upstream_error", "no_capacity", "other" }
for _, n in ipairs(names) do _G["r_" .. n] = 0 end
s502, s503, s504, s_other, first = 0, 0, 0, 0, ""
local threads = {}
setup = function(thread) table.insert(threads, thread) end
response = function(status, headers, body)
  if status < 300 then return end
  if status == 502 then s502 = s502 + 1
  elseif status == 503 then s503 = s503 + 1
  elseif status == 504 then s504 = s504 + 1
  else s_other = s_other + 1 end
  local reason = headers["rip-reason"] or headers["Rip-Reason"] or "other"
  local key = "r_" .. reason
  if _G[key] == nil then key = "r_other" end
  _G[key] = _G[key] + 1
  if first == "" then first = status .. " rip-reason=" .. reason .. " body=" .. (body or "") end
end
done = function(summary, latency, requests)
  local total = {}
  local keys = { "s502", "s503", "s504", "s_other" }
  for _, n in ipairs(names) do table.insert(keys, "r_" .. n) end
  local firsts = {}
  for _, t in ipairs(threads) do
    for _, k in ipairs(keys) do total[k] = (total[k] or 0) + (t:get(k) or 0) end
    local f = t:get("first")
    if f ~= nil and f ~= "" then table.insert(firsts, f) end
  end
  local line = "REASONS requests=" .. summary.requests
  for _, k in ipairs(keys) do line = line .. " " .. k .. "=" .. total[k] end
  io.write(line .. "\n")
  for _, f in ipairs(firsts) do io.write("FIRST " .. f .. "\n") end
end
EOF

if [[ $ACCEPT != only ]]; then
    echo "round,contender,shape,path,workers,conns,duration_s,requests,rps,ok_rps,p50_ms,p99_ms,non2xx,err_connect,err_read,err_write,err_timeout,cpu_s,cpu_s_per_10k,loadavg1,rip_stuck,app" >"$CSV"
fi

RUN_SEQ=0
# Sets R_* from one wrk output file; returns 1 if it has no RESULT line.
parse_result() {
    local line
    line=$(grep '^RESULT ' "$1" | tail -n1) || return 1
    read -r _ R_REQ R_DUR_US R_P50_US R_P99_US R_NON2XX R_EC R_ER R_EW R_ET <<<"$line"
}

record() { # round contender shape path workers conns requests duration_us p50_us p99_us non2xx ec er ew et cpu_ticks [stuck]
    local round=$1 who=$2 shape=$3 path=$4 w=$5 c=$6 req=$7 dur=$8 p50=$9 p99=${10} non=${11}
    local ec=${12} er=${13} ew=${14} et=${15} ticks=${16} stuck=${17:-}
    awk -v round="$round" -v who="$who" -v shape="$shape" -v path="$path" -v w="$w" -v c="$c" \
        -v req="$req" -v dur="$dur" -v p50="$p50" -v p99="$p99" -v non="$non" \
        -v ec="$ec" -v er="$er" -v ew="$ew" -v et="$et" -v ticks="$ticks" -v hz="$CLK_TCK" \
        -v la="$(loadavg1)" -v stuck="$stuck" -v app="$APP" 'BEGIN {
            secs = dur / 1e6; if (secs <= 0) secs = 1e-9
            if (ticks == "NA") { cpu = "NA"; per = "NA" }
            else { cpu = sprintf("%.2f", ticks / hz); per = (req > 0) ? sprintf("%.3f", ticks / hz / req * 10000) : "NA" }
            printf "%s,%s,%s,\"%s\",%s,%s,%.3f,%d,%.1f,%.1f,%.3f,%.3f,%d,%d,%d,%d,%d,%s,%s,%s,%s,%s\n",
                round, who, shape, path, w, c, secs, req, req / secs, (req - non) / secs,
                p50 / 1000, p99 / 1000, non, ec, er, ew, et, cpu, per, la, stuck, app
        }' >>"$CSV"
}

# METRICS: GET /metrics once a second while rip-metrics is measured, as a
# Prometheus server would (a bounded loop: at most DURATION + 2 scrapes, each
# at most 1 s; it ends early when $DIR/scrape.stop exists). Sets SCRAPER_PID.
start_scraper() { # output file
    local n=$((DURATION + 2))
    rm -f "$DIR/scrape.stop"
    (
        for ((k = 0; k < n; k++)); do
            [[ -e $DIR/scrape.stop ]] && break
            curl -sS -m 1 -o /dev/null -w '%{http_code}\n' "http://127.0.0.1:$METRICS_PORT/metrics" 2>&1 || true
            sleep 1
        done
    ) >"$1" &
    SCRAPER_PID=$!
    LIVE[$SCRAPER_PID]="metrics scraper"
}

stop_scraper() { # output file: stops the loop (by its pid) and logs its tally
    local i ok all
    : >"$DIR/scrape.stop"
    for ((i = 0; i < 30; i++)); do
        alive "$SCRAPER_PID" || break
        sleep 0.1
    done
    stop_pids "$SCRAPER_PID"
    all=$(grep -c . "$1" || true)
    ok=$(grep -c '^200$' "$1" || true)
    log "  /metrics scraped $all time(s), $ok answered 200"
    if ((ok == 0 || ok != all)); then log "  warning: not every scrape of /metrics succeeded; see $1"; fi
}

run_frontdoor() { # round contender shape path workers conns [close(0|1)]
    local round=$1 who=$2 shape=$3 path=$4 w=$5 c=$6 close=${7:-0} out t pid before after
    local port=${FD_PORT[$who]}
    local -a hdr=()
    if ((close)); then hdr=(-H "Connection: close"); fi
    pid=${FD_PID[$who]}
    t=$((THREADS < c ? THREADS : c))
    RUN_SEQ=$((RUN_SEQ + 1))
    out=$RAW/$(printf '%03d' "$RUN_SEQ")-$who-${shape// /_}-r$round.txt
    if [[ $who == rip-metrics ]]; then start_scraper "${out%.txt}.scrapes"; fi
    before=$(cpu_ticks "$pid")
    "${WRK_RUN[@]}" -t"$t" -c"$c" -d"${DURATION}s" --latency -s "$DIR/report.lua" "${hdr[@]}" "$SCHEME://127.0.0.1:$port$path" >"$out" 2>&1 || true
    after=$(cpu_ticks "$pid")
    if [[ $who == rip-metrics ]]; then stop_scraper "${out%.txt}.scrapes"; fi
    alive "$pid" || die "$who (pid $pid) died during $shape; see $out"
    if ! parse_result "$out"; then
        log "no result from wrk for $who $shape; see $out"
        return 0
    fi
    local stuck=""
    if [[ $who == rip || $who == rip-default || $who == rip-metrics ]]; then
        rip_settled "$w" "$who"
        stuck=$STUCK
    fi
    record "$round" "$who" "$shape" "$path" "$w" "$c" "$R_REQ" "$R_DUR_US" "$R_P50_US" "$R_P99_US" \
        "$R_NON2XX" "$R_EC" "$R_ER" "$R_EW" "$R_ET" $((after - before)) "$stuck"
    log "  $(tail -n1 "$CSV" | cut -d, -f2,3,9,11,12,13,19 | tr ',' ' ')"
    if [[ -n $stuck && $stuck != 0 ]]; then
        log "  ${who/rip/rip-server} still shows $stuck request(s) in flight with no client left; restarting it"
        restart_rip "$w" "$who"
    fi
}

# After a run every request has ended, so rip-server's /status should show
# nothing in flight. Sets STUCK to what it still shows after 2 s (0 = fine).
rip_settled() { # workers [rip|rip-default|rip-metrics]
    local i body who=${2:-rip}
    STUCK=unknown
    for ((i = 0; i < 40; i++)); do
        body=$(curl -fsS -m 2 "${CURL_TLS[@]}" "$SCHEME://127.0.0.1:${FD_PORT[$who]}/status" 2>/dev/null) || body=""
        STUCK=$(grep -o '"inflight":[0-9]*' <<<"$body" | head -n1 | cut -d: -f2)
        STUCK=${STUCK:-unknown}
        [[ $STUCK == 0 ]] && return 0
        sleep 0.05
    done
    echo "$body" >"$RAW/stuck-$RUN_SEQ.status.json"
}

restart_rip() { # workers [rip|rip-default|rip-metrics]: a fresh rip-server, warmed up, with nothing stuck
    local pid attempt who=${2:-rip}
    for ((attempt = 1; attempt <= 3; attempt++)); do
        pid=${FD_PID[$who]}
        # SIGKILL: a graceful stop would wait --stop-timeout-ms for the stuck
        # requests; the workers die with it (parent-death signal).
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        unset "LIVE[$pid]"
        RIP_RESTARTS=$((RIP_RESTARTS + 1))
        start_rip "$1" "$who"
        warm "$who" "$first_path" "$1"
        rip_settled "$1" "$who"
        [[ $STUCK == 0 ]] && return 0
        log "  the warm-up left $STUCK request(s) in flight too; restarting again"
    done
    log "  rip-server keeps requests stuck after its warm-up; measuring it anyway"
}

# One wrk -t1 -c1 per TCP worker, all at once; requests and rates summed,
# p50 = mean of the workers' p50, p99 = the largest p99.
run_direct() { # round shape path workers
    local round=$1 shape=$2 path=$3 w=$4 i pid
    local -a pids=() outs=()
    RUN_SEQ=$((RUN_SEQ + 1))
    for ((i = 0; i < w; i++)); do
        outs[i]=$RAW/$(printf '%03d' "$RUN_SEQ")-direct-${shape// /_}-r$round-w$i.txt
        "${WRK_RUN[@]}" -t1 -c1 -d"${DURATION}s" --latency -s "$DIR/report.lua" \
            "http://127.0.0.1:${DIRECT_PORTS[i]}$path" >"${outs[i]}" 2>&1 &
        pids[i]=$!
        LIVE[${pids[i]}]="wrk direct $i"
    done
    for pid in "${pids[@]}"; do
        wait "$pid" || true
        unset "LIVE[$pid]"
    done
    local req=0 rps_sum=0 p50_sum=0 p99_max=0 non=0 ec=0 er=0 ew=0 et=0
    for ((i = 0; i < w; i++)); do
        parse_result "${outs[i]}" || {
            log "no result from wrk for direct $shape worker $i; see ${outs[i]}"
            return 0
        }
        req=$((req + R_REQ))
        non=$((non + R_NON2XX))
        ec=$((ec + R_EC))
        er=$((er + R_ER))
        ew=$((ew + R_EW))
        et=$((et + R_ET))
        rps_sum=$(awk -v a="$rps_sum" -v r="$R_REQ" -v d="$R_DUR_US" 'BEGIN { printf "%.3f", a + r / (d / 1e6) }')
        p50_sum=$(awk -v a="$p50_sum" -v b="$R_P50_US" 'BEGIN { print a + b }')
        p99_max=$(awk -v a="$p99_max" -v b="$R_P99_US" 'BEGIN { print (b > a) ? b : a }')
    done
    # Express the summed rate through an equivalent duration, so the CSV's
    # rps column (requests / duration) is the sum of the per-worker rates.
    local dur_us p50
    dur_us=$(awk -v r="$req" -v s="$rps_sum" 'BEGIN { printf "%d", (s > 0) ? r / s * 1e6 : 1 }')
    p50=$(awk -v a="$p50_sum" -v n="$w" 'BEGIN { print a / n }')
    record "$round" direct "$shape" "$path" "$w" "$w" "$req" "$dur_us" "$p50" "$p99_max" \
        "$non" "$ec" "$er" "$ew" "$et" NA
    log "  $(tail -n1 "$CSV" | cut -d, -f2,3,9,11,12,13 | tr ',' ' ')"
}

warm() { # contender path conns
    ((WARMUP > 0)) || return 0
    "${WRK_RUN[@]}" -t1 -c"$3" -d"${WARMUP}s" "$SCHEME://127.0.0.1:${FD_PORT[$1]}$2" >/dev/null 2>&1 || true
}

# rip's files keep their old names (diagnose-SHAPE.txt, lines tagged
# [SHAPE]); rip-default's say so (diagnose-rip-default-SHAPE.txt,
# [rip-default SHAPE]).
diagnose_rip() { # contender(rip|rip-default) shape path workers conns [close(0|1)]
    local who=$1 tag=$2 name=${2// /_} t=$((THREADS < $5 ? THREADS : $5))
    if [[ $who != rip ]]; then
        tag="$who $2"
        name=$who-$name
    fi
    local out=$RAW/diagnose-$name.txt
    local -a hdr=()
    if ((${6:-0})); then hdr=(-H "Connection: close"); fi
    log "diagnosing ${who/rip/rip-server} non-2xx on $2"
    "${WRK_RUN[@]}" -t"$t" -c"$5" -d"${DURATION}s" -s "$DIR/reasons.lua" "${hdr[@]}" "$SCHEME://127.0.0.1:${FD_PORT[$who]}$3" >"$out" 2>&1 || true
    curl -fsS "${CURL_TLS[@]}" "$SCHEME://127.0.0.1:${FD_PORT[$who]}/status" >"$out.status.json" 2>/dev/null || true
    grep -E '^(REASONS|FIRST)' "$out" | sed "s|^|  [$tag] |" | tee -a "$DIAGNOSIS" >&2 || true
    grep -o '"counters":{[^}]*}' "$out.status.json" | sed "s|^|  [$tag] $who /status |" | tee -a "$DIAGNOSIS" >&2 || true
}

# PROTO=https: what a front door negotiates with OpenSSL's client (wrk's
# library; no SNI name, as wrk's host is 127.0.0.1), whether it resumes a
# session (a second connection offering the first one's TLS 1.3 ticket: wrk
# keeps its session across reconnects, so the *-close shapes resume wherever
# the server allows it), and its full-handshake rate for one client, one
# connection at a time (openssl s_time -new, 2 s). Once per contender (first
# worker group), into TLS_NEGOTIATED, printed above the table; raw/tls-*.txt.
declare -A TLS_NEGOTIATED=()
tls_probe() { # contender
    local who=$1 out proto cipher group reused t0 t1 n rate
    [[ $PROTO == https && -z ${TLS_NEGOTIATED[$who]+x} ]] || return 0
    local addr=127.0.0.1:${FD_PORT[$who]} raw=$RAW/tls-$who.txt
    # 1 s of silence on stdin lets the client read the server's tickets.
    out=$(sleep 1 | timeout 10 openssl s_client -connect "$addr" -sess_out "$DIR/tls-$who.sess" 2>&1) || true
    printf '%s\n' "$out" >"$raw"
    proto=$(grep -m1 -oE '^(New|Reused), TLSv[0-9.]+' <<<"$out" | sed 's/.*, //') || true
    cipher=$(grep -m1 -oE 'Cipher is [A-Z0-9_-]+' <<<"$out" | sed 's/Cipher is //') || true
    group=$(grep -m1 -E '^(Server|Peer) Temp Key' <<<"$out" | sed 's/^[^:]*: *//; s/,.*//') || true
    reused=no
    if [[ -s $DIR/tls-$who.sess ]]; then
        out=$(timeout 10 openssl s_client -connect "$addr" -sess_in "$DIR/tls-$who.sess" </dev/null 2>&1) || true
        printf '%s\n' "$out" >>"$raw"
        if grep -q '^Reused, ' <<<"$out"; then reused=yes; fi
    fi
    t0=$(date +%s%N)
    out=$(timeout 10 openssl s_time -connect "$addr" -new -time 2 2>&1) || true
    t1=$(date +%s%N)
    printf '%s\n' "$out" | tr -d '*' >>"$raw"
    n=$(grep -m1 -oE '^[0-9]+ connections in [0-9.]+s' <<<"$out" | cut -d' ' -f1) || true
    rate=$(awk -v n="${n:-0}" -v ns="$((t1 - t0))" 'BEGIN { printf "%.0f", (ns > 0) ? n / (ns / 1e9) : 0 }')
    TLS_NEGOTIATED[$who]="${proto:-?} ${cipher:-?} ${group:-?}; resumes sessions: $reused; full handshakes, one client one at a time: $rate/s"
}

# ---------------------------------------------------------------- main loop

label() { # path workers conns [close] -> "ping w4 c16" ("ping-close w4 c16")
    local p=${1#/}
    p=${p//\?ms=/}
    p=${p//[^a-zA-Z0-9]/_}
    if ((${4:-0})); then p+=-close; fi
    echo "$p w$2 c$3"
}

# One shape, PATH:WORKERS:CONNECTIONS[:close] -> S_PATH S_W S_C S_CLOSE.
parse_shape() {
    local s=$1 rest
    S_CLOSE=0
    if [[ $s == *:close ]]; then
        S_CLOSE=1
        s=${s%:close}
    fi
    S_C=${s##*:}
    rest=${s%:*}
    S_W=${rest##*:}
    S_PATH=${rest%:*}
}

has() { [[ " $CONTENDERS " == *" $1 "* ]]; }

declare -A GROUP_SHAPES=()
GROUP_ORDER=()
for s in $SHAPES; do
    parse_shape "$s"
    c=$S_C
    w=$S_W
    path=$S_PATH
    [[ $c =~ ^[0-9]+$ && $w =~ ^[0-9]+$ && $path == /* ]] || die "shape $s: expected PATH:WORKERS:CONNECTIONS[:close]"
    if [[ -z ${GROUP_SHAPES[$w]+x} ]]; then
        GROUP_ORDER+=("$w")
        GROUP_SHAPES[$w]=""
    fi
    GROUP_SHAPES[$w]+="$s "
done

# Estimate: one run per contender and shape, plus direct where conns == workers.
runs=0
front=0
for who in rip rip-default rip-metrics haproxy haproxy-reuse nginx; do if has "$who"; then front=$((front + 1)); fi; done
for s in $SHAPES; do
    runs=$((runs + front))
    parse_shape "$s"
    if has direct && ((!S_CLOSE)) && [[ $S_C == "$S_W" ]]; then runs=$((runs + 1)); fi
done
log "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), kernel $(uname -r)"
log "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
if [[ $ACCEPT != only ]]; then
    log "$runs runs x $ROUNDS rounds x ${DURATION}s = ~$((runs * ROUNDS * DURATION / 60 + 1)) min of load (plus start-up)"
fi
if [[ $ACCEPT != 0 ]]; then
    log "acceptance run: w:2 and w:4, wrk -t8 -c512 -d${ACCEPT_DURATION}s each"
fi
START_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
START_TIME=$(date +%s)

DIAG_SHAPES=()
if [[ $ACCEPT != only ]]; then
    : >"$DIAGNOSIS"
    for w in "${GROUP_ORDER[@]}"; do
        log "group: $w workers"
        GROUP_PIDS=()
        FD_PORT=()
        FD_PID=()
        if has haproxy || has haproxy-reuse || has nginx; then start_workers "$w"; fi
        if has direct; then start_direct "$w"; fi
        if has rip; then start_rip "$w"; fi
        if has rip-default; then start_rip "$w" rip-default; fi
        if has rip-metrics; then start_rip "$w" rip-metrics; fi
        if has haproxy; then start_haproxy haproxy "$w" 0; fi
        if has haproxy-reuse; then start_haproxy haproxy-reuse "$w" 1; fi
        if has nginx; then start_nginx "$w"; fi
        first_path=${GROUP_SHAPES[$w]%%:*}
        for who in rip rip-default rip-metrics haproxy haproxy-reuse nginx; do
            if has "$who"; then
                tls_probe "$who"
                warm "$who" "$first_path" "$w"
            fi
        done
        for who in rip rip-default rip-metrics; do
            has "$who" || continue
            rip_settled "$w" "$who"
            if [[ $STUCK != 0 ]]; then
                log "${who/rip/rip-server} shows $STUCK request(s) in flight after the warm-up; restarting it"
                restart_rip "$w" "$who"
            fi
        done
        for ((round = 1; round <= ROUNDS; round++)); do
            log "round $round/$ROUNDS ($w workers, load average $(cut -d' ' -f1 /proc/loadavg))"
            for s in ${GROUP_SHAPES[$w]}; do
                parse_shape "$s"
                c=$S_C
                path=$S_PATH
                shape=$(label "$path" "$w" "$c" "$S_CLOSE")
                for who in rip rip-default rip-metrics haproxy haproxy-reuse nginx; do
                    if has "$who"; then run_frontdoor "$round" "$who" "$shape" "$path" "$w" "$c" "$S_CLOSE"; fi
                done
                if has direct && ((!S_CLOSE && c == w)); then run_direct "$round" "$shape" "$path" "$w"; fi
            done
        done
        for who in rip rip-default; do
            if ! has "$who" || ((!DIAGNOSE)); then continue; fi
            for s in ${GROUP_SHAPES[$w]}; do
                parse_shape "$s"
                c=$S_C
                path=$S_PATH
                shape=$(label "$path" "$w" "$c" "$S_CLOSE")
                if awk -F, -v who="$who" -v s="$shape" '$2 == who && $3 == s && $13 > 0 { found = 1 } END { exit !found }' "$CSV"; then
                    if [[ $who == rip ]]; then DIAG_SHAPES+=("$shape"); else DIAG_SHAPES+=("$shape (default)"); fi
                    diagnose_rip "$who" "$shape" "$path" "$w" "$c" "$S_CLOSE"
                fi
            done
        done
        stop_pids "${GROUP_PIDS[@]}"
    done
fi

# ---------------------------------------------------------------- memory

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }

MEMORY_LINES=()
if ((MEMORY)) && has rip; then
    log "memory: $IDLE_CONNS idle keep-alive connections, then a 64 MB upload"
    GROUP_PIDS=()
    # Enough descriptors for the connections on both ends (the script and
    # rip-server inherit this limit).
    want=$((IDLE_CONNS + 200))
    if (($(ulimit -n) < want)); then ulimit -n "$want" 2>/dev/null || ulimit -n "$(ulimit -Hn)"; fi
    if (($(ulimit -n) < want)); then
        IDLE_CONNS=$(($(ulimit -n) - 200))
        log "ulimit -n allows only $IDLE_CONNS connections"
    fi
    start_rip 2
    pid=${FD_PID[rip]}
    line=$(python3 "$ROOT/benches/idle_conns.py" "${FD_PORT[rip]}" "$pid" "$IDLE_CONNS")
    log "idle connections: $line"
    idle=$(sed -n 's/.*rss_idle_kib=\([0-9]*\).*/\1/p' <<<"$line")
    busy=$(sed -n 's/.*rss_busy_kib=\([0-9]*\).*/\1/p' <<<"$line")
    before=$(sed -n 's/.*rss_before_kib=\([0-9]*\).*/\1/p' <<<"$line")
    MEMORY_LINES+=("$(printf '%-48s %6s MB  (before %s MB, right after the requests %s MB)  target < 64 MB' \
        "RSS holding $IDLE_CONNS idle keep-alive conns" "$(mb "$idle")" "$(mb "$before")" "$(mb "$busy")")")
    stop_pids "${GROUP_PIDS[@]}"
    GROUP_PIDS=()
    start_rip 2
    pid=${FD_PID[rip]}
    head -c $((64 * 1024 * 1024)) /dev/zero >"$DIR/upload.bin"
    before=$(rss_kib "$pid")
    hwm0=$(hwm_kib "$pid")
    got=$(curl -sS -o /dev/null -w '%{http_code} %{size_download}' --data-binary @"$DIR/upload.bin" \
        -H 'Content-Type: application/octet-stream' "http://127.0.0.1:${FD_PORT[rip]}/echo")
    hwm1=$(hwm_kib "$pid")
    peak=$((hwm1 > before ? hwm1 : before))
    log "64 MB upload echoed: HTTP $got; RSS $before kB before, peak $hwm1 kB (peak before: $hwm0 kB)"
    MEMORY_LINES+=("$(printf '%-48s %6s MB  (HTTP %s)  target < 8 MB' "peak RSS growth during a 64 MB upload (echoed)" \
        "$(mb $((peak - before)))" "$got")")
    rm -f "$DIR/upload.bin"
    stop_pids "${GROUP_PIDS[@]}"
fi

# ---------------------------------------------------------------- acceptance

# The seeds' acceptance run: rip-server in its default configuration (as
# rip-default: none of RIP_ARGS, none of DEFAULT_UNSET), w:2 then w:4, warmed
# up like every front door, then wrk -t8 -c512 --latency /ping. One row per
# worker count in ACCEPT_CSV. A server that exits, or a wrk run with no
# result, is a FAIL row, not the end of the script: it reports.
ACCEPT_THREADS=8
ACCEPT_CONNS=512
machine_line() { echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), kernel $(uname -r)"; }
pin_line() { echo "pinned (PIN=1): front door on CPU 0, worker i on CPU (i+1) mod $NCPU, wrk on CPUs $WRK_CPUS"; }
ignored_line() { echo "rip-server's default configuration ignores, from this environment: ${DEFAULT_IGNORED[*]}"; }
run_acceptance() {
    # rip_settled and restart_rip save what they find under $RAW: here the
    # acceptance run's own directory, so results.csv's raw/ stays as it is.
    local RAW=$ACCEPT_RAW w out pid stuck verdict note want start_load
    rm -rf "$RAW"
    mkdir -p "$RAW"
    echo "$ACCEPT_HEADER" >"$ACCEPT_CSV"
    start_load=$(cut -d' ' -f1-3 /proc/loadavg)
    # wrk holds 512 sockets, rip-server 512 more plus its workers' and its own.
    want=$((2 * ACCEPT_CONNS + 256))
    if (($(ulimit -n) < want)); then ulimit -n "$want" 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true; fi
    if (($(ulimit -n) < want)); then
        log "warning: ulimit -n is $(ulimit -n), below the $want the acceptance run needs: expect socket errors"
    fi
    first_path=/ping # restart_rip warms up on it
    for w in 2 4; do
        log "acceptance: w:$w, rip-server's default configuration, wrk -t$ACCEPT_THREADS -c$ACCEPT_CONNS -d${ACCEPT_DURATION}s --latency /ping"
        GROUP_PIDS=()
        FD_PORT=()
        FD_PID=()
        start_rip "$w" rip-default
        warm rip-default /ping "$w"
        rip_settled "$w" rip-default
        if [[ $STUCK != 0 ]]; then
            log "rip-server shows $STUCK request(s) in flight after the warm-up; restarting it"
            restart_rip "$w" rip-default
        fi
        pid=${FD_PID[rip-default]}
        out=$RAW/w$w.txt
        "${WRK_RUN[@]}" -t"$ACCEPT_THREADS" -c"$ACCEPT_CONNS" -d"${ACCEPT_DURATION}s" --latency -s "$DIR/report.lua" \
            "$SCHEME://127.0.0.1:${FD_PORT[rip-default]}/ping" >"$out" 2>&1 || true
        note=""
        stuck=NA
        if alive "$pid"; then
            rip_settled "$w" rip-default
            stuck=$STUCK
            curl -fsS -m 2 "${CURL_TLS[@]}" "$SCHEME://127.0.0.1:${FD_PORT[rip-default]}/status" >"$RAW/w$w.status.json" 2>/dev/null || true
        else
            note="rip-server exited during the run"
        fi
        if parse_result "$out"; then
            verdict=PASS
            if ((R_NON2XX || R_EC || R_ER || R_EW || R_ET)) || [[ -n $note ]]; then verdict=FAIL; fi
            awk -v w="$w" -v c="$ACCEPT_CONNS" -v t="$ACCEPT_THREADS" -v req="$R_REQ" -v dur="$R_DUR_US" \
                -v p50="$R_P50_US" -v p99="$R_P99_US" -v non="$R_NON2XX" -v ec="$R_EC" -v er="$R_ER" -v ew="$R_EW" \
                -v et="$R_ET" -v stuck="$stuck" -v la="$(loadavg1)" -v verdict="$verdict" -v note="$note" \
                -v app="$APP" -v proto="$PROTO" 'BEGIN {
                    secs = dur / 1e6; if (secs <= 0) secs = 1e-9
                    printf "%s,%s,%s,%.3f,%d,%.1f,%.1f,%.3f,%.3f,%d,%d,%d,%d,%d,%s,%s,%s,%s,%s,%s\n",
                        w, c, t, secs, req, req / secs, (req - non) / secs, p50 / 1000, p99 / 1000,
                        non, ec, er, ew, et, stuck, la, verdict, note, app, proto
                }' >>"$ACCEPT_CSV"
        else
            note=${note:-no result from wrk}
            printf '%s,%s,%s,NA,NA,NA,NA,NA,NA,NA,NA,NA,NA,NA,%s,%s,FAIL,%s,%s,%s\n' "$w" "$ACCEPT_CONNS" "$ACCEPT_THREADS" \
                "$stuck" "$(loadavg1)" "$note (see $out)" "$APP" "$PROTO" >>"$ACCEPT_CSV"
        fi
        log "  $(tail -n1 "$ACCEPT_CSV" | cut -d, -f1,7,8,9,10,11-14,15,17,18 | tr ',' ' ')"
        if [[ -s $RAW/w$w.status.json ]] && [[ $(tail -n1 "$ACCEPT_CSV" | cut -d, -f17) != PASS ]]; then
            log "  rip-server /status $(grep -o '"counters":{[^}]*}' "$RAW/w$w.status.json" || true)"
        fi
        stop_pids "${GROUP_PIDS[@]}"
    done
    {
        echo "rip-server: $BIN"
        machine_line
        if ((PIN)); then pin_line; fi
        if ((${#DEFAULT_IGNORED[@]})); then ignored_line; fi
        echo "load average: start $start_load, end $(cut -d' ' -f1-3 /proc/loadavg); taken $(date -u '+%Y-%m-%d %H:%M UTC')"
        print_acceptance "$ACCEPT_CSV"
    } >"$ACCEPT_TABLE"
}

if [[ $ACCEPT != 0 ]]; then run_acceptance; fi

END_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
ELAPSED=$(($(date +%s) - START_TIME))

if [[ $ACCEPT == only ]]; then
    cat "$ACCEPT_TABLE"
    log "acceptance: $ACCEPT_CSV; table: $ACCEPT_TABLE; wrk outputs: $ACCEPT_RAW/"
    exit 0
fi

# ---------------------------------------------------------------- table

{
    if [[ $APP == bun ]]; then
        echo "app: examples/hello-ts in Bun $BUN_VERSION workers (rip-server's own; standalone ones of the same runtime behind HAProxy and nginx)"
    fi
    echo "rip-server vs HAProxy vs nginx: median of $ROUNDS round(s) x ${DURATION}s, wrk -t$THREADS --latency, loopback"
    if [[ $PROTO == https ]]; then
        echo "over HTTPS (PROTO=https): TLS ends at the front door, plain HTTP to the workers"
        echo "$TLS_LINE"
        for who in rip rip-default rip-metrics haproxy haproxy-reuse nginx; do
            if [[ -n ${TLS_NEGOTIATED[$who]+x} ]]; then printf 'TLS %-14s %s\n' "$who:" "${TLS_NEGOTIATED[$who]}"; fi
        done
    fi
    if ((METRICS)); then
        echo "METRICS=1: rip-metrics = rip-server with --metrics-port, /metrics scraped once a second during its runs"
    fi
    if has rip-default; then
        echo "rip-server extra arguments: ${RIP_ARGS:-none} (rip-default: none)"
        if ((${#DEFAULT_IGNORED[@]})); then ignored_line; fi
    else
        echo "rip-server extra arguments: ${RIP_ARGS:-none}"
    fi
    if ((PEER_HEADERS)); then
        echo "HAProxy and nginx add the forwarding headers rip-server adds (PEER_HEADERS=1)"
    else
        echo "HAProxy and nginx add no headers (PEER_HEADERS=0); rip-server adds its four"
    fi
    machine_line
    if ((PIN)); then pin_line; fi
    echo "load average: start $START_LOAD, end $END_LOAD; taken $(date -u '+%Y-%m-%d %H:%M UTC'), ${ELAPSED}s"
    echo
    print_table "$CSV"
    if ((RIP_RESTARTS)); then echo "rip-server restarts: $RIP_RESTARTS"; fi
    if ((${#MEMORY_LINES[@]})); then
        echo
        echo "rip-server memory (w:2):"
        printf '  %s\n' "${MEMORY_LINES[@]}"
    fi
    if ((${#DIAG_SHAPES[@]})); then
        echo
        printf -v diag_list '%s, ' "${DIAG_SHAPES[@]}"
        echo "rip-server answered non-2xx on: ${diag_list%, }; tallies by Rip-Reason:"
        if [[ ${DIAG_SHAPES[*]} == *"(default)"* ]]; then echo "(default) = rip-default, lines tagged [rip-default SHAPE]"; fi
        cat "$DIAGNOSIS"
    fi
    if [[ $ACCEPT == 1 ]]; then
        echo
        print_acceptance "$ACCEPT_CSV"
    fi
} | tee "$TABLE"
log "raw results: $CSV; table: $TABLE; wrk outputs: $RAW/"
if [[ $ACCEPT == 1 ]]; then log "acceptance: $ACCEPT_CSV; table: $ACCEPT_TABLE; wrk outputs: $ACCEPT_RAW/"; fi
