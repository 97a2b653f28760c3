//! ferry's migration agent: [`daemon`] enrolls with the server over pinned TLS ([`client`]),
//! checks in, harvests profiles ([`harvest`]) and runs due migrations as a durable state machine
//! ([`run`], kept in the state directory of [`state`]); [`repermission`] is the re-permissioning
//! engine: POSIX owner, group and ACL translation with a journal and exact undo.

pub mod acl;
pub mod client;
pub mod daemon;
pub mod fsat;
pub mod harvest;
pub mod postflight;
pub mod preflight;
pub mod repermission;
pub mod run;
pub mod state;
