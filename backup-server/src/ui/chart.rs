//! The runs chart: data added (bars) and duration (a line) per finished run, as inline SVG.

use backup_core::BackupRunView;
use maud::{Markup, html};

use super::units::{bytes, duration_ms};

/// The chart of `runs` (newest first, as lists return them).
pub(super) fn chart(runs: &[BackupRunView]) -> Markup {
    let points: Vec<(u64, i64)> = runs
        .iter()
        .rev()
        .filter(|r| r.finished_at.is_some())
        .map(|r| (r.data_added.unwrap_or(0), r.duration_ms.unwrap_or(0)))
        .collect();
    if points.is_empty() {
        return html! { p { "No finished runs to chart yet." } };
    }
    let (w, h, pad) = (640.0_f64, 160.0_f64, 24.0_f64);
    let max_data = points.iter().map(|p| p.0).max().unwrap_or(1).max(1) as f64;
    let max_ms = points.iter().map(|p| p.1).max().unwrap_or(1).max(1) as f64;
    let step = (w - 2.0 * pad) / points.len() as f64;
    let line: Vec<String> = points
        .iter()
        .enumerate()
        .map(|(i, p)| {
            format!(
                "{:.1},{:.1}",
                pad + step * (i as f64 + 0.5),
                h - pad - (p.1 as f64 / max_ms) * (h - 2.0 * pad)
            )
        })
        .collect();
    html! {
        svg width=(w) height=(h) viewBox={ "0 0 " (w) " " (h) } role="img" aria-label="Data added (bars) and duration (line) per run" {
            rect x="0" y="0" width=(w) height=(h) fill="#fff" {}
            @for (i, p) in points.iter().enumerate() {
                @let bar = (p.0 as f64 / max_data) * (h - 2.0 * pad);
                rect x=(format!("{:.1}", pad + step * i as f64 + 2.0)) y=(format!("{:.1}", h - pad - bar)) width=(format!("{:.1}", (step - 4.0).max(1.0))) height=(format!("{:.1}", bar)) fill="#9cc3f5" {}
            }
            polyline points=(line.join(" ")) fill="none" stroke="#c2410c" stroke-width="2" {}
            text x=(pad) y="14" font-size="11" fill="#1d4ed8" { "data added (max " (bytes(max_data as u64)) ")" }
            text x=(w - pad) y="14" font-size="11" fill="#c2410c" text-anchor="end" { "duration (max " (duration_ms(max_ms as i64)) ")" }
        }
    }
}
