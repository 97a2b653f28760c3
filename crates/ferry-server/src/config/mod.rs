//! The server's settings (the file plus what the console stored, one snapshot per request or
//! cycle) and the vault that seals the secrets among them.

pub mod settings;
pub mod vault;
