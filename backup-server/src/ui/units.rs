//! How quantities read on the dashboard: bytes in binary units, durations in the largest units
//! that matter, and times as absolute UTC with "3 min ago" beside them.

use chrono::{DateTime, Utc};
use maud::{Markup, html};

/// `1536` -> `1.5 KiB`; below 1 KiB the plain count of bytes.
pub(super) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value < 10.0 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}

/// A duration in milliseconds as a person says it: `850 ms`, `12.3 s`, `4 min 5 s`, `2 h 3 min`,
/// `3 d 4 h`.
pub(super) fn duration_ms(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 1_000 {
        return format!("{ms} ms");
    }
    if ms < 60_000 {
        return format!("{:.1} s", ms as f64 / 1000.0);
    }
    span(ms / 1000)
}

/// Whole seconds in the two largest units: `4 min 5 s`, `2 h 3 min`, `3 d 4 h`.
fn span(secs: i64) -> String {
    let (d, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s} s"),
        (0, 0, _) if s == 0 => format!("{m} min"),
        (0, 0, _) => format!("{m} min {s} s"),
        (0, _, 0) => format!("{h} h"),
        (0, _, _) => format!("{h} h {m} min"),
        (_, 0, _) => format!("{d} d"),
        _ => format!("{d} d {h} h"),
    }
}

/// How long ago `t` was, at `now`, in its largest unit: `just now`, `3 min ago`, `2 h ago`,
/// `5 d ago`; a time ahead reads `in 3 min`.
pub(super) fn ago(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (now - t).num_seconds();
    let amount = |s: i64| match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86_400 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    };
    match secs {
        -4..=4 => "just now".into(),
        s if s > 0 => format!("{} ago", amount(s)),
        s => format!("in {}", amount(-s)),
    }
}

/// A time as the dashboard shows it: absolute UTC to the second with the relative time beside
/// it, or `-` for none.
pub(super) fn when(t: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Markup {
    match t {
        None => html! { "-" },
        Some(t) => html! {
            time datetime=(t.to_rfc3339()) { (t.format("%Y-%m-%d %H:%M:%S UTC")) }
            " " span.ago { "(" (ago(t, now)) ")" }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_in_binary_units() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(300 * 1024 * 1024), "300 MiB");
        assert_eq!(bytes(5 * 1024 * 1024 * 1024 + 1), "5.0 GiB");
        assert_eq!(bytes(u64::MAX), "16384 PiB");
    }

    #[test]
    fn durations_read_in_their_two_largest_units() {
        assert_eq!(duration_ms(-5), "0 ms");
        assert_eq!(duration_ms(850), "850 ms");
        assert_eq!(duration_ms(12_345), "12.3 s");
        assert_eq!(duration_ms(245_000), "4 min 5 s");
        assert_eq!(duration_ms(180_000), "3 min");
        assert_eq!(duration_ms(2 * 3_600_000 + 180_000), "2 h 3 min");
        assert_eq!(duration_ms(7_200_000), "2 h");
        assert_eq!(duration_ms(3 * 86_400_000 + 4 * 3_600_000), "3 d 4 h");
    }

    #[test]
    fn times_read_relative_to_now() {
        let now: DateTime<Utc> = "2026-03-01T12:00:00Z".parse().expect("time");
        let at = |s: i64| now - chrono::Duration::seconds(s);
        assert_eq!(ago(at(2), now), "just now");
        assert_eq!(ago(at(42), now), "42 s ago");
        assert_eq!(ago(at(180), now), "3 min ago");
        assert_eq!(ago(at(7_300), now), "2 h ago");
        assert_eq!(ago(at(5 * 86_400), now), "5 d ago");
        assert_eq!(ago(at(-600), now), "in 10 min");
        let shown = when(Some(at(180)), now).into_string();
        assert!(shown.contains("2026-03-01 11:57:00 UTC"), "{shown}");
        assert!(shown.contains("(3 min ago)"), "{shown}");
        assert_eq!(when(None, now).into_string(), "-");
    }
}
