//! Sync cycles on the server: the engine that runs a cycle (election, one settings snapshot,
//! import, plan, one commit, export), the scheduler that starts them, and the task that fills
//! SQLite's search index after them.

pub mod engine;
pub mod scheduler;
pub mod search_index;
