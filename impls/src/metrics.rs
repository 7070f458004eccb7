//! A small Prometheus registry shared by the services: counters, gauges and fixed-bucket
//! histograms on atomics, optionally labelled, rendered in the text exposition format
//! (version 0.0.4). Each service builds its own metric set on a [`Registry`] and serves
//! [`Registry::render`] with the [`TEXT_FORMAT`] content type.
//!
//! Why not the `prometheus` crate: it brings protobuf and a global registry for what is a few
//! atomics and a formatter.
//!
//! Recording never blocks on rendering for long: a labelled family takes a short lock to find
//! (or create) its member, then the member is updated with atomics only.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A set of metric families with a common name prefix, rendered together.
#[derive(Debug, Default)]
pub struct Registry {
    families: Mutex<Vec<Arc<dyn Render>>>,
}

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

/// A value that goes up and down (connections open, queue depth).
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

/// Observations counted into fixed buckets, with their sum and count.
#[derive(Debug)]
pub struct Histogram {
    /// Upper bounds, ascending; `+Inf` is implicit.
    bounds: Arc<[f64]>,
    /// Observations per bucket (not cumulative); the last one is `+Inf`'s.
    buckets: Vec<AtomicU64>,
    /// The sum of all observations, as `f64` bits.
    sum_bits: AtomicU64,
    count: AtomicU64,
}

/// One metric name with its members, one per combination of label values.
#[derive(Debug)]
pub struct Family<M> {
    name: String,
    help: String,
    labels: Vec<String>,
    members: Mutex<BTreeMap<Vec<String>, Arc<M>>>,
    make: fn(&Family<M>) -> M,
    /// A histogram family's bucket bounds (empty for counters).
    bounds: Arc<[f64]>,
}

/// A counter family.
pub type CounterFamily = Family<Counter>;
/// A gauge family.
pub type GaugeFamily = Family<Gauge>;
/// A histogram family.
pub type HistogramFamily = Family<Histogram>;

trait Render: Send + Sync + std::fmt::Debug {
    fn render(&self, out: &mut String);
}

/// What a metric type renders for one member.
trait Sample {
    const TYPE: &'static str;
    fn write(&self, name: &str, labels: &str, out: &mut String);
}

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current count.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Gauge {
    /// Sets the value.
    pub fn set(&self, value: i64) {
        self.0.store(value, Ordering::Relaxed);
    }

    /// Adds `n` (negative to subtract).
    pub fn add(&self, n: i64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Histogram {
    fn new(bounds: Arc<[f64]>) -> Self {
        Self {
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            bounds,
            sum_bits: AtomicU64::new(0f64.to_bits()),
            count: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, value: f64) {
        let bucket = self
            .bounds
            .iter()
            .position(|bound| value <= *bound)
            .unwrap_or(self.bounds.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        // fetch_update only fails when the closure returns None, which it never does.
        let _ = self
            .sum_bits
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + value).to_bits())
            });
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The sum of the observations so far.
    pub fn sum(&self) -> f64 {
        f64::from_bits(self.sum_bits.load(Ordering::Relaxed))
    }
}

impl Sample for Counter {
    const TYPE: &'static str = "counter";

    fn write(&self, name: &str, labels: &str, out: &mut String) {
        let _ = writeln!(out, "{name}{} {}", braces(labels), self.get());
    }
}

impl Sample for Gauge {
    const TYPE: &'static str = "gauge";

    fn write(&self, name: &str, labels: &str, out: &mut String) {
        let _ = writeln!(out, "{name}{} {}", braces(labels), self.get());
    }
}

impl Sample for Histogram {
    const TYPE: &'static str = "histogram";

    fn write(&self, name: &str, labels: &str, out: &mut String) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (index, bucket) in self.buckets.iter().enumerate() {
            cumulative += bucket.load(Ordering::Relaxed);
            let le = self
                .bounds
                .get(index)
                .map_or_else(|| "+Inf".to_owned(), |b| format_float(*b));
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}"
            );
        }
        let braces = braces(labels);
        let _ = writeln!(out, "{name}_sum{braces} {}", format_float(self.sum()));
        // The count written is the buckets' total, so a scrape racing an observation stays
        // consistent (`+Inf` bucket == count).
        let _ = writeln!(out, "{name}_count{braces} {cumulative}");
    }
}

impl<M> Family<M> {
    /// The member for `values`, one per label name in order; created on first use. Missing
    /// values are empty strings, extra ones are ignored.
    pub fn with(&self, values: &[&str]) -> Arc<M> {
        let key: Vec<String> = (0..self.labels.len())
            .map(|i| values.get(i).copied().unwrap_or_default().to_owned())
            .collect();
        let mut members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(
            members
                .entry(key)
                .or_insert_with(|| Arc::new((self.make)(self))),
        )
    }
}

impl<M: Sample + Send + Sync + std::fmt::Debug> Render for Family<M> {
    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}", self.name, escape_help(&self.help));
        let _ = writeln!(out, "# TYPE {} {}", self.name, M::TYPE);
        let members: Vec<(Vec<String>, Arc<M>)> = {
            let members = self.members.lock().unwrap_or_else(|e| e.into_inner());
            members
                .iter()
                .map(|(k, v)| (k.clone(), Arc::clone(v)))
                .collect()
        };
        for (values, member) in members {
            let labels = self
                .labels
                .iter()
                .zip(&values)
                .map(|(name, value)| format!("{name}=\"{}\"", escape_label_value(value)))
                .collect::<Vec<_>>()
                .join(",");
            member.write(&self.name, &labels, out);
        }
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a counter family `name` with `labels` (none for a plain counter).
    pub fn counter_family(&self, name: &str, help: &str, labels: &[&str]) -> Arc<CounterFamily> {
        self.register(Family {
            name: name.to_owned(),
            help: help.to_owned(),
            labels: labels.iter().map(|l| (*l).to_owned()).collect(),
            members: Mutex::new(BTreeMap::new()),
            make: |_| Counter::default(),
            bounds: Arc::from([]),
        })
    }

    /// Registers an unlabelled counter `name`.
    pub fn counter(&self, name: &str, help: &str) -> Arc<Counter> {
        self.counter_family(name, help, &[]).with(&[])
    }

    /// Registers a gauge family `name` with `labels` (none for a plain gauge).
    pub fn gauge_family(&self, name: &str, help: &str, labels: &[&str]) -> Arc<GaugeFamily> {
        self.register(Family {
            name: name.to_owned(),
            help: help.to_owned(),
            labels: labels.iter().map(|l| (*l).to_owned()).collect(),
            members: Mutex::new(BTreeMap::new()),
            make: |_| Gauge::default(),
            bounds: Arc::from([]),
        })
    }

    /// Registers an unlabelled gauge `name`.
    pub fn gauge(&self, name: &str, help: &str) -> Arc<Gauge> {
        self.gauge_family(name, help, &[]).with(&[])
    }

    /// Registers a histogram family `name` with bucket upper `bounds` (sorted here; `+Inf` is
    /// implicit) and `labels`.
    pub fn histogram_family(
        &self,
        name: &str,
        help: &str,
        bounds: &[f64],
        labels: &[&str],
    ) -> Arc<HistogramFamily> {
        let mut bounds: Vec<f64> = bounds.iter().copied().filter(|b| b.is_finite()).collect();
        bounds.sort_by(f64::total_cmp);
        bounds.dedup();
        self.register(Family {
            name: name.to_owned(),
            help: help.to_owned(),
            labels: labels.iter().map(|l| (*l).to_owned()).collect(),
            members: Mutex::new(BTreeMap::new()),
            make: |family| Histogram::new(Arc::clone(&family.bounds)),
            bounds: bounds.into(),
        })
    }

    /// Registers an unlabelled histogram `name`.
    pub fn histogram(&self, name: &str, help: &str, bounds: &[f64]) -> Arc<Histogram> {
        self.histogram_family(name, help, bounds, &[]).with(&[])
    }

    fn register<M>(&self, family: Family<M>) -> Arc<Family<M>>
    where
        M: Sample + Send + Sync + std::fmt::Debug + 'static,
    {
        let family = Arc::new(family);
        let mut families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        families.push(Arc::clone(&family) as Arc<dyn Render>);
        family
    }

    /// Every family in the text exposition format, in registration order.
    pub fn render(&self) -> String {
        let families: Vec<Arc<dyn Render>> = self
            .families
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut out = String::new();
        for family in families {
            family.render(&mut out);
        }
        out
    }
}

/// The `Content-Type` of [`Registry::render`]'s output.
pub const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `{labels}`, or nothing without labels.
fn braces(labels: &str) -> String {
    if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    }
}

/// Prometheus floats: integers without a fraction, the rest as Rust prints them.
fn format_float(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{value}")
    }
}

fn escape_label_value(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

fn escape_help(help: &str) -> String {
    help.replace('\\', r"\\").replace('\n', r"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_with_and_without_labels() {
        let registry = Registry::new();
        let requests = registry.counter_family("app_requests_total", "Requests.", &["status"]);
        let plain = registry.counter("app_restarts_total", "Restarts.");
        requests.with(&["200"]).add(2);
        requests.with(&["503"]).inc();
        requests.with(&["200"]).inc();
        plain.inc();
        assert_eq!(
            registry.render(),
            concat!(
                "# HELP app_requests_total Requests.\n",
                "# TYPE app_requests_total counter\n",
                "app_requests_total{status=\"200\"} 3\n",
                "app_requests_total{status=\"503\"} 1\n",
                "# HELP app_restarts_total Restarts.\n",
                "# TYPE app_restarts_total counter\n",
                "app_restarts_total 1\n",
            )
        );
    }

    #[test]
    fn gauges_go_up_and_down() {
        let registry = Registry::new();
        let open = registry.gauge("app_open", "Open things.");
        open.add(3);
        open.add(-5);
        let queues = registry.gauge_family("app_queue", "Depth.", &["q"]);
        queues.with(&["a"]).set(7);
        assert_eq!(
            registry.render(),
            concat!(
                "# HELP app_open Open things.\n",
                "# TYPE app_open gauge\n",
                "app_open -2\n",
                "# HELP app_queue Depth.\n",
                "# TYPE app_queue gauge\n",
                "app_queue{q=\"a\"} 7\n",
            )
        );
    }

    #[test]
    fn histograms_are_cumulative_with_sum_and_count() {
        let registry = Registry::new();
        let sizes = registry.histogram("app_size", "Sizes.", &[10.0, 1.0, 100.0]);
        for value in [0.5, 1.0, 7.0, 1000.0] {
            sizes.observe(value);
        }
        assert_eq!(sizes.count(), 4);
        assert_eq!(
            registry.render(),
            concat!(
                "# HELP app_size Sizes.\n",
                "# TYPE app_size histogram\n",
                "app_size_bucket{le=\"1\"} 2\n",
                "app_size_bucket{le=\"10\"} 3\n",
                "app_size_bucket{le=\"100\"} 3\n",
                "app_size_bucket{le=\"+Inf\"} 4\n",
                "app_size_sum 1008.5\n",
                "app_size_count 4\n",
            )
        );
        let timed = registry.histogram_family("app_seconds", "Time.", &[0.5], &["op"]);
        timed.with(&["a\"b"]).observe(0.25);
        let text = registry.render();
        assert!(
            text.contains("app_seconds_bucket{op=\"a\\\"b\",le=\"0.5\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("app_seconds_sum{op=\"a\\\"b\"} 0.25\n"),
            "{text}"
        );
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let registry = Registry::new();
        let family = registry.counter_family("x_total", "a\\b\nc", &["v"]);
        family.with(&["q\"\\\n"]).inc();
        assert_eq!(
            registry.render(),
            "# HELP x_total a\\\\b\\nc\n# TYPE x_total counter\nx_total{v=\"q\\\"\\\\\\n\"} 1\n"
        );
    }
}
