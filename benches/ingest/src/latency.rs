//! Percentiles of per-call times.

use std::fmt;

/// Per-call times in nanoseconds, summarised.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Summary {
    pub(crate) calls: usize,
    pub(crate) p50: u64,
    pub(crate) p99: u64,
    pub(crate) p999: u64,
    pub(crate) max: u64,
}

impl Summary {
    /// Summarises `nanos` (reordered in place).
    pub(crate) fn of(nanos: &mut [u64]) -> Summary {
        nanos.sort_unstable();
        let at = |p: f64| match nanos.len() {
            0 => 0,
            n => nanos[((n - 1) as f64 * p).round() as usize],
        };
        Summary {
            calls: nanos.len(),
            p50: at(0.50),
            p99: at(0.99),
            p999: at(0.999),
            max: at(1.0),
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} calls, p50 {} ns, p99 {} ns, p99.9 {} ns, max {} ns",
            self.calls, self.p50, self.p99, self.p999, self.max
        )
    }
}
