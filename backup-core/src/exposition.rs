//! Metrics exposition formats: OpenMetrics (what `prometheus-client` writes) and the classic
//! Prometheus text format 0.0.4, chosen by the scraper's `Accept` header.
//!
//! The two differ for counters: OpenMetrics names the family `x` and its sample `x_total`; the
//! text format names both `x_total`. A body in one format served under the other's content type
//! loses its counters' types and help (Prometheus then stores them untyped, and `promtool check
//! metrics` rejects them), so both the server and the agent negotiate with [`negotiate`].

use std::collections::BTreeSet;

/// The content type of an OpenMetrics body.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of a Prometheus text format 0.0.4 body.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What to answer a scrape with: (content type, body). `openmetrics` is the exposition in
/// OpenMetrics; `accept` the request's `Accept` header. A scraper that asks for OpenMetrics gets
/// it as is; every other (curl, promtool, older Prometheus) gets the text format.
#[must_use]
pub fn negotiate(accept: Option<&str>, openmetrics: String) -> (&'static str, String) {
    let wants_openmetrics = accept.is_some_and(|a| {
        a.split(',')
            .any(|part| part.trim().starts_with("application/openmetrics-text"))
    });
    if wants_openmetrics {
        (OPENMETRICS_CONTENT_TYPE, openmetrics)
    } else {
        (TEXT_CONTENT_TYPE, to_text_format(&openmetrics))
    }
}

/// Rewrites an OpenMetrics exposition (of counters, gauges and histograms) into the Prometheus
/// text format 0.0.4: counter families take their samples' `_total` name in `# HELP` and
/// `# TYPE`, `# UNIT` and `# EOF` lines go, and everything else is kept as is.
///
/// ```
/// let om = "# HELP jobs Jobs done.\n# TYPE jobs counter\njobs_total 3\n# EOF\n";
/// assert_eq!(
///     backup_core::exposition::to_text_format(om),
///     "# HELP jobs_total Jobs done.\n# TYPE jobs_total counter\njobs_total 3\n"
/// );
/// ```
#[must_use]
pub fn to_text_format(openmetrics: &str) -> String {
    let counters: BTreeSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .filter(|name| !name.ends_with("_total"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + 16 * counters.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(r) => out.push_str(r.trim_end()),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const OM: &str = "# HELP req Requests.\n# TYPE req counter\nreq_total{route=\"/a b\"} 2\n\
        # HELP lat Latency.\n# TYPE lat histogram\n# UNIT lat seconds\nlat_sum 1.5\nlat_count 2\n\
        lat_bucket{le=\"+Inf\"} 2\n# HELP up Up.\n# TYPE up gauge\nup 1\n\
        # HELP done_total Already suffixed.\n# TYPE done_total counter\ndone_total 1\n# EOF\n";

    #[test]
    fn counters_take_their_total_name_and_the_rest_is_kept() {
        assert_eq!(
            to_text_format(OM),
            "# HELP req_total Requests.\n# TYPE req_total counter\nreq_total{route=\"/a b\"} 2\n\
             # HELP lat Latency.\n# TYPE lat histogram\nlat_sum 1.5\nlat_count 2\n\
             lat_bucket{le=\"+Inf\"} 2\n# HELP up Up.\n# TYPE up gauge\nup 1\n\
             # HELP done_total Already suffixed.\n# TYPE done_total counter\ndone_total 1\n"
        );
    }

    #[test]
    fn scrapers_get_the_format_they_ask_for() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(
            negotiate(Some(prometheus), OM.into()),
            (OPENMETRICS_CONTENT_TYPE, OM.to_owned())
        );
        for accept in [None, Some("*/*"), Some("text/plain")] {
            let (content_type, body) = negotiate(accept, OM.into());
            assert_eq!(content_type, TEXT_CONTENT_TYPE);
            assert!(!body.contains("# EOF"), "{accept:?}");
        }
    }

    #[test]
    fn an_empty_exposition_stays_empty() {
        assert_eq!(to_text_format(""), "");
        assert_eq!(to_text_format("# EOF\n"), "");
    }
}
