//! Workstation migration: the agent protocol, runbooks, principal maps and the privileged
//! principals no map may touch, and the Windows script a runbook renders to.

pub mod agent;
pub mod host;
pub mod preflight;
pub mod principal_map;
pub mod privileged;
pub mod runbook;
pub mod wave;
pub mod windows_script;
