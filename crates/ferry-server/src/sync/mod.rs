//! Sync cycles on the server: the engine that runs a cycle (election, one settings snapshot,
//! import, plan, one commit, export) and the scheduler that starts them.

pub mod engine;
pub mod scheduler;
