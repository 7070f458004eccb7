//! Helpers shared by the auth and TLS suites (each test binary uses a part of them).
#![allow(dead_code, unreachable_pub)]

pub mod certs;
pub mod node;
