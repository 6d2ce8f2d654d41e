//! The real-process suite: the `rip-server` binary, real sockets, real
//! signals, real worker processes. One test binary (one link instead of one
//! per file); each module is one area of behaviour.

mod common;

mod basics;
mod bun_apps;
mod ca;
mod cli;
mod control;
mod fast_path;
mod faults;
mod hot_reload;
mod https;
mod keepalive;
mod lb_replicas;
mod lifecycle;
mod limits;
mod logging;
mod metrics;
mod overload;
mod platform;
mod python;
mod registry;
mod retry;
mod security;
mod slow_client;
mod status;
mod systemd;
mod timeouts;
mod upgrade;
