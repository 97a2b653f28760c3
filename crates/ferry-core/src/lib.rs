//! ferry's domain: directory objects, SIDs, configuration, match rules, the sync plan (the What-If
//! report) and the translation table's export formats.
//!
//! This crate does no I/O: it depends on no database, HTTP or async runtime crate. Everything here is a
//! pure function over values, so it is table-tested and property-tested on its own, and the server,
//! the store and the connectors only move values in and out of it.

pub mod config;
pub mod devices;
pub mod model;
pub mod moves;
pub mod sid;
pub mod state;
pub mod sync;
pub mod wire;

// Each module also at the crate's root, where callers have always found it.
pub use config::{duration, names};
pub use devices::{
    agent, host, preflight, principal_map, privileged, runbook, wave, windows_script,
};
pub use moves::{envmove, usermapping};
pub use sync::{export, matching, overrides, plan, snapshot, transform};

pub use model::{DirObject, ObjectKind};
pub use names::check_name;

/// `1234567` as `1,234,567`: counts in messages people read.
pub fn grouped(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
