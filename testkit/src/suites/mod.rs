//! Universal suites.
