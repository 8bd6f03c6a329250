//! rill: a Server-Sent Events server for streaming LLM output and live
//! events to browsers.
//!
//! The modules follow the data: producers (HTTP publishes, model
//! [`backend`]s driven by [`generation`]) write into the [`hub`], which
//! appends to the [`store`] and fans each event, encoded once by [`sse`],
//! out to every subscriber; [`http`] exposes it all, and [`durable`] is the
//! Durable Streams protocol's model on the same streams. [`config`] is the one
//! configuration struct; [`server`] wires the pieces; [`cli`] holds the
//! `publish`, `tail` and `generate` client commands.

pub mod auth;
pub mod backend;
pub mod cli;
pub mod config;
pub mod dashboard;
pub mod durable;
pub mod generation;
pub mod http;
pub mod hub;
pub mod ids;
pub mod metrics;
pub mod server;
pub mod sse;
pub mod store;
