//! What `ca info` and `ca list` print: plain text for people, one fact a
//! line, no key material.

use std::fmt::Write as _;
use std::path::Path;
use std::time::SystemTime;

use super::DevCa;
use super::store::{Listed, certs_dir};
use super::trust::{Outcome, StoreReport};
use super::validity::format_utc;

/// `ca info`: the root's files, subject, serial, validity, SHA-256
/// fingerprint and name constraints; where it is trusted (from
/// [`super::trust::status`]); how many leaves it issued.
pub fn info_text(ca: &DevCa, home: &Path, trusted: &[StoreReport], leaves: usize) -> String {
    let mut out = String::new();
    let files = ca.files();
    let _ = writeln!(out, "certificate:  {}", files.cert.display());
    let _ = writeln!(out, "key:          {}", files.key.display());
    let _ = writeln!(out, "subject:      {}", ca.subject());
    let _ = writeln!(out, "serial:       {}", ca.serial_hex());
    let _ = writeln!(
        out,
        "valid:        {} to {}",
        format_utc(ca.not_before()),
        format_utc(ca.not_after())
    );
    let _ = writeln!(out, "SHA-256:      {}", ca.fingerprint_sha256());
    let _ = writeln!(out, "permits:      {}", ca.constraints());
    for (i, report) in trusted.iter().enumerate() {
        let state = match &report.outcome {
            Outcome::AlreadyTrusted => "trusted".to_string(),
            Outcome::NotTrusted => "not trusted".to_string(),
            Outcome::Skipped(why) => format!("none ({why})"),
            Outcome::Failed(why) => format!("unknown ({why})"),
            other => format!("{other:?}"),
        };
        let head = if i == 0 { "trust:" } else { "" };
        let _ = writeln!(out, "{head:<13} {}: {state}", report.store);
    }
    let _ = writeln!(
        out,
        "leaves:       {leaves} in {} (rip-server ca list)",
        certs_dir(home).display()
    );
    out
}

/// `ca list`: each issued leaf's file name, the names it covers, when it
/// expires and when it renews (or what is wrong with its files).
pub fn list_text(listed: &[Listed], home: &Path, now: SystemTime) -> String {
    if listed.is_empty() {
        return format!("no certificates issued yet ({} is empty)\n", certs_dir(home).display());
    }
    let rows: Vec<[String; 4]> = listed
        .iter()
        .map(|item| match &item.leaf {
            Ok(leaf) => {
                let renews = if now >= leaf.not_after {
                    "expired; renews on next use".to_string()
                } else if leaf.needs_renewal(now) {
                    "due; renews on next use".to_string()
                } else {
                    format_utc(leaf.renew_at())
                };
                [
                    item.name.clone(),
                    leaf.names.join(","),
                    format_utc(leaf.not_after),
                    renews,
                ]
            }
            Err(why) => [
                item.name.clone(),
                format!("unreadable, reissued on next use ({why})"),
                String::new(),
                String::new(),
            ],
        })
        .collect();
    let head = ["NAME", "COVERS", "EXPIRES", "RENEWS AT"];
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].len())
            .chain([head[i].len()])
            .max()
            .unwrap_or(0)
    };
    let (w0, w1, w2) = (width(0), width(1), width(2));
    let mut out = String::new();
    for row in std::iter::once(head.map(String::from)).chain(rows) {
        let line = format!("{:<w0$}  {:<w1$}  {:<w2$}  {}", row[0], row[1], row[2], row[3]);
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}
