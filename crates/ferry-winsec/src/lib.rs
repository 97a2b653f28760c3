//! Windows security in pure Rust, so that everything but the last system call of re-permissioning a
//! Windows device is code that runs and is tested anywhere.
//!
//! - [`sid`]: SIDs in binary and text, and SDDL's two-letter aliases;
//! - [`sd`]: self-relative security descriptors, byte-exact;
//! - [`sddl`]: SDDL text, parsed and printed as Windows does;
//! - [`translate`]: owner, group and every ACE's SID mapped through a table, with a cache keyed
//!   by the descriptor's bytes;
//! - [`icacls`]: the `icacls /save` file format (UTF-16LE, a path line then an SDDL line).

pub mod conditional;
pub mod icacls;
pub mod sd;
pub mod sddl;
pub mod sid;
pub mod translate;

pub use sd::{Ace, AceBody, Acl, SecurityDescriptor};
pub use sid::Sid;
pub use translate::{Mode, SidMap, Translator};
