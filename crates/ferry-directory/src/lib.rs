//! Directory connectors: one [`Connector`] trait, one module per kind.
//!
//! A connector imports objects (all of them, or those changed since a watermark), writes a plan's
//! approved writes, and tests its connection with errors phrased for the person who has to fix them.
//! Connectors hold no state between calls; what an import leaves for the next (the watermark) is
//! returned to the caller, which stores it with the cycle.

use async_trait::async_trait;
use ferry_core::ObjectKind;
use ferry_core::config::{DirectoryConfig, Secret};
use ferry_core::model::DirObject;
use ferry_core::plan::{LogEntry, Write};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub mod file;
pub mod graph;
pub mod ldap;
pub mod progress;

/// Why a directory could not be read or written, in words a user acts on.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error(
        "cannot reach {url}: {detail}. Is the server running, and are the host and port right?"
    )]
    Unreachable { url: String, detail: String },
    #[error(
        "{url} rejected the bind as `{bind_dn}`: invalid credentials. Check bind_dn and the password"
    )]
    BadCredentials { url: String, bind_dn: String },
    #[error(
        "the base DN `{base_dn}` does not exist on {url}. Check base_dn (the server's naming contexts are: {contexts})"
    )]
    BadBaseDn {
        url: String,
        base_dn: String,
        contexts: String,
    },
    #[error("{url} did not answer within {seconds}s")]
    Timeout { url: String, seconds: u64 },
    #[error("{url}: {operation} failed: {detail}")]
    Ldap {
        url: String,
        operation: String,
        detail: String,
    },
    #[error("cannot read {path}: {detail}")]
    FileRead { path: PathBuf, detail: String },
    #[error("{path}: {detail}")]
    Snapshot { path: PathBuf, detail: String },
    #[error("cannot write {path}: {detail}")]
    FileWrite { path: PathBuf, detail: String },
    #[error("signing in to tenant `{tenant}` failed: {code}: {detail}")]
    Auth {
        tenant: String,
        code: String,
        detail: String,
    },
    #[error("Microsoft Graph answered {status} {code} to {url}: {message}")]
    Graph {
        url: String,
        status: u16,
        code: String,
        message: String,
    },
    /// A delta token expired or was reset (410 Gone, syncStateNotFound): a full import is needed.
    #[error("the delta token expired or was reset ({url}): a full import is needed")]
    DeltaReset { url: String },
    /// A failure of ferry's own machinery (a thread or runtime that could not start).
    #[error("{0}")]
    Internal(String),
}

/// The outcome of an import.
#[derive(Debug, Default)]
pub struct Imported {
    /// Full import: every object in scope. Delta: only objects changed since the watermark.
    pub objects: Vec<DirObject>,
    pub full: bool,
    /// Where the next delta starts (LDAP: highest modifyTimestamp / uSNChanged seen).
    pub watermark: Option<String>,
    /// Delta only: objects the directory reported deleted (Graph's `@removed`).
    pub removed: Vec<(ObjectKind, String)>,
    pub logs: Vec<LogEntry>,
}

/// The outcome of an export: per-write failures do not stop the others.
#[derive(Debug, Default)]
pub struct ExportReport {
    pub applied: usize,
    /// (source id, error) of writes that failed.
    pub failed: Vec<(String, String)>,
    pub logs: Vec<LogEntry>,
    /// (user principal name, initial password) of users the export created, for the operator
    /// only: never logged.
    pub initial_passwords: Vec<(String, Secret)>,
}

/// What "test connection" found.
#[derive(Debug, Clone, Serialize)]
pub struct TestReport {
    pub ok: bool,
    /// One line per check, in order, e.g. "connected to ldap://…", "bound as …".
    pub checks: Vec<String>,
    /// Objects in scope per kind.
    pub counts: Vec<(ObjectKind, u64)>,
}

#[async_trait]
pub trait Connector: Send + Sync {
    /// Imports objects of `kinds`; with `since`, only those changed after that watermark.
    async fn import(
        &self,
        kinds: &[ObjectKind],
        since: Option<&str>,
    ) -> Result<Imported, DirectoryError>;
    /// Applies writes; `targets` are the directory's objects as last imported (to resolve member ids).
    async fn export(
        &self,
        writes: &[Write],
        targets: &[DirObject],
    ) -> Result<ExportReport, DirectoryError>;
    async fn test(&self) -> Result<TestReport, DirectoryError>;
    /// Whether [`Connector::import`] can do deltas.
    fn supports_delta(&self) -> bool;
}

/// Builds the connector of a configured directory. `base` is the configuration file's folder (file
/// paths are relative to it); `secret` is the resolved bind password, if any.
pub fn connect(cfg: &DirectoryConfig, base: &Path, secret: Option<Secret>) -> Arc<dyn Connector> {
    match cfg {
        DirectoryConfig::File(f) => Arc::new(file::FileConnector::new(f, base)),
        DirectoryConfig::Ldap(l) => Arc::new(ldap::LdapConnector::new(l.clone(), secret)),
        DirectoryConfig::Graph(g) => Arc::new(graph::GraphConnector::new(g.clone(), base, secret)),
    }
}

/// A random (version 4) GUID for objects ferry creates where the directory does not assign ids.
pub fn new_guid() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        // No entropy source: fall back to time-derived bytes (ids only need to be unique).
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        b.copy_from_slice(&t.to_le_bytes());
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = ferry_core::config::hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}
