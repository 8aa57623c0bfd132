//! `hap status`: the pool at a glance, built from `hap_pool_status`'s document (so it shows
//! exactly what the library sees, and never a secret).

use crate::ui::{self, human_ms, Paint};
use hap::{Config, Error, Pool};
use serde_json::Value;
use std::process::ExitCode;

pub fn run(cfg: Config, json: bool, paint: Paint) -> Result<ExitCode, Error> {
    let skew = cfg.refresh_skew_ms as i64;
    let unadopted = unadopted_login(&cfg);
    let login = hap::inspect::claude_code_login(&cfg).ok().flatten();
    // Issue 16: the fleet's authority, lease and version (docs/FLEET.md).
    let fleet = if json {
        String::new()
    } else {
        crate::fleet::status_lines(&cfg)
    };
    let pool = Pool::open(cfg)?;
    let doc = pool.status()?;
    if json {
        ui::outln(&serde_json::to_string_pretty(&doc).expect("a Value serializes"));
        return Ok(ExitCode::SUCCESS);
    }
    let has_borrowed = doc["credentials"]
        .as_array()
        .is_some_and(|c| c.iter().any(|r| r["source"] == "claude_code"));
    let note = match unadopted {
        Some(path) if !has_borrowed => Some(format!(
            "The Claude Code login in {path} is not in the pool yet: the first `hap token` adopts it."
        )),
        _ => None,
    };
    ui::out(&render(&doc, note, skew, hap::inspect::now_ms(), paint));
    if let Some(w) = refresh_expiry_warning(login.as_ref(), hap::inspect::now_ms()) {
        ui::out(&format!("\n{}\n", paint.yellow(&w)));
    }
    // hap agent (issue 15): alive, last and next refresh.
    ui::out(&crate::agent::status_line(paint));
    ui::out(&fleet);
    Ok(ExitCode::SUCCESS)
}

/// A warning when the login's refresh token itself (`refreshTokenExpiresAt`) expires within
/// a week or has expired: a headless machine otherwise finds out when it is logged out.
fn refresh_expiry_warning(
    login: Option<&(String, hap::inspect::LoginSummary)>,
    now: i64,
) -> Option<String> {
    let (name, login) = login?;
    let at = login.refresh_expires_at_ms?;
    if at <= now {
        Some(format!(
            "The refresh token in {name} expired {} ago: log in again with Claude Code (`claude`, then /login).",
            human_ms(now.saturating_sub(at))
        ))
    } else if at - now <= hap::inspect::REFRESH_EXPIRY_WARN_MS {
        Some(format!(
            "The refresh token in {name} itself expires in {}: log in again with Claude Code (`claude`, then /login) before then, or every refresh fails.",
            human_ms(at - now)
        ))
    } else {
        None
    }
}

/// Where Claude Code's login is (its Keychain item or file) when it holds one and a pool
/// file would adopt it.
fn unadopted_login(cfg: &Config) -> Option<String> {
    if cfg.pool_path.is_none() || !cfg.adopt_external_logins {
        return None;
    }
    let (name, login) = hap::inspect::claude_code_login(cfg).ok()??;
    login.pair.map(|_| name)
}

struct Cell {
    text: String,
    tone: Tone,
}

#[derive(Clone, Copy)]
enum Tone {
    Plain,
    Good,
    Warn,
    Bad,
}

fn cell(text: impl Into<String>, tone: Tone) -> Cell {
    Cell {
        text: text.into(),
        tone,
    }
}

fn row_cells(c: &Value, skew_ms: i64, now: i64) -> Vec<Cell> {
    let s = |k: &str| c[k].as_str().unwrap_or("").to_string();
    let has_token = c["has_token"].as_bool().unwrap_or(true);
    let last = c["last_status"].as_str();
    let status = match (has_token, last) {
        (false, _) => cell("no token", Tone::Bad),
        (true, None) | (true, Some("ok")) => cell("ok", Tone::Good),
        (true, Some("dead")) => cell("dead", Tone::Bad),
        (true, Some(other)) => cell(other, Tone::Warn),
    };
    let expires = match (has_token, c["expires_at_ms"].as_i64()) {
        (false, _) => cell("-", Tone::Plain),
        (true, None) => cell("never", Tone::Plain),
        (true, Some(at)) if at <= now => cell(
            format!("expired {} ago", human_ms(now.saturating_sub(at))),
            Tone::Warn,
        ),
        (true, Some(at)) if at.saturating_sub(now) <= skew_ms => {
            cell(human_ms(at.saturating_sub(now)), Tone::Warn)
        }
        (true, Some(at)) => cell(human_ms(at.saturating_sub(now)), Tone::Plain),
    };
    let available = if c["available"].as_bool() == Some(true) {
        cell("now", Tone::Good)
    } else if let Some(at) = c["available_at_ms"].as_i64() {
        cell(human_ms(at.saturating_sub(now)), Tone::Warn)
    } else if last == Some("dead") {
        cell("never (log in again)", Tone::Bad)
    } else {
        cell("-", Tone::Bad)
    };
    let error = match (
        c["last_error_code"].as_i64(),
        c["last_error_reason"].as_str(),
    ) {
        (Some(code), Some(r)) => format!("{code} {r}"),
        (Some(code), None) => code.to_string(),
        (None, Some(r)) => r.to_string(),
        (None, None) => "-".to_string(),
    };
    vec![
        cell(s("credential_id"), Tone::Plain),
        cell(s("label"), Tone::Plain),
        cell(s("source"), Tone::Plain),
        status,
        expires,
        available,
        cell(error, Tone::Plain),
    ]
}

pub fn render(doc: &Value, note: Option<String>, skew_ms: i64, now: i64, paint: Paint) -> String {
    let path = |k: &str| doc[k].as_str().unwrap_or("(none)").to_string();
    let mut out = String::new();
    out.push_str(&format!(
        "{} {}   strategy {}\n",
        paint.bold("provider"),
        doc["provider"].as_str().unwrap_or(""),
        doc["strategy"].as_str().unwrap_or("")
    ));
    out.push_str(&format!(
        "{}        {}\n",
        paint.dim("pool"),
        path("pool_path")
    ));
    out.push_str(&format!(
        "{} {}\n\n",
        paint.dim("credentials"),
        path("credentials_path")
    ));
    let creds = doc["credentials"].as_array().cloned().unwrap_or_default();
    if creds.is_empty() {
        out.push_str("No credentials in the pool.\n");
    } else {
        let header = [
            "ID",
            "LABEL",
            "SOURCE",
            "STATUS",
            "EXPIRES IN",
            "AVAILABLE IN",
            "LAST ERROR",
        ];
        let rows: Vec<Vec<Cell>> = creds.iter().map(|c| row_cells(c, skew_ms, now)).collect();
        let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
        for r in &rows {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(c.text.chars().count());
            }
        }
        let last = header.len() - 1;
        let line: Vec<String> = header
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let padded = if i == last {
                    h.to_string()
                } else {
                    format!("{h:<w$}", w = widths[i])
                };
                paint.bold(&padded)
            })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
        for r in &rows {
            let line: Vec<String> = r
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let padded = if i == last {
                        c.text.clone()
                    } else {
                        format!("{:<w$}", c.text, w = widths[i])
                    };
                    // Pad first, paint after: escape codes must not count as width.
                    match c.tone {
                        Tone::Plain => padded,
                        Tone::Good => paint.green(&padded),
                        Tone::Warn => paint.yellow(&padded),
                        Tone::Bad => paint.red(&padded),
                    }
                })
                .collect();
            out.push_str(line.join("  ").trim_end());
            out.push('\n');
        }
    }
    if let Some(n) = note {
        out.push('\n');
        out.push_str(&n);
        out.push('\n');
    }
    out
}
