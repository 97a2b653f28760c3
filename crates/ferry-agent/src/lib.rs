//! ferry's migration agent. This crate holds the re-permissioning engine
//! ([`repermission`]): POSIX owner, group and ACL translation with a journal and exact undo.

pub mod acl;
pub mod repermission;
