//! Operations: what an operator watches mailroom through.
//!
//! - [`metrics`]: counters, gauges and latency histograms (Prometheus).
//! - [`health`]: when each mailbox was last checked, and whether that is
//!   recent enough (`/healthz`, and the bridge's watchdog).
//! - [`http`]: the `/metrics` and `/healthz` endpoints (`[ops] listen`).

pub mod health;
pub mod http;
pub mod metrics;
