//! Environment moves between tenants: the request's state machine and the move itself, and the
//! `usermapping.csv` rules.

pub mod envmove;
pub mod usermapping;
