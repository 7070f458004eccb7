//! What a checker finds, and the verdict of a run, with the seed in every failure message.

use super::faults::FaultLog;
use super::history::{Entry, Tally};
use super::rng::Seed;

/// One broken invariant, with the operations that show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The invariant's short name (`lost-ack`, `duplicate`, ...).
    pub invariant: &'static str,
    /// What was seen, naming the operations by history id.
    pub detail: String,
}

impl Violation {
    /// A violation of `invariant`.
    pub fn new(invariant: &'static str, detail: impl Into<String>) -> Violation {
        Violation {
            invariant,
            detail: detail.into(),
        }
    }
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.invariant, self.detail)
    }
}

/// The summary of one run.
#[derive(Clone, Debug)]
pub struct RunReport {
    /// What ran (`streams on redis`).
    pub name: String,
    /// The seed that replays it.
    pub seed: Seed,
    /// The history's outcome counts.
    pub tally: Tally,
    /// The most frequent reasons of `fail` and `info` outcomes, with their counts.
    pub reasons: Vec<(usize, String)>,
    /// The faults injected.
    pub faults: FaultLog,
    /// How many histories (streams, clients, ...) the checker judged.
    pub histories: usize,
    /// What the checker found.
    pub violations: Vec<Violation>,
}

impl RunReport {
    /// The report of run `name` over `entries`, with what the checker returned.
    pub fn new<O, R>(
        name: &str,
        seed: Seed,
        entries: &[Entry<O, R>],
        faults: FaultLog,
        (violations, histories): (Vec<Violation>, usize),
    ) -> RunReport {
        RunReport {
            name: name.to_owned(),
            seed,
            tally: Tally::of(entries),
            reasons: super::history::top_reasons(entries, 6),
            faults,
            histories,
            violations,
        }
    }

    /// One line: operations, faults, histories, violations, seed.
    pub fn summary(&self) -> String {
        format!(
            "checker {}: {}; {}; {} histories checked; {} violations; {}",
            self.name,
            self.tally,
            self.faults,
            self.histories,
            self.violations.len(),
            self.seed
        )
    }

    /// Prints the summary, and panics with every violation (the first 50) and the seed if the
    /// run found any or a fault could not be healed.
    pub fn assert_clean(&self) {
        eprintln!("{}", self.summary());
        for (count, reason) in &self.reasons {
            eprintln!("  {count:>6} x {reason}");
        }
        let mut problems: Vec<String> = self.violations.iter().map(|v| v.to_string()).collect();
        if let Some(error) = &self.faults.error {
            problems.insert(0, format!("fault not healed: {error}"));
        }
        if problems.is_empty() {
            return;
        }
        let shown = problems.len().min(50);
        panic!(
            "{}\n  {}\n{}(replay: {} cargo test ...)",
            self.summary(),
            problems[..shown].join("\n  "),
            if problems.len() > shown {
                format!("  ... and {} more\n", problems.len() - shown)
            } else {
                String::new()
            },
            self.seed
        );
    }
}
