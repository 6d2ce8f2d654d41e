//! Simulated clients: bursts, steady load and disconnects against `lb:80`.
//!
//! Every request uses its own connection (hyper's client connection over a
//! turmoil `TcpStream`), carries an `x-sim-tag` naming it in the trace, and
//! is recorded with its send time, answer time, status and `Rip-Reason`.
//! Abandoning a request drops its connection mid-flight.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use turmoil::net::TcpStream;

use crate::net::HTTP_PORT;
use crate::rng::{Rng, mix, name_hash};
use crate::state::{Outcome, RequestRecord, SharedRef, lock, now_us};
use crate::worker::{PID_HEADER, TAG_HEADER, WORK_HEADER, drive};

/// A client gives up on the server after this long and records a hang.
pub const SAFETY_LIMIT: Duration = Duration::from_secs(60);

/// One planned request.
#[derive(Clone, Debug)]
pub struct Req {
    /// When to send it (simulated time since the start).
    pub at: Duration,
    pub method: Method,
    /// Service time the worker should take (overrides its distribution).
    pub work_ms: Option<u64>,
    /// Drop the request this long after sending it.
    pub abandon_after: Option<Duration>,
}

impl Req {
    pub fn get(at: Duration) -> Req {
        Req {
            at,
            method: Method::GET,
            work_ms: None,
            abandon_after: None,
        }
    }

    pub fn work(mut self, ms: u64) -> Req {
        self.work_ms = Some(ms);
        self
    }

    pub fn abandon(mut self, after: Duration) -> Req {
        self.abandon_after = Some(after);
        self
    }
}

/// What a client does.
#[derive(Clone, Debug)]
pub enum ClientPlan {
    /// These requests, each at its own time, concurrently.
    Fixed(Vec<Req>),
    /// One request at a time from `start` to `stop`, with a think time between.
    Steady {
        start: Duration,
        stop: Duration,
        think: (Duration, Duration),
        /// Share of requests sent as POST (not idempotent: never retried after sending).
        post_chance: f64,
        /// Share of requests dropped mid-flight.
        abandon_chance: f64,
        abandon_after: (Duration, Duration),
    },
}

/// Runs a client's plan.
pub async fn client_main(shared: SharedRef, name: String, plan: ClientPlan) -> turmoil::Result {
    let seed = lock(&shared).seed;
    let mut rng = Rng::new(mix(seed, name_hash(&name)));
    match plan {
        ClientPlan::Fixed(requests) => {
            let mut tasks = Vec::new();
            for (n, req) in requests.into_iter().enumerate() {
                let shared = shared.clone();
                let tag = format!("{name}-{n}");
                let client = name.clone();
                tasks.push(tokio::task::spawn_local(async move {
                    sleep_until(req.at).await;
                    send(&shared, &client, tag, &req).await;
                }));
            }
            for task in tasks {
                task.await?;
            }
        }
        ClientPlan::Steady {
            start,
            stop,
            think,
            post_chance,
            abandon_chance,
            abandon_after,
        } => {
            sleep_until(start).await;
            let mut n = 0;
            while now_us() < crate::state::us(stop) {
                let method = if rng.chance(post_chance) {
                    Method::POST
                } else {
                    Method::GET
                };
                let abandon = rng
                    .chance(abandon_chance)
                    .then(|| rng.millis(abandon_after.0, abandon_after.1));
                let req = Req {
                    at: Duration::ZERO,
                    method,
                    work_ms: None,
                    abandon_after: abandon,
                };
                send(&shared, &name, format!("{name}-{n}"), &req).await;
                n += 1;
                tokio::time::sleep(rng.millis(think.0, think.1)).await;
            }
        }
    }
    Ok(())
}

/// Sleeps until simulated time `at`.
pub async fn sleep_until(at: Duration) {
    let now = Duration::from_micros(now_us());
    if at > now {
        tokio::time::sleep(at - now).await;
    }
}

async fn send(shared: &SharedRef, client: &str, tag: String, req: &Req) {
    let sent = now_us();
    let index = {
        let mut s = lock(shared);
        s.requests.push(RequestRecord {
            tag: tag.clone(),
            client: client.to_owned(),
            method: req.method.to_string(),
            sent_us: sent,
            done_us: None,
            outcome: Outcome::Pending,
        });
        s.log(sent, format!("{tag} {} sent", req.method));
        s.requests.len() - 1
    };
    let abandon = req.abandon_after;
    let outcome = tokio::select! {
        biased;
        result = exchange(&tag, req) => match result {
            Ok(outcome) => outcome,
            Err(e) => Outcome::TransportError(e),
        },
        () = tokio::time::sleep(abandon.unwrap_or(SAFETY_LIMIT)), if abandon.is_some() => Outcome::Abandoned,
        () = tokio::time::sleep(SAFETY_LIMIT) => Outcome::Hung,
    };
    let done = now_us();
    let mut s = lock(shared);
    let text = match &outcome {
        Outcome::Response { status, reason, pid } => {
            let mut text = format!("{status}");
            if let Some(reason) = reason {
                text.push(' ');
                text.push_str(reason);
            }
            if let Some(pid) = pid {
                text.push_str(&format!(" from pid {pid}"));
            }
            text
        }
        Outcome::Abandoned => "abandoned".to_owned(),
        Outcome::TransportError(e) => format!("transport error: {e}"),
        Outcome::Hung => "HUNG".to_owned(),
        Outcome::Pending => "pending".to_owned(),
    };
    s.log(done, format!("{tag} -> {text} after {}ms", (done - sent) / 1000));
    let record = &mut s.requests[index];
    record.done_us = Some(done);
    record.outcome = outcome;
}

async fn exchange(tag: &str, req: &Req) -> Result<Outcome, String> {
    let stream = TcpStream::connect(("lb", HTTP_PORT))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let body = if req.method == Method::POST {
        Bytes::from(format!("payload of {tag}"))
    } else {
        Bytes::new()
    };
    let mut builder = Request::builder()
        .method(req.method.clone())
        .uri(format!("/r/{tag}"))
        .header(header::HOST, "lb")
        .header(TAG_HEADER, tag);
    if let Some(ms) = req.work_ms {
        builder = builder.header(WORK_HEADER, ms);
    }
    let request = builder.body(Full::new(body)).map_err(|e| e.to_string())?;
    let exchange = async {
        let response = sender.send_request(request).await.map_err(|e| format!("send: {e}"))?;
        let status = response.status().as_u16();
        let reason = response
            .headers()
            .get("rip-reason")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let pid = response
            .headers()
            .get(PID_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        response.into_body().collect().await.map_err(|e| format!("body: {e}"))?;
        Ok(Outcome::Response { status, reason, pid })
    };
    drive(conn, exchange).await
}
