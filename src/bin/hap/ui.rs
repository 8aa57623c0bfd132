//! Output helpers shared by the subcommands: durations, instants, colour, shell quoting,
//! and writes to stdout that survive a closed pipe (`hap status | head -3`).

use std::io::{IsTerminal, Write};
use std::path::Path;

/// `--color`: `auto` paints only when stdout is a terminal (and `NO_COLOR` is unset).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Clone, Copy, Debug)]
pub struct Paint {
    on: bool,
}

impl Paint {
    pub fn for_stdout(choice: ColorChoice) -> Paint {
        let on = match choice {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                std::io::stdout().is_terminal()
                    && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                    && std::env::var("TERM").map_or(true, |t| t != "dumb")
            }
        };
        Paint { on }
    }

    fn sgr(self, code: &str, text: &str) -> String {
        if self.on && !text.is_empty() {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    pub fn green(self, t: &str) -> String {
        self.sgr("32", t)
    }
    pub fn yellow(self, t: &str) -> String {
        self.sgr("33", t)
    }
    pub fn red(self, t: &str) -> String {
        self.sgr("31", t)
    }
    pub fn bold(self, t: &str) -> String {
        self.sgr("1", t)
    }
    pub fn dim(self, t: &str) -> String {
        self.sgr("2", t)
    }
}

/// Writes to stdout; a reader that went away (EPIPE) is not an error worth a panic.
pub fn out(text: &str) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(text.as_bytes());
    let _ = o.flush();
}

pub fn outln(text: &str) {
    out(&format!("{text}\n"));
}

/// `45s`, `12m`, `2h05m`, `3d04h`: how long, at a glance.
pub fn human_ms(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m", s / 60)
    } else if s < 86_400 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600)
    }
}

/// `2026-11-28T19:52:56Z`.
pub fn instant(ms: i64) -> String {
    let iso = hap::inspect::iso8601_utc(ms);
    format!("{}Z", &iso[..iso.len().min(19)])
}

/// `in 12m` / `3m ago` relative to `now`.
pub fn relative(ms: i64, now: i64) -> String {
    if ms >= now {
        format!("in {}", human_ms(ms.saturating_sub(now)))
    } else {
        format!("{} ago", human_ms(now.saturating_sub(ms)))
    }
}

/// A path as a shell word, for the `fix:` lines people paste.
pub fn sh(p: &Path) -> String {
    let s = p.to_string_lossy();
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:@,%".contains(c));
    if plain {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// `90s`, `10m`, `1h30m`, `500ms`, `2d`; a bare number is seconds.
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let s = text.trim();
    let bad = || format!("'{text}' is not a duration (examples: 90, 90s, 10m, 1h30m, 500ms)");
    if s.is_empty() {
        return Err(bad());
    }
    if let Ok(n) = s.parse::<u64>() {
        return n.checked_mul(1000).ok_or_else(bad);
    }
    let mut total: u64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit_ms: u64 = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total = n
            .checked_mul(unit_ms)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("10m"), Ok(600_000));
        assert_eq!(parse_duration_ms("90"), Ok(90_000));
        assert_eq!(parse_duration_ms("1h30m"), Ok(5_400_000));
        assert_eq!(parse_duration_ms("250ms"), Ok(250));
        assert!(parse_duration_ms("banana").is_err());
        assert!(parse_duration_ms("10x").is_err());
        assert!(parse_duration_ms("m").is_err());
        assert!(parse_duration_ms("").is_err());
    }

    #[test]
    fn humane() {
        assert_eq!(human_ms(59_999), "59s");
        assert_eq!(human_ms(600_000), "10m");
        assert_eq!(human_ms(3_900_000), "1h05m");
        assert_eq!(human_ms(90_000_000), "1d01h");
        assert_eq!(instant(0), "1970-01-01T00:00:00Z");
        assert_eq!(sh(Path::new("/a b/c")), "'/a b/c'");
        assert_eq!(sh(Path::new("/a/.c.json")), "/a/.c.json");
    }
}
