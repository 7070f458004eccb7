//! Helpers shared by the broker's suites (each test binary uses a part of them).
#![allow(dead_code, unreachable_pub)]

pub mod auth;
pub mod certs;
pub mod log;
pub mod messages;
pub mod node;
