//! What a run measures: latency histograms (HdrHistogram, microseconds),
//! counts, errors by kind; and the summary printed at the end, as text for
//! people and as one line of JSON for tools.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// The longest latency recorded exactly; longer ones are recorded as this.
const MAX_MICROS: u64 = 600_000_000;

/// A latency distribution, recorded in microseconds with three significant
/// digits.
#[derive(Debug, Clone)]
pub struct Latency {
    histogram: Histogram<u64>,
}

impl Default for Latency {
    fn default() -> Self {
        Self { histogram: Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid histogram bounds") }
    }
}

impl Latency {
    /// Records one latency.
    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(MAX_MICROS).clamp(1, MAX_MICROS);
        self.histogram.record(micros).expect("clamped into the histogram's range");
    }

    /// How many latencies were recorded.
    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// The latency at quantile `q` (0.5 for the median), in milliseconds;
    /// `None` when nothing was recorded.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        (self.count() > 0).then(|| self.histogram.value_at_quantile(q) as f64 / 1_000.0)
    }

    /// The largest latency, in milliseconds.
    pub fn max_ms(&self) -> Option<f64> {
        (self.count() > 0).then(|| self.histogram.max() as f64 / 1_000.0)
    }

    /// p50, p99, p99.9 and max, in milliseconds.
    pub fn summary(&self) -> LatencySummary {
        LatencySummary {
            count: self.count(),
            p50_ms: self.quantile_ms(0.5),
            p99_ms: self.quantile_ms(0.99),
            p999_ms: self.quantile_ms(0.999),
            max_ms: self.max_ms(),
        }
    }
}

/// A latency in milliseconds for people, or `-` when there is none.
pub(crate) fn format_ms(ms: Option<f64>) -> String {
    ms.map_or_else(|| "-".to_owned(), |v| format!("{v:.2} ms"))
}

/// A latency distribution's summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencySummary {
    /// How many were recorded.
    pub count: u64,
    /// Median, ms.
    pub p50_ms: Option<f64>,
    /// 99th percentile, ms.
    pub p99_ms: Option<f64>,
    /// 99.9th percentile, ms.
    pub p999_ms: Option<f64>,
    /// Largest, ms.
    pub max_ms: Option<f64>,
}

/// Everything a run counts. Times are from the start of the run.
#[derive(Debug, Default)]
pub struct Stats {
    /// Arrival (request sent) to the first offer's arrival at the client.
    pub offer: Latency,
    /// Accept request to its acknowledgement.
    pub ack: Latency,
    /// Round trip of every request, by route.
    pub routes: BTreeMap<&'static str, Latency>,
    /// How late the schedule fired arrivals (the load generator's own lag).
    pub schedule_lag: Latency,
    /// Failures, by kind.
    pub errors: BTreeMap<String, u64>,
    /// Expected races the engine refused (a colleague invited to a
    /// conference was no longer free, a conversation ended under a step):
    /// by kind. Not errors: a real desktop meets them too.
    pub races: BTreeMap<String, u64>,
    /// Customers sent.
    pub arrivals: u64,
    /// Conversations ended with every participant's wrap-up in.
    pub lifecycles: u64,
    /// Of those, completed inside the measuring window.
    pub lifecycles_in_window: u64,
    /// Conversations that ended without an agent (the customer left after
    /// a lapsed offer).
    pub abandoned: u64,
    /// Wrap-ups submitted.
    pub wrap_ups: u64,
    /// Offers seen (in replies or on the WebSocket).
    pub offers: u64,
    /// Offers the simulated agents let lapse on purpose.
    pub lapses: u64,
    /// Events in command replies.
    pub events: u64,
    /// Of those, in replies received inside the measuring window.
    pub events_in_window: u64,
    /// Requests answered 200.
    pub requests_ok: u64,
    /// Of those, agents' commands answered on their WebSockets.
    pub requests_on_socket: u64,
    /// Events that arrived on agent WebSockets (not counted in `events`).
    pub ws_events: u64,
}

impl Stats {
    /// Counts one failure of `kind`.
    pub fn error(&mut self, kind: impl Into<String>) {
        *self.errors.entry(kind.into()).or_default() += 1;
    }

    /// Counts one expected race of `kind`.
    pub fn race(&mut self, kind: impl Into<String>) {
        *self.races.entry(kind.into()).or_default() += 1;
    }

    /// Records a request's round trip on `route`.
    pub fn route(&mut self, route: &'static str, latency: Duration) {
        self.routes.entry(route).or_default().record(latency);
    }

    /// All failures.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// The figures of a run, as printed.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Target arrival rate, per second.
    pub rate: f64,
    /// Seconds of arrivals.
    pub duration_s: f64,
    /// The measuring window, seconds: arrivals' duration less the warm-up.
    pub window_s: f64,
    /// The schedule's seed.
    pub seed: u64,
    /// Agents played.
    pub agents: usize,
    /// Whether agents also listened on the WebSocket.
    pub ws: bool,
    /// Whether agents sent their commands on the WebSocket.
    pub ws_commands: bool,
    /// Customers sent.
    pub arrivals: u64,
    /// Lifecycles (conversation ended, every wrap-up in) completed per second in the window.
    pub lifecycles_per_s: f64,
    /// Events in command replies per second in the window.
    pub events_per_s: f64,
    /// Lifecycles completed in the whole run.
    pub lifecycles_completed: u64,
    /// Conversations the customer left after a lapsed offer.
    pub abandoned: u64,
    /// Conversations neither completed nor abandoned when the run stopped.
    pub unfinished: u64,
    /// Offers let lapse on purpose.
    pub lapses: u64,
    /// Wrap-ups submitted.
    pub wrap_ups: u64,
    /// Events counted in replies.
    pub events: u64,
    /// Requests answered 200.
    pub requests_ok: u64,
    /// Of those, agents' commands answered on their WebSockets.
    pub requests_on_socket: u64,
    /// Median arrival-to-offer latency, ms.
    pub offer_p50_ms: Option<f64>,
    /// 99th percentile arrival-to-offer latency, ms.
    pub offer_p99_ms: Option<f64>,
    /// 99.9th percentile arrival-to-offer latency, ms.
    pub offer_p999_ms: Option<f64>,
    /// Median accept round trip, ms.
    pub ack_p50_ms: Option<f64>,
    /// 99th percentile accept round trip, ms.
    pub ack_p99_ms: Option<f64>,
    /// 99.9th percentile accept round trip, ms.
    pub ack_p999_ms: Option<f64>,
    /// Median of how late arrivals were sent (the load generator's own lag).
    pub schedule_lag_p50_ms: Option<f64>,
    /// 99th percentile of how late arrivals were sent.
    pub schedule_lag_p99_ms: Option<f64>,
    /// The latest an arrival was sent.
    pub schedule_lag_max_ms: Option<f64>,
    /// The engine's peak resident set (VmHWM), MB; `None` when unknown.
    pub engine_peak_rss_mb: Option<f64>,
    /// CPU seconds the engine used from the first arrival to the end of the drain.
    pub engine_cpu_s: Option<f64>,
    /// CPU seconds the load generator used over the same time.
    pub loadtest_cpu_s: Option<f64>,
    /// The engine's CPU per event counted, µs: what the work cost, apart
    /// from whether the run kept up (a slower machine shows here).
    pub engine_cpu_us_per_event: Option<f64>,
    /// The load generator's CPU per event counted, µs.
    pub loadtest_cpu_us_per_event: Option<f64>,
    /// Failures in all.
    pub errors: u64,
    /// Failures by kind.
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Expected races by kind.
    pub races: BTreeMap<String, u64>,
    /// Round trips by route.
    pub routes: BTreeMap<String, LatencySummary>,
}

/// The run's shape, for the summary.
#[derive(Debug, Clone)]
pub struct RunShape {
    /// Target arrival rate, per second.
    pub rate: f64,
    /// Seconds of arrivals.
    pub duration: Duration,
    /// The measuring window's length.
    pub window: Duration,
    /// The schedule's seed.
    pub seed: u64,
    /// Agents played.
    pub agents: usize,
    /// WebSocket mode.
    pub ws: bool,
    /// Agents' commands on the WebSocket.
    pub ws_commands: bool,
}

impl Summary {
    /// The summary of `stats`, with `unfinished` conversations left and the
    /// engine's peak RSS in bytes when known.
    pub fn new(shape: &RunShape, stats: &Stats, unfinished: u64, engine_peak_rss: Option<u64>) -> Self {
        let window_s = shape.window.as_secs_f64().max(f64::EPSILON);
        let round = |x: f64| (x * 10.0).round() / 10.0;
        Self {
            rate: shape.rate,
            duration_s: shape.duration.as_secs_f64(),
            window_s: shape.window.as_secs_f64(),
            seed: shape.seed,
            agents: shape.agents,
            ws: shape.ws,
            ws_commands: shape.ws_commands,
            arrivals: stats.arrivals,
            lifecycles_per_s: round(stats.lifecycles_in_window as f64 / window_s),
            events_per_s: round(stats.events_in_window as f64 / window_s),
            lifecycles_completed: stats.lifecycles,
            abandoned: stats.abandoned,
            unfinished,
            lapses: stats.lapses,
            wrap_ups: stats.wrap_ups,
            events: stats.events,
            requests_ok: stats.requests_ok,
            requests_on_socket: stats.requests_on_socket,
            offer_p50_ms: stats.offer.quantile_ms(0.5),
            offer_p99_ms: stats.offer.quantile_ms(0.99),
            offer_p999_ms: stats.offer.quantile_ms(0.999),
            ack_p50_ms: stats.ack.quantile_ms(0.5),
            ack_p99_ms: stats.ack.quantile_ms(0.99),
            ack_p999_ms: stats.ack.quantile_ms(0.999),
            schedule_lag_p50_ms: stats.schedule_lag.quantile_ms(0.5),
            schedule_lag_p99_ms: stats.schedule_lag.quantile_ms(0.99),
            schedule_lag_max_ms: stats.schedule_lag.max_ms(),
            engine_peak_rss_mb: engine_peak_rss.map(|bytes| round(bytes as f64 / 1_048_576.0)),
            engine_cpu_s: None,
            loadtest_cpu_s: None,
            engine_cpu_us_per_event: None,
            loadtest_cpu_us_per_event: None,
            errors: stats.error_count(),
            errors_by_kind: stats.errors.clone(),
            races: stats.races.clone(),
            routes: stats.routes.iter().map(|(route, l)| ((*route).to_owned(), l.summary())).collect(),
        }
    }

    /// Records the CPU seconds the engine and the load generator used over
    /// the run, and what that is per event counted.
    pub fn set_cpu(&mut self, engine_s: Option<f64>, loadtest_s: Option<f64>) {
        let round = |x: f64| (x * 100.0).round() / 100.0;
        let per_event = |s: f64| (self.events > 0).then(|| round(s * 1e6 / self.events as f64));
        self.engine_cpu_us_per_event = engine_s.and_then(per_event);
        self.loadtest_cpu_us_per_event = loadtest_s.and_then(per_event);
        self.engine_cpu_s = engine_s.map(round);
        self.loadtest_cpu_s = loadtest_s.map(round);
    }

    /// The report for people, without the JSON line.
    pub fn render_text(&self) -> String {
        let ms = format_ms;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "load: {} customers/s for {} s (seed {}), {} agents, offers from {}",
            self.rate,
            self.duration_s,
            self.seed,
            self.agents,
            match (self.ws, self.ws_commands) {
                (true, true) => "replies and WebSockets, agents' commands on their WebSockets",
                (true, false) => "replies and WebSockets",
                _ => "replies",
            }
        );
        let _ = writeln!(
            out,
            "arrivals: {} sent, schedule lag p50 {}, p99 {}, max {}",
            self.arrivals,
            ms(self.schedule_lag_p50_ms),
            ms(self.schedule_lag_p99_ms),
            ms(self.schedule_lag_max_ms)
        );
        let _ = writeln!(
            out,
            "lifecycles: {:.1}/s sustained over the last {:.1} s; {} completed, {} abandoned after a lapse, {} unfinished ({} lapses, {} wrap-ups)",
            self.lifecycles_per_s, self.window_s, self.lifecycles_completed, self.abandoned, self.unfinished, self.lapses, self.wrap_ups
        );
        let _ = writeln!(
            out,
            "events: {:.1}/s in replies ({} in all, {} requests ok, {} of them on agents' sockets)",
            self.events_per_s, self.events, self.requests_ok, self.requests_on_socket
        );
        let _ = writeln!(
            out,
            "arrival to offer: p50 {}, p99 {}, p99.9 {}",
            ms(self.offer_p50_ms),
            ms(self.offer_p99_ms),
            ms(self.offer_p999_ms)
        );
        let _ = writeln!(
            out,
            "accept to ack: p50 {}, p99 {}, p99.9 {}",
            ms(self.ack_p50_ms),
            ms(self.ack_p99_ms),
            ms(self.ack_p999_ms)
        );
        let _ = writeln!(out, "round trips by route:");
        for (route, l) in &self.routes {
            let _ = writeln!(
                out,
                "  {route:<18} {:>8}  p50 {:>11}  p99 {:>11}  p99.9 {:>11}  max {:>11}",
                l.count,
                ms(l.p50_ms),
                ms(l.p99_ms),
                ms(l.p999_ms),
                ms(l.max_ms)
            );
        }
        if self.errors_by_kind.is_empty() {
            let _ = writeln!(out, "errors: none");
        } else {
            let _ = writeln!(out, "errors: {}", self.errors);
            for (kind, n) in &self.errors_by_kind {
                let _ = writeln!(out, "  {kind}: {n}");
            }
        }
        if !self.races.is_empty() {
            let races: Vec<String> = self.races.iter().map(|(k, n)| format!("{k} {n}")).collect();
            let _ = writeln!(out, "races (refused as a real desktop would be, not errors): {}", races.join(", "));
        }
        let cpu = |s: Option<f64>, per_event: Option<f64>| match (s, per_event) {
            (Some(s), Some(us)) => format!("{s:.1} s ({us:.1} µs an event)"),
            (Some(s), None) => format!("{s:.1} s"),
            _ => "-".to_owned(),
        };
        let _ = writeln!(
            out,
            "CPU from the first arrival to the end: engine {}, load generator {}",
            cpu(self.engine_cpu_s, self.engine_cpu_us_per_event),
            cpu(self.loadtest_cpu_s, self.loadtest_cpu_us_per_event)
        );
        match self.engine_peak_rss_mb {
            Some(mb) => {
                let _ = writeln!(out, "engine peak RSS: {mb:.1} MB");
            }
            None => {
                let _ = writeln!(out, "engine peak RSS: unknown (give --engine-pid)");
            }
        }
        out
    }

    /// The summary as one line of JSON.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).expect("a summary serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut latency = Latency::default();
        assert_eq!(latency.quantile_ms(0.5), None);
        for ms in 1..=1_000u64 {
            latency.record(Duration::from_millis(ms));
        }
        assert_eq!(latency.count(), 1_000);
        let close = |got: Option<f64>, want: f64| (got.unwrap() - want).abs() <= want * 0.002;
        assert!(close(latency.quantile_ms(0.5), 500.0), "{:?}", latency.quantile_ms(0.5));
        assert!(close(latency.quantile_ms(0.99), 990.0), "{:?}", latency.quantile_ms(0.99));
        assert!(close(latency.quantile_ms(0.999), 999.0), "{:?}", latency.quantile_ms(0.999));
        assert!(close(latency.max_ms(), 1_000.0));
    }

    #[test]
    fn extreme_latencies_are_clamped_not_lost() {
        let mut latency = Latency::default();
        latency.record(Duration::ZERO);
        latency.record(Duration::from_secs(10_000));
        assert_eq!(latency.count(), 2);
        assert!(latency.max_ms().unwrap() >= 599_000.0);
    }

    /// A run of 11 s whose last 10 are measured.
    fn ten_second_window() -> RunShape {
        RunShape {
            rate: 100.0,
            duration: Duration::from_secs(11),
            window: Duration::from_secs(10),
            seed: 1,
            agents: 5,
            ws: false,
            ws_commands: false,
        }
    }

    #[test]
    fn the_summary_rates_use_the_window_and_the_json_has_the_promised_keys() {
        let mut stats =
            Stats { lifecycles: 1_100, lifecycles_in_window: 1_000, events_in_window: 9_500, ..Stats::default() };
        stats.error("http_409_offer_not_open");
        stats.error("http_409_offer_not_open");
        stats.error("transport");
        stats.ack.record(Duration::from_millis(2));
        stats.route("accept", Duration::from_millis(2));
        let shape = ten_second_window();
        let summary = Summary::new(&shape, &stats, 3, Some(50 * 1_048_576));
        assert_eq!(summary.lifecycles_per_s, 100.0);
        assert_eq!(summary.events_per_s, 950.0);
        assert_eq!(summary.errors, 3);
        let line = summary.to_json_line();
        assert!(!line.contains('\n'));
        let json: serde_json::Value = serde_json::from_str(&line).unwrap();
        for key in [
            "lifecycles_per_s",
            "events_per_s",
            "offer_p50_ms",
            "offer_p99_ms",
            "offer_p999_ms",
            "ack_p99_ms",
            "engine_peak_rss_mb",
            "errors",
        ] {
            assert!(json.get(key).is_some(), "missing {key} in {line}");
        }
        assert_eq!(json["engine_peak_rss_mb"], 50.0);
        assert_eq!(json["errors_by_kind"]["http_409_offer_not_open"], 2);
        assert_eq!(json["unfinished"], 3);
        assert!(json["offer_p50_ms"].is_null(), "nothing recorded is null, not zero");
        let text = summary.render_text();
        assert!(text.contains("errors: 3"), "{text}");
        assert!(text.contains("accept"), "{text}");
    }

    #[test]
    fn cpu_is_also_given_per_event_counted() {
        let mut stats = Stats { events: 400_000, ..Stats::default() };
        let shape = ten_second_window();
        let mut summary = Summary::new(&shape, &stats, 0, None);
        summary.set_cpu(Some(14.0), Some(6.123));
        assert_eq!((summary.engine_cpu_s, summary.loadtest_cpu_s), (Some(14.0), Some(6.12)));
        assert_eq!(summary.engine_cpu_us_per_event, Some(35.0));
        assert_eq!(summary.loadtest_cpu_us_per_event, Some(15.31));
        assert!(summary.render_text().contains("engine 14.0 s (35.0 µs an event)"), "{}", summary.render_text());
        // Unknown CPU, or no events, leaves the figures out rather than dividing by zero.
        summary.set_cpu(None, Some(1.0));
        assert_eq!(summary.engine_cpu_us_per_event, None);
        stats.events = 0;
        let mut empty = Summary::new(&shape, &stats, 0, None);
        empty.set_cpu(Some(1.0), Some(1.0));
        assert_eq!((empty.engine_cpu_s, empty.engine_cpu_us_per_event), (Some(1.0), None));
    }
}
