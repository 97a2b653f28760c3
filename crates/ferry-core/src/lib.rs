//! ferry's domain: directory objects, SIDs, configuration, match rules, the sync plan (the What-If
//! report) and the translation table's export formats.
//!
//! This crate does no I/O: it depends on no database, HTTP or async runtime crate. Everything here is a
//! pure function over values, so it is table-tested and property-tested on its own, and the server,
//! the store and the connectors only move values in and out of it.

pub mod agent;
pub mod config;
pub mod duration;
pub mod envmove;
pub mod export;
pub mod matching;
pub mod model;
pub mod names;
pub mod overrides;
pub mod plan;
pub mod principal_map;
pub mod privileged;
pub mod runbook;
pub mod sid;
pub mod snapshot;
pub mod transform;
pub mod usermapping;
pub mod windows_script;

pub use model::{DirObject, ObjectKind};
pub use names::check_name;
