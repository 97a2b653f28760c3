//! Identity sync: snapshots read, objects transformed and matched, the plan (the What-If and the
//! translation table's changes), operators' overrides, and the table's exports.

pub mod export;
pub mod matching;
pub mod overrides;
pub mod plan;
pub mod snapshot;
pub mod transform;
