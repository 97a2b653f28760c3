//! `ferry.toml`: directories, sync profiles and server settings, as typed values.
//!
//! Unknown keys are errors. Errors name the file, the key path (`sync_profile[0].match[1].transforms`)
//! and, where TOML knows it, the line and column. Secrets are held in [`Secret`], whose `Debug` and
//! `Serialize` never show the value; `*_file` keys and `FERRY_…` variables are resolved by the
//! binary (this crate does no I/O), see [`LdapDirectory::bind_password_env`].

pub mod duration;
pub mod names;

use crate::duration::HumanDuration;
use crate::model::{AttrRef, ObjectKind};
use crate::transform::Transform;
use serde::{Deserialize, Serialize, Serializer};
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// A configuration error: where, and what is expected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{file}: {path}{location}: {message}")]
pub struct ConfigError {
    pub file: String,
    /// Key path, e.g. `directory[1].url`; empty for whole-file errors.
    pub path: String,
    /// ` (line L, column C)` when known, else empty.
    pub location: String,
    pub message: String,
}

/// A secret value: redacted in `Debug`, `Display` and serialisation.
#[derive(Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    /// The value itself; call only where it is sent to the system that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

fn default_object_types() -> Vec<ObjectKind> {
    vec![ObjectKind::User, ObjectKind::Group, ObjectKind::Device]
}

fn default_profile_types() -> Vec<ObjectKind> {
    vec![ObjectKind::User, ObjectKind::Group]
}

fn default_page_size() -> u32 {
    1000
}

fn default_full_import_every() -> HumanDuration {
    HumanDuration(Duration::from_secs(86_400))
}

fn default_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

fn yes() -> bool {
    true
}

/// The whole configuration file.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    /// `[[directory]]` entries.
    #[serde(default, rename = "directory")]
    pub directories: Vec<DirectoryConfig>,
    /// `[[sync_profile]]` entries.
    #[serde(default, rename = "sync_profile")]
    pub profiles: Vec<SyncProfile>,
    /// `[[tenant]]` entries: tenants environments move between.
    #[serde(default, rename = "tenant", skip_serializing_if = "Vec::is_empty")]
    pub tenants: Vec<crate::envmove::Tenant>,
    /// `[[environment]]` entries: environments registered at start when not registered yet.
    #[serde(default, rename = "environment", skip_serializing_if = "Vec::is_empty")]
    pub environments: Vec<crate::envmove::Environment>,
    /// `[[runbook]]` entries: runbooks as code, with the API's fields (`ferry runbook`, the
    /// console's form). Put into the store at start; read-only through the API and console.
    #[serde(default, rename = "runbook", skip_serializing_if = "Vec::is_empty")]
    pub runbooks: Vec<crate::runbook::Runbook>,
    /// `[[batch]]` entries: batches as code, with their computers; read-only likewise (a halt
    /// and a resume are still the operators').
    #[serde(default, rename = "batch", skip_serializing_if = "Vec::is_empty")]
    pub batches: Vec<ConfiguredBatch>,
}

/// `[[batch]]`: the API's batch ([`crate::wire::Batch`], the same keys) and its computers.
///
/// ```toml
/// [[batch]]
/// name = "Pilot"
/// source_directory = "contoso"
/// target_directory = "fabrikam"
/// runbooks = ["Pre-Req", "Main"]
/// available_from = "2026-12-01T18:00"   # optional: offered to the user from then
/// enforced_after = "2026-12-08T18:00"   # runs without asking from then
/// time_zone = "Europe/London"           # of the two times (default UTC)
/// canary = "10%"                        # or a number of devices; optional
/// max_failure_rate = 0.05               # share of finished devices that may fail (default 0)
/// max_concurrent = 50                   # optional
/// computers = ["PC-0001", "PC-0002"]    # host names; a computer is in one batch at most
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfiguredBatch {
    pub name: String,
    pub source_directory: String,
    pub target_directory: String,
    pub runbooks: Vec<String>,
    #[serde(default)]
    pub available_from: Option<String>,
    pub enforced_after: String,
    #[serde(default = "utc")]
    pub time_zone: String,
    #[serde(default)]
    pub canary: Option<crate::wire::Canary>,
    #[serde(default)]
    pub max_failure_rate: f64,
    #[serde(default)]
    pub max_concurrent: Option<u32>,
    /// Host names (compared without case).
    #[serde(default)]
    pub computers: Vec<String>,
}

fn utc() -> String {
    "UTC".into()
}

impl ConfiguredBatch {
    /// The batch as the API and the store keep it (its computers are memberships).
    pub fn batch(&self) -> crate::wire::Batch {
        crate::wire::Batch {
            name: self.name.clone(),
            source_directory: self.source_directory.clone(),
            target_directory: self.target_directory.clone(),
            runbooks: self.runbooks.clone(),
            available_from: self.available_from.clone(),
            enforced_after: self.enforced_after.clone(),
            time_zone: self.time_zone.clone(),
            canary: self.canary.clone(),
            max_failure_rate: self.max_failure_rate,
            max_concurrent: self.max_concurrent,
        }
    }
}

/// `[server]`: every key can be overridden on the command line.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address of the API and console, e.g. `127.0.0.1:5000` (the default).
    pub listen: Option<String>,
    /// Directory of the embedded SQLite database and the admin token (default `./ferry-data`).
    pub data_dir: Option<PathBuf>,
    /// `postgres://user:pass@host/db`: use PostgreSQL instead of SQLite.
    pub database_url: Option<Secret>,
    /// A file (relative to this one) to which the server appends each audit line as it is
    /// recorded, as JSON (one object a line, the fields of `GET /api/v1/audit`), for a SIEM, e.g.
    /// `audit_log = "/var/log/ferry/audit.jsonl"`. Created 0600; never truncated or rotated by
    /// ferry (rotate by copy-and-truncate, or move it and restart). Servers sharing a database
    /// each append their own acts.
    pub audit_log: Option<PathBuf>,
    /// `[server.auth]`: sign-in limits and session lifetimes.
    #[serde(default)]
    pub auth: AuthConfig,
    /// `[server.agents]`: how devices enroll, and how much of their history is kept.
    #[serde(default)]
    pub agents: AgentsConfig,
}

/// `[server.agents]`. Every key is optional:
///
/// ```toml
/// [server.agents]
/// approve_new_enrollments = false  # true: every new device waits for `ferry agents approve`
/// log_bytes_per_run = 67108864     # a run's log stops being stored past this (64 MiB)
/// failed_retention = "30d"         # failed communications last seen longer ago are deleted
/// event_retention = "400d"         # run events and logs received longer ago are deleted
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentsConfig {
    /// Hold every enrollment of a device not enrolled yet for an operator (high-assurance
    /// projects). Enrollments that claim an enrolled device are held either way.
    pub approve_new_enrollments: bool,
    /// Bytes of log stored per run (default 64 MiB); chunks past it are refused with 413.
    pub log_bytes_per_run: u64,
    /// Failed communications not seen again for this long are deleted (default 30 days).
    pub failed_retention: HumanDuration,
    /// Run events and log chunks are deleted this long after they arrived (default 400 days).
    pub event_retention: HumanDuration,
}

impl Default for AgentsConfig {
    fn default() -> Self {
        AgentsConfig {
            approve_new_enrollments: false,
            log_bytes_per_run: 64 << 20,
            failed_retention: HumanDuration(Duration::from_secs(30 * 86_400)),
            event_retention: HumanDuration(Duration::from_secs(400 * 86_400)),
        }
    }
}

/// `[server.auth]`: how long a session made by `POST /sessions` lasts and how sign-in guessing is
/// slowed. Every key is optional:
///
/// ```toml
/// [server.auth]
/// session_idle = "30m"      # a session unused this long ends
/// session_lifetime = "12h"  # and any session ends this long after sign-in
/// sign_in_concurrency = 2   # password checks (argon2, ~19 MiB each) running at once, per server
/// lockout_after = 5         # failures of one account before it is locked out
/// address_lockout_after = 20  # failures from one address before it is locked out
/// lockout = "15s"           # the first lockout; each further failure doubles it
/// lockout_max = "15m"       # the longest lockout
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// A session not used for this long ends (default 30 minutes).
    pub session_idle: HumanDuration,
    /// A session ends this long after sign-in, used or not (default 12 hours).
    pub session_lifetime: HumanDuration,
    /// Password verifications running at once on this server (default: the number of cores,
    /// between 2 and 4). A sign-in that waits more than 2 s for one is answered 503.
    pub sign_in_concurrency: Option<usize>,
    /// Failed sign-ins of one operator name (known or not) before it is locked out (default 5).
    pub lockout_after: u32,
    /// Failed sign-ins from one address before it is locked out (default 20).
    pub address_lockout_after: u32,
    /// The first lockout (default 15 s); each further failure doubles it.
    pub lockout: HumanDuration,
    /// The longest lockout (default 15 minutes).
    pub lockout_max: HumanDuration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            session_idle: HumanDuration(Duration::from_secs(30 * 60)),
            session_lifetime: HumanDuration(Duration::from_secs(12 * 3600)),
            sign_in_concurrency: None,
            lockout_after: 5,
            address_lockout_after: 20,
            lockout: HumanDuration(Duration::from_secs(15)),
            lockout_max: HumanDuration(Duration::from_secs(15 * 60)),
        }
    }
}

/// `[[directory]]`: a named source or target, by kind.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
#[allow(clippy::large_enum_variant)] // a handful per configuration; boxing buys nothing
pub enum DirectoryConfig {
    Ldap(LdapDirectory),
    File(FileDirectory),
    Graph(GraphDirectory),
}

impl DirectoryConfig {
    pub fn name(&self) -> &str {
        match self {
            DirectoryConfig::Ldap(d) => &d.name,
            DirectoryConfig::File(d) => &d.name,
            DirectoryConfig::Graph(d) => &d.name,
        }
    }
    pub fn kind(&self) -> &'static str {
        match self {
            DirectoryConfig::Ldap(_) => "ldap",
            DirectoryConfig::File(_) => "file",
            DirectoryConfig::Graph(_) => "graph",
        }
    }
    pub fn object_types(&self) -> &[ObjectKind] {
        match self {
            DirectoryConfig::Ldap(d) => &d.object_types,
            DirectoryConfig::File(d) => &d.object_types,
            DirectoryConfig::Graph(d) => &d.object_types,
        }
    }
}

/// Which Microsoft cloud a Graph directory lives in: decides the sign-in and Graph hosts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cloud {
    #[default]
    Global,
    /// US Government L4 (GCC High).
    Usgov,
    /// US Government L5 (DoD).
    UsgovDod,
    /// Microsoft Azure operated by 21Vianet.
    China,
}

impl Cloud {
    /// The Microsoft Entra sign-in host.
    pub fn login_url(self) -> &'static str {
        match self {
            Cloud::Global => "https://login.microsoftonline.com",
            Cloud::Usgov | Cloud::UsgovDod => "https://login.microsoftonline.us",
            Cloud::China => "https://login.chinacloudapi.cn",
        }
    }
    /// The Microsoft Graph host.
    pub fn graph_url(self) -> &'static str {
        match self {
            Cloud::Global => "https://graph.microsoft.com",
            Cloud::Usgov => "https://graph.microsoft.us",
            Cloud::UsgovDod => "https://dod-graph.microsoft.us",
            Cloud::China => "https://microsoftgraph.chinacloudapi.cn",
        }
    }
}

/// `kind = "graph"`: a Microsoft Entra ID tenant reached through an app registration (client
/// credentials) and Microsoft Graph.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphDirectory {
    pub name: String,
    /// The tenant, as a GUID or a domain (`fabrikam.onmicrosoft.com`).
    pub tenant_id: String,
    /// The app registration's application (client) id.
    pub client_id: String,
    pub client_secret: Option<Secret>,
    /// A file holding the client secret (trailing newline ignored).
    pub client_secret_file: Option<PathBuf>,
    /// PEM certificate registered on the app; with `private_key_file`, signs a PS256 client
    /// assertion instead of sending a secret.
    pub certificate_file: Option<PathBuf>,
    /// PEM private key (PKCS#8 or PKCS#1 RSA) of `certificate_file`.
    pub private_key_file: Option<PathBuf>,
    #[serde(default)]
    pub cloud: Cloud,
    #[serde(default = "default_object_types")]
    pub object_types: Vec<ObjectKind>,
    /// Overrides the cloud's sign-in host (tests point it at a local server).
    pub login_url: Option<String>,
    /// Overrides the cloud's Graph host.
    pub graph_url: Option<String>,
    /// `$top` of list requests (default and maximum 999).
    #[serde(default = "default_graph_page_size")]
    pub page_size: u32,
    /// Attempts per request before a throttled or failing request gives up (default 8).
    #[serde(default = "default_graph_attempts")]
    pub max_attempts: u32,
    /// A full import runs at least this often (default `24h`); between them imports are deltas
    /// from the stored deltaLinks (which see deletions).
    #[serde(default = "default_full_import_every")]
    pub full_import_every: HumanDuration,
    /// Timeout per HTTP request (default `30s`).
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// Domain of user principal names created by exports (default: the domain of the source UPN
    /// after the profile's transforms).
    pub upn_domain: Option<String>,
}

impl GraphDirectory {
    pub fn login_url(&self) -> &str {
        self.login_url
            .as_deref()
            .unwrap_or(self.cloud.login_url())
            .trim_end_matches('/')
    }
    pub fn graph_url(&self) -> &str {
        self.graph_url
            .as_deref()
            .unwrap_or(self.cloud.graph_url())
            .trim_end_matches('/')
    }
    /// The variable that may hold the client secret: `FERRY_DIRECTORY_<NAME>_CLIENT_SECRET`.
    pub fn client_secret_env(&self) -> String {
        format!("FERRY_DIRECTORY_{}_CLIENT_SECRET", env_name(&self.name))
    }
}

fn default_graph_page_size() -> u32 {
    999
}

fn default_graph_attempts() -> u32 {
    8
}

/// A directory name as part of an environment variable: upper-cased, non-alphanumerics as `_`.
fn env_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// Which LDAP server family: decides the default filters and the delta high-water mark.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LdapFlavor {
    /// Ask the server's root DSE (Active Directory announces itself there).
    #[default]
    Auto,
    /// Active Directory: `objectCategory` filters, `uSNChanged` deltas.
    Ad,
    /// OpenLDAP and other RFC 4519 servers: `inetOrgPerson`/`groupOfNames`, `modifyTimestamp` deltas.
    Openldap,
}

/// `kind = "ldap"`: Active Directory or any LDAP v3 server.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapDirectory {
    pub name: String,
    /// `ldap://host:389` or `ldaps://host:636`.
    pub url: String,
    /// DN to bind as; anonymous bind when absent.
    pub bind_dn: Option<String>,
    pub bind_password: Option<Secret>,
    /// A file holding the bind password (trailing newline ignored).
    pub bind_password_file: Option<PathBuf>,
    /// Search base, e.g. `dc=contoso,dc=test`.
    pub base_dn: String,
    #[serde(default = "default_object_types")]
    pub object_types: Vec<ObjectKind>,
    pub user_filter: Option<String>,
    pub group_filter: Option<String>,
    pub device_filter: Option<String>,
    #[serde(default)]
    pub flavor: LdapFlavor,
    /// Simple Paged Results page size (default 1000).
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// A full import runs at least this often (default `24h`); between them imports are deltas.
    /// Deltas cannot see deletions, the full import does.
    #[serde(default = "default_full_import_every")]
    pub full_import_every: HumanDuration,
    /// Network timeout per operation (default `30s`).
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// Where exports create users (default: `base_dn`).
    pub user_container: Option<String>,
    /// Where exports create groups (default: `base_dn`).
    pub group_container: Option<String>,
    /// Object classes of created users (default: `["inetOrgPerson"]`, AD: `["user"]`).
    pub user_object_classes: Option<Vec<String>>,
    /// Object classes of created groups (default: `["groupOfNames"]`, AD: `["group"]`).
    pub group_object_classes: Option<Vec<String>>,
}

impl LdapDirectory {
    /// The variable that may hold the bind password: `FERRY_DIRECTORY_<NAME>_BIND_PASSWORD`, the name
    /// upper-cased with non-alphanumerics as `_`.
    pub fn bind_password_env(&self) -> String {
        format!("FERRY_DIRECTORY_{}_BIND_PASSWORD", env_name(&self.name))
    }
}

/// `kind = "file"`: a snapshot in JSON or CSV (see docs/directories.md for both formats).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDirectory {
    pub name: String,
    /// Path of the snapshot, relative to the configuration file.
    pub path: PathBuf,
    /// `json` or `csv`; by default taken from the file's extension.
    pub format: Option<FileFormat>,
    #[serde(default = "default_object_types")]
    pub object_types: Vec<ObjectKind>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    Json,
    Csv,
}

impl FileDirectory {
    pub fn format(&self) -> FileFormat {
        self.format.unwrap_or_else(|| {
            match self
                .path
                .extension()
                .and_then(|e| e.to_str())
                .map(|e| e.to_ascii_lowercase())
                .as_deref()
            {
                Some("csv") => FileFormat::Csv,
                _ => FileFormat::Json,
            }
        })
    }
}

/// What a profile's export may do to the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SyncMode {
    /// Build the translation table; write nothing to the target.
    MatchOnly,
    /// Also create unmatched users and groups in the target.
    Create,
    /// Also update mapped attributes of matched objects.
    Update,
}

impl SyncMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncMode::MatchOnly => "match-only",
            SyncMode::Create => "create",
            SyncMode::Update => "update",
        }
    }
}

/// `[[sync_profile]]`: source → target with ordered match rules.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncProfile {
    pub name: String,
    pub source: String,
    pub target: String,
    pub mode: SyncMode,
    #[serde(default = "default_profile_types")]
    pub object_types: Vec<ObjectKind>,
    /// Interval between cycle starts, e.g. `15m`; no schedule means on demand only.
    pub schedule: Option<HumanDuration>,
    /// `false` pauses the schedule (on-demand runs still work).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Ordered match rules; when empty, ferry's defaults apply (see [`SyncProfile::effective_rules`]).
    #[serde(default, rename = "match")]
    pub rules: Vec<MatchRule>,
    /// Attribute mappings for `create` and `update`.
    #[serde(default, rename = "attribute")]
    pub attributes: Vec<AttributeMap>,
    /// uids and gids below this are the system's: a match whose translation would name one (or
    /// root, whatever this is, or a privileged SID) is refused and left out of the translation
    /// table. Default 1000.
    #[serde(default = "default_min_id")]
    pub min_id: u32,
    /// Operators' decisions that come before the rules: pins and excludes
    /// (`[[sync_profile.override]]`).
    #[serde(default, rename = "override", skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<Override>,
}

/// `[[sync_profile.override]]`: a source object pinned to a target object, or excluded from the
/// profile. Objects are named by id or by any look-up key that names one object of the
/// directory: UPN, mail, SID, name (case ignored).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Override {
    /// The source object.
    pub source: String,
    /// Pin: the target object it is matched to, whatever the rules say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Exclude: the source object is neither in the table nor warned about as unmatched.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exclude: bool,
    /// Why; shown wherever the decision's rule is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Who made it: `config` for entries of ferry.toml.
    #[serde(default = "config_operator")]
    pub operator: String,
}

fn config_operator() -> String {
    "config".into()
}

impl SyncProfile {
    /// Overrides written into a profile's entry (ferry.toml, or the console's profile document)
    /// are the configuration's: their operator is `config`, so no rule names someone who did
    /// not make it. `Err((index, why))`.
    pub fn configured_overrides(&self) -> Result<(), (usize, String)> {
        match self.overrides.iter().position(|o| o.operator != "config") {
            None => Ok(()),
            Some(j) => Err((
                j,
                format!(
                    "`{}`: overrides of the configuration are made by `config`; leave `operator` out (an operator's own override is entered with `ferry sync pin`, and named after them)",
                    self.overrides[j].operator
                ),
            )),
        }
    }
}

impl Override {
    /// What is wrong with it on its own, as (field, why): an empty source, neither or both of a
    /// target and `exclude`, an empty target, a reason over 500 characters or holding control
    /// characters (it is shown wherever the decision's rule is).
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if self.source.trim().is_empty() {
            return Err(("source", "must not be empty".into()));
        }
        if self.target.is_some() == self.exclude {
            return Err((
                "target",
                "give exactly one of `target` (a pin) or `exclude = true`".into(),
            ));
        }
        if self.target.as_deref().is_some_and(|t| t.trim().is_empty()) {
            return Err(("target", "must not be empty".into()));
        }
        for (field, v) in [
            ("source", Some(&self.source)),
            ("target", self.target.as_ref()),
        ] {
            if v.is_some_and(|v| v.len() > 1024) {
                return Err((
                    field,
                    "is longer than 1024 bytes: name the object by its id".into(),
                ));
            }
        }
        if let Some(r) = &self.reason {
            if r.chars().count() > 500 {
                return Err(("reason", "is longer than 500 characters".into()));
            }
            if let Some(c) = r.chars().find(|&c| crate::names::invisible(c)) {
                return Err((
                    "reason",
                    format!(
                        "must not hold control or invisible characters or line breaks (U+{:04X})",
                        c as u32
                    ),
                ));
            }
        }
        Ok(())
    }

    /// How a decision it made is described (the `rule` of the What-If and the exports).
    pub fn describe(&self) -> String {
        let verb = if self.exclude { "excluded" } else { "pinned" };
        match self
            .reason
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty())
        {
            Some(r) => format!("{verb} by {}: {r}", self.operator),
            None => format!("{verb} by {}", self.operator),
        }
    }
}

fn default_min_id() -> u32 {
    crate::privileged::DEFAULT_MIN_ID
}

/// `[[sync_profile.match]]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchRule {
    pub source_attribute: String,
    pub target_attribute: String,
    /// Applied to the source value before comparing.
    #[serde(default)]
    pub transforms: Vec<Transform>,
    /// Applied to the target value before comparing.
    #[serde(default)]
    pub target_transforms: Vec<Transform>,
    /// Kinds this rule applies to (default: all of the profile's).
    pub object_types: Option<Vec<ObjectKind>>,
    /// Compare exactly; by default comparison ignores case, as AD and Entra do for names and mail.
    #[serde(default)]
    pub case_sensitive: bool,
}

impl MatchRule {
    pub fn applies_to(&self, kind: ObjectKind) -> bool {
        self.object_types.as_ref().is_none_or(|t| t.contains(&kind))
    }

    /// A short human description: `mail → mail (lowercase, replace_suffix)`.
    pub fn describe(&self) -> String {
        let mut s = format!("{} → {}", self.source_attribute, self.target_attribute);
        if !self.transforms.is_empty() {
            let names: Vec<String> = self
                .transforms
                .iter()
                .map(|t| match serde_json::to_value(t) {
                    Ok(serde_json::Value::String(s)) => s,
                    Ok(serde_json::Value::Object(m)) => {
                        m.keys().next().cloned().unwrap_or_default()
                    }
                    _ => String::new(),
                })
                .collect();
            s.push_str(&format!(" ({})", names.join(", ")));
        }
        s
    }
}

/// `[[sync_profile.attribute]]`: how a target attribute is computed for `create` and `update`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributeMap {
    /// Target attribute (directory name or ferry's `name`, `upn`, `mail`, …).
    pub target: String,
    /// Source attribute whose value is copied.
    pub source: Option<String>,
    /// A constant instead of a source attribute.
    pub value: Option<String>,
    #[serde(default)]
    pub transforms: Vec<Transform>,
    pub object_types: Option<Vec<ObjectKind>>,
    /// Whether `update` keeps this attribute in step (default true); `false` sets it on create only.
    #[serde(default = "yes")]
    pub update: bool,
}

impl AttributeMap {
    pub fn applies_to(&self, kind: ObjectKind) -> bool {
        self.object_types.as_ref().is_none_or(|t| t.contains(&kind))
    }
}

impl SyncProfile {
    /// The rules in force: the configured ones, else ferry's defaults — users by UPN then mail,
    /// groups and devices by name — all case-insensitive.
    pub fn effective_rules(&self) -> Vec<MatchRule> {
        if !self.rules.is_empty() {
            return self.rules.clone();
        }
        let rule = |s: &str, kinds: Vec<ObjectKind>| MatchRule {
            source_attribute: s.into(),
            target_attribute: s.into(),
            transforms: vec![],
            target_transforms: vec![],
            object_types: Some(kinds),
            case_sensitive: false,
        };
        vec![
            rule("upn", vec![ObjectKind::User]),
            rule("mail", vec![ObjectKind::User]),
            rule("name", vec![ObjectKind::Group, ObjectKind::Device]),
        ]
    }

    /// The attribute mappings in force: the configured ones, else `name → name` plus, for each match
    /// rule, its source attribute (with its transforms) → its target attribute, so that an object
    /// ferry creates is matched by the same rule on the next cycle.
    pub fn effective_attributes(&self) -> Vec<AttributeMap> {
        if !self.attributes.is_empty() {
            return self.attributes.clone();
        }
        let mut out = vec![AttributeMap {
            target: "name".into(),
            source: Some("name".into()),
            value: None,
            transforms: vec![],
            object_types: None,
            update: true,
        }];
        for r in self.effective_rules() {
            if AttrRef::parse(&r.target_attribute) == AttrRef::Id
                || AttrRef::parse(&r.target_attribute) == AttrRef::Name
            {
                continue;
            }
            if out.iter().any(|a| a.target == r.target_attribute) {
                continue;
            }
            out.push(AttributeMap {
                target: r.target_attribute.clone(),
                source: Some(r.source_attribute.clone()),
                value: None,
                transforms: r.transforms.clone(),
                object_types: r.object_types.clone(),
                update: true,
            });
        }
        out
    }
}

impl Config {
    /// Parses and validates a configuration file's text; `file` names it in errors.
    pub fn parse(src: &str, file: &str) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::parse(src).map_err(|e| toml_error(file, src, "", &e))?;
        let cfg: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            toml_error(file, src, &path, e.inner())
        })?;
        cfg.validate(file).map_err(|mut e| {
            if e.location.is_empty() {
                e.location = entry_location(src, &e.path);
            }
            e
        })?;
        for (i, p) in cfg.profiles.iter().enumerate() {
            p.configured_overrides()
                .map_err(|(j, message)| ConfigError {
                    file: file.into(),
                    path: format!("sync_profile[{i}].override[{j}].operator"),
                    location: String::new(),
                    message,
                })?;
        }
        Ok(cfg)
    }

    pub fn directory(&self, name: &str) -> Option<&DirectoryConfig> {
        self.directories.iter().find(|d| d.name() == name)
    }

    pub fn profile(&self, name: &str) -> Option<&SyncProfile> {
        self.profiles.iter().find(|p| p.name == name)
    }

    /// Checks the whole configuration: names, references between entries, rules; `file` names it in
    /// errors.
    pub fn validate(&self, file: &str) -> Result<(), ConfigError> {
        let err = |path: String, message: String| ConfigError {
            file: file.into(),
            path,
            location: String::new(),
            message,
        };
        let valid_name = |n: &str| {
            crate::names::check_name(n).is_ok()
                && n.len() <= 64
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        };
        // The `key` of entry `i` of `[[table]]` (a `what`): a valid name, and not one an earlier
        // entry has (`twice`).
        let entry_name = |table: &str, i: usize, key: &str, what: &str, name: &str, twice: bool| {
            let path = format!("{table}[{i}].{key}");
            if !valid_name(name) {
                return Err(err(
                    path,
                    format!(
                        "`{name}` is not a valid {key}: use 1–64 letters, digits, `-`, `_` or `.`"
                    ),
                ));
            }
            if twice {
                return Err(err(path, format!("{what} `{name}` is defined twice")));
            }
            Ok(())
        };
        if self.server.audit_log.as_ref().is_some_and(|p| {
            p.as_os_str().is_empty() || p.to_str().is_some_and(|t| t.ends_with('/'))
        }) {
            return Err(err(
                "server.audit_log".into(),
                "must name a file, e.g. \"/var/log/ferry/audit.jsonl\"".into(),
            ));
        }
        let a = &self.server.auth;
        for (key, d) in [
            ("session_idle", a.session_idle),
            ("session_lifetime", a.session_lifetime),
            ("lockout", a.lockout),
            ("lockout_max", a.lockout_max),
        ] {
            if d.0.is_zero() {
                return Err(err(
                    format!("server.auth.{key}"),
                    "must be longer than 0s".into(),
                ));
            }
        }
        if a.sign_in_concurrency == Some(0) {
            return Err(err(
                "server.auth.sign_in_concurrency".into(),
                "must be at least 1".into(),
            ));
        }
        if a.lockout_after == 0 || a.address_lockout_after == 0 {
            return Err(err(
                "server.auth.lockout_after".into(),
                "lockout_after and address_lockout_after must be at least 1".into(),
            ));
        }
        for (i, t) in self.tenants.iter().enumerate() {
            let p = |k: &str| format!("tenant[{i}].{k}");
            let twice = self.tenants[..i].iter().any(|o| o.id == t.id);
            entry_name("tenant", i, "id", "tenant", &t.id, twice)?;
            if let Some(d) = t
                .directories
                .iter()
                .find(|d| !self.directories.iter().any(|x| x.name() == d.as_str()))
            {
                return Err(err(
                    p("directories"),
                    format!("there is no directory `{d}`"),
                ));
            }
        }
        for (i, e) in self.environments.iter().enumerate() {
            let p = |k: &str| format!("environment[{i}].{k}");
            let twice = self.environments[..i].iter().any(|o| o.id == e.id);
            entry_name("environment", i, "id", "environment", &e.id, twice)?;
            if !self.tenants.iter().any(|t| t.id == e.tenant) {
                return Err(err(
                    p("tenant"),
                    format!("there is no [[tenant]] `{}` in this file", e.tenant),
                ));
            }
        }
        for (i, d) in self.directories.iter().enumerate() {
            let p = |k: &str| format!("directory[{i}].{k}");
            let twice = self.directories[..i].iter().any(|o| o.name() == d.name());
            entry_name("directory", i, "name", "directory", d.name(), twice)?;
            if d.object_types().is_empty() {
                return Err(err(
                    p("object_types"),
                    "must name at least one of \"user\", \"group\", \"device\"".into(),
                ));
            }
            if let DirectoryConfig::Ldap(l) = d {
                if !(l.url.starts_with("ldap://")
                    || l.url.starts_with("ldaps://")
                    || l.url.starts_with("ldapi://"))
                {
                    return Err(err(
                        p("url"),
                        format!(
                            "`{}` is not an LDAP URL: expected ldap://host:port or ldaps://host:port",
                            l.url
                        ),
                    ));
                }
                if l.bind_password.is_some() && l.bind_password_file.is_some() {
                    return Err(err(
                        p("bind_password_file"),
                        "give either bind_password or bind_password_file, not both".into(),
                    ));
                }
                if l.page_size == 0 || l.page_size > 100_000 {
                    return Err(err(
                        p("page_size"),
                        format!("{} is out of range: expected 1–100000", l.page_size),
                    ));
                }
            }
            if let DirectoryConfig::Graph(g) = d {
                if g.tenant_id.trim().is_empty() || g.tenant_id.contains(['/', '?', '#', ' ']) {
                    return Err(err(
                        p("tenant_id"),
                        format!(
                            "`{}` is not a tenant: expected a GUID or a domain such as contoso.onmicrosoft.com",
                            g.tenant_id
                        ),
                    ));
                }
                if g.client_id.trim().is_empty() {
                    return Err(err(
                        p("client_id"),
                        "must be the app registration's application (client) id".into(),
                    ));
                }
                let secrets = [g.client_secret.is_some(), g.client_secret_file.is_some()];
                let cert = [g.certificate_file.is_some(), g.private_key_file.is_some()];
                if secrets.iter().filter(|b| **b).count() > 1 {
                    return Err(err(
                        p("client_secret_file"),
                        "give either client_secret or client_secret_file, not both".into(),
                    ));
                }
                if cert[0] != cert[1] {
                    return Err(err(
                        p(if cert[0] {
                            "private_key_file"
                        } else {
                            "certificate_file"
                        }),
                        "certificate_file and private_key_file go together".into(),
                    ));
                }
                if cert[0] && secrets.contains(&true) {
                    return Err(err(
                        p("certificate_file"),
                        "give either a client secret or a certificate, not both".into(),
                    ));
                }
                for (key, url) in [("login_url", &g.login_url), ("graph_url", &g.graph_url)] {
                    if let Some(u) = url
                        && !(u.starts_with("https://") || u.starts_with("http://"))
                    {
                        return Err(err(
                            p(key),
                            format!("`{u}` is not a URL: expected https://host"),
                        ));
                    }
                }
                if g.page_size == 0 || g.page_size > 999 {
                    return Err(err(
                        p("page_size"),
                        format!(
                            "{} is out of range: Microsoft Graph pages hold 1–999 objects",
                            g.page_size
                        ),
                    ));
                }
                if g.max_attempts == 0 || g.max_attempts > 50 {
                    return Err(err(
                        p("max_attempts"),
                        format!("{} is out of range: expected 1–50", g.max_attempts),
                    ));
                }
            }
        }
        for (i, prof) in self.profiles.iter().enumerate() {
            let p = |k: &str| format!("sync_profile[{i}].{k}");
            let twice = self.profiles[..i].iter().any(|o| o.name == prof.name);
            entry_name("sync_profile", i, "name", "sync profile", &prof.name, twice)?;
            let names: Vec<&str> = self.directories.iter().map(|d| d.name()).collect();
            let known = if names.is_empty() {
                "none are defined".to_string()
            } else {
                format!("defined: {}", names.join(", "))
            };
            let src = self.directory(&prof.source).ok_or_else(|| {
                err(
                    p("source"),
                    format!("directory `{}` is not defined ({known})", prof.source),
                )
            })?;
            let tgt = self.directory(&prof.target).ok_or_else(|| {
                err(
                    p("target"),
                    format!("directory `{}` is not defined ({known})", prof.target),
                )
            })?;
            if prof.source == prof.target {
                return Err(err(
                    p("target"),
                    "source and target must be different directories".into(),
                ));
            }
            if prof.object_types.is_empty() {
                return Err(err(
                    p("object_types"),
                    "must name at least one of \"user\", \"group\", \"device\"".into(),
                ));
            }
            for k in &prof.object_types {
                for (side, d) in [("source", src), ("target", tgt)] {
                    if !d.object_types().contains(k) {
                        return Err(err(
                            p("object_types"),
                            format!(
                                "{side} directory `{}` does not import {k}s (its object_types)",
                                d.name()
                            ),
                        ));
                    }
                }
            }
            if let Some(s) = prof.schedule
                && s.0 < Duration::from_secs(5)
            {
                return Err(err(
                    p("schedule"),
                    format!("`{s}` is too short: the shortest schedule is 5s"),
                ));
            }
            for (j, r) in prof.rules.iter().enumerate() {
                if r.source_attribute.trim().is_empty() {
                    return Err(err(
                        format!("sync_profile[{i}].match[{j}].source_attribute"),
                        "must not be empty".into(),
                    ));
                }
                if r.target_attribute.trim().is_empty() {
                    return Err(err(
                        format!("sync_profile[{i}].match[{j}].target_attribute"),
                        "must not be empty".into(),
                    ));
                }
            }
            let mut sources: std::collections::HashMap<String, usize> =
                std::collections::HashMap::new();
            for (j, o) in prof.overrides.iter().enumerate() {
                let at = |k: &str| format!("sync_profile[{i}].override[{j}].{k}");
                o.check().map_err(|(field, why)| err(at(field), why))?;
                if let Some(&k) = sources.get(&o.source.trim().to_ascii_lowercase()) {
                    return Err(err(
                        at("source"),
                        format!("`{}` already has an override (override[{k}])", o.source),
                    ));
                }
                sources.insert(o.source.trim().to_ascii_lowercase(), j);
            }
            for (j, a) in prof.attributes.iter().enumerate() {
                if a.source.is_some() == a.value.is_some() {
                    return Err(err(
                        format!("sync_profile[{i}].attribute[{j}]"),
                        "give exactly one of `source` or `value`".into(),
                    ));
                }
            }
        }
        let mut runbooks = std::collections::HashSet::new();
        for (i, r) in self.runbooks.iter().enumerate() {
            if let Err(e) = crate::names::check_name(&r.name) {
                return Err(err(format!("runbook[{i}].name"), e));
            }
            if !runbooks.insert(r.name.as_str()) {
                return Err(err(
                    format!("runbook[{i}].name"),
                    format!("runbook `{}` is defined twice", r.name),
                ));
            }
        }
        let mut batches = std::collections::HashSet::new();
        let mut computers: std::collections::HashMap<String, &str> =
            std::collections::HashMap::new();
        for (i, b) in self.batches.iter().enumerate() {
            if let Err(e) = crate::names::check_name(&b.name) {
                return Err(err(format!("batch[{i}].name"), e));
            }
            if !batches.insert(b.name.as_str()) {
                return Err(err(
                    format!("batch[{i}].name"),
                    format!("batch `{}` is defined twice", b.name),
                ));
            }
            for (j, c) in b.computers.iter().enumerate() {
                let at = format!("batch[{i}].computers[{j}]");
                if c.trim().is_empty() || c.trim() != c {
                    return Err(err(at, format!("`{c}` is not a host name")));
                }
                if let Some(other) = computers.insert(crate::host::host_key(c), &b.name) {
                    return Err(err(
                        at,
                        format!(
                            "`{c}` is already in batch `{other}`: a computer is in one batch at most"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// A fingerprint of everything that decides a profile's plan: the profile and both directories'
    /// settings (secrets excluded). An approval is for one fingerprint; changing any of it needs a new
    /// approval.
    pub fn profile_fingerprint(&self, profile: &SyncProfile) -> String {
        let mut h = Sha256::new();
        let mut feed = |v: serde_json::Result<String>| h.update(v.unwrap_or_default().as_bytes());
        feed(serde_json::to_string(profile));
        feed(serde_json::to_string(&self.directory(&profile.source)));
        feed(serde_json::to_string(&self.directory(&profile.target)));
        hex(&h.finalize())
    }
}

pub fn hex(b: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(D[(x >> 4) as usize] as char);
        s.push(D[(x & 15) as usize] as char);
    }
    s
}

fn line_col(src: &str, offset: usize) -> String {
    let before = &src[..offset.min(src.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!(" (line {line}, column {col})")
}

/// Where the key `path` (`runbook[1].device_state.join`, `batch[0].computers[2]`) of a
/// `[[runbook]]` or `[[batch]]` entry is written: its line, else its table's header; ` (line L,
/// column C)`, or empty for other paths. Semantic errors are found after parsing, which keeps no
/// positions, so the text is searched.
pub fn entry_location(src: &str, path: &str) -> String {
    let Some((table, rest)) = path.split_once('[') else {
        return String::new();
    };
    if table != "runbook" && table != "batch" {
        return String::new();
    }
    let Some(index) = rest.split(']').next().and_then(|i| i.parse::<usize>().ok()) else {
        return String::new();
    };
    let header = format!("[[{table}]]");
    let Some(start) = src
        .match_indices(&header)
        .map(|(i, _)| i)
        .filter(|&i| i == 0 || src[..i].ends_with('\n'))
        .nth(index)
    else {
        return String::new();
    };
    let body = start + header.len();
    let end = src[body..]
        .match_indices(&header)
        .map(|(i, _)| body + i)
        .find(|&i| src[..i].ends_with('\n'))
        .unwrap_or(src.len());
    // The innermost key named, without its index: `computers` of `computers[2]`.
    let key = path
        .rsplit('.')
        .next()
        .map(|k| k.split('[').next().unwrap_or(k))
        .filter(|_| path.contains('.'));
    let at = key.and_then(|k| {
        let mut offset = body;
        for line in src[body..end].split_inclusive('\n') {
            let t = line.trim_start();
            if t.strip_prefix(k)
                .is_some_and(|r| r.trim_start().starts_with('='))
            {
                return Some(offset + (line.len() - t.len()));
            }
            offset += line.len();
        }
        None
    });
    line_col(src, at.unwrap_or(start))
}

/// `[[directory]]` tables are read through a tagged enum, which keeps no positions inside them; for
/// errors there, find the table's header and the offending key or value in its text.
fn refine_in_array_table(src: &str, path: &str, message: &str) -> Option<usize> {
    let (table, rest) = path.split_once('[')?;
    let index: usize = rest.split(']').next()?.parse().ok()?;
    let header = format!("[[{table}]]");
    let mut starts = src.match_indices(&header).map(|(i, _)| i);
    let start = starts.nth(index)?;
    let end = src[start + header.len()..]
        .find("\n[")
        .map_or(src.len(), |e| start + header.len() + e);
    let token = message.split('`').nth(1)?;
    let section = &src[start..end];
    let at = section
        .find(&format!("{token} "))
        .or_else(|| section.find(&format!("{token}=")))
        .or_else(|| section.find(&format!("\"{token}\"")))?;
    Some(start + at)
}

fn toml_error(file: &str, src: &str, path: &str, e: &toml::de::Error) -> ConfigError {
    let message = e.message().trim().to_string();
    let location = refine_in_array_table(src, path, &message)
        .or_else(|| {
            e.span()
                .filter(|s| s.start > 0 || path.is_empty() || !path.contains('['))
                .map(|s| s.start)
        })
        .map(|o| line_col(src, o))
        .unwrap_or_default();
    ConfigError {
        file: file.into(),
        path: path.into(),
        location,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[[directory]]
name = "contoso"
kind = "ldap"
url = "ldap://127.0.0.1:3891"
bind_dn = "cn=admin,dc=contoso,dc=test"
bind_password = "s3cret"
base_dn = "dc=contoso,dc=test"
object_types = ["user", "group", "device"]

[[directory]]
name = "fabrikam"
kind = "file"
path = "tenant.json"

[[sync_profile]]
name = "users"
source = "contoso"
target = "fabrikam"
mode = "match-only"
object_types = ["user", "group"]
schedule = "15m"
[[sync_profile.match]]
source_attribute = "mail"
target_attribute = "mail"
transforms = ["lowercase", { replace_suffix = ["@contoso.test", "@fabrikam.test"] }]
"#;

    #[test]
    fn the_documented_example_parses() {
        let c = Config::parse(GOOD, "ferry.toml").unwrap();
        assert_eq!(c.directories.len(), 2);
        assert_eq!(c.profiles[0].schedule.unwrap().0, Duration::from_secs(900));
        assert_eq!(c.profiles[0].rules[0].transforms.len(), 2);
        let DirectoryConfig::Ldap(l) = &c.directories[0] else {
            panic!()
        };
        assert_eq!(
            l.bind_password_env(),
            "FERRY_DIRECTORY_CONTOSO_BIND_PASSWORD"
        );
        assert!(
            !format!("{c:?}").contains("s3cret"),
            "Debug must not show secrets"
        );
        assert!(!serde_json::to_string(&c).unwrap().contains("s3cret"));
    }

    /// Would catch: `[server.auth]` keys not read (the documented example), unknown keys in it
    /// accepted, or a zero duration or bound that would disable a limit accepted.
    #[test]
    fn server_auth_keys_parse_and_are_checked() {
        let c = Config::parse(
            "[server.auth]\nsession_idle = \"10m\"\nsession_lifetime = \"8h\"\nsign_in_concurrency = 3\n\
             lockout_after = 4\naddress_lockout_after = 9\nlockout = \"1m\"\nlockout_max = \"1h\"\n",
            "ferry.toml",
        )
        .unwrap();
        let a = &c.server.auth;
        assert_eq!(a.session_idle.0, Duration::from_secs(600));
        assert_eq!(a.session_lifetime.0, Duration::from_secs(8 * 3600));
        assert_eq!(
            (
                a.sign_in_concurrency,
                a.lockout_after,
                a.address_lockout_after
            ),
            (Some(3), 4, 9)
        );
        let d = Config::parse("", "ferry.toml").unwrap().server.auth;
        assert_eq!(d.session_idle.0, Duration::from_secs(1800));
        assert_eq!(d.session_lifetime.0, Duration::from_secs(12 * 3600));
        for bad in [
            "session_idle = \"0s\"",
            "sign_in_concurrency = 0",
            "lockout_after = 0",
            "colour = 1",
        ] {
            let e = Config::parse(&format!("[server.auth]\n{bad}\n"), "ferry.toml").unwrap_err();
            assert!(e.to_string().contains("server.auth"), "{bad}: {e}");
        }
    }

    /// Would catch: `[server] audit_log` not read, or an empty path or a directory accepted
    /// (the server would fail later, or append nowhere).
    #[test]
    fn server_audit_log_is_a_file() {
        let c = Config::parse(
            "[server]\naudit_log = \"/var/log/ferry/audit.jsonl\"\n",
            "ferry.toml",
        )
        .unwrap();
        assert_eq!(
            c.server.audit_log.as_deref(),
            Some(std::path::Path::new("/var/log/ferry/audit.jsonl"))
        );
        assert_eq!(
            Config::parse("", "ferry.toml").unwrap().server.audit_log,
            None
        );
        for bad in ["\"\"", "\"/var/log/ferry/\""] {
            let e =
                Config::parse(&format!("[server]\naudit_log = {bad}\n"), "ferry.toml").unwrap_err();
            assert!(e.to_string().contains("server.audit_log"), "{bad}: {e}");
        }
    }

    #[test]
    fn errors_name_file_path_and_location() {
        let cases: &[(&str, &str, &str)] = &[
            (r#"bogus = 1"#, "unknown field `bogus`", "bogus"),
            (
                "[[directory]]\nname = \"a\"\nkind = \"ldapx\"\n",
                "unknown variant `ldapx`",
                "directory[0].kind",
            ),
            (
                "[[directory]]\nname = \"a\"\nkind = \"file\"\npath = \"x\"\ncolour = 1\n",
                "unknown field `colour`",
                "directory[0]",
            ),
            (
                "[[directory]]\nname = \"a\"\nkind = \"file\"\npath = \"x\"\nobject_types = [\"users\"]\n",
                "unknown variant `users`",
                "directory[0]",
            ),
            (
                "[[directory]]\nname = \"a\"\nkind = \"file\"\n",
                "missing field `path`",
                "directory[0]",
            ),
            ("x = [", "", ""),
        ];
        for (src, msg, path) in cases {
            let e = Config::parse(src, "ferry.toml").unwrap_err();
            assert_eq!(e.file, "ferry.toml");
            assert!(e.message.contains(msg), "{src}: {e}");
            assert_eq!(e.path, *path, "{src}: {e}");
        }
        let e = Config::parse("x = [", "ferry.toml").unwrap_err();
        assert!(e.location.contains("line 1"), "{e}");
        let src = "[[directory]]\nname = \"a\"\nkind = \"file\"\npath = \"x\"\n\n[[directory]]\nname = \"b\"\nkind = \"file\"\npath = \"y\"\ncolour = 1\n";
        let e = Config::parse(src, "ferry.toml").unwrap_err();
        assert_eq!(
            e.to_string(),
            "ferry.toml: directory[1] (line 10, column 1): unknown field `colour`, expected one of `name`, `path`, `format`, `object_types`"
        );
    }

    #[test]
    fn semantic_errors() {
        let bad_source = GOOD.replace("source = \"contoso\"", "source = \"contosoo\"");
        let e = Config::parse(&bad_source, "f.toml").unwrap_err();
        assert_eq!(e.path, "sync_profile[0].source");
        assert!(
            e.message
                .contains("`contosoo` is not defined (defined: contoso, fabrikam)"),
            "{e}"
        );
        let e = Config::parse(
            &GOOD.replace("schedule = \"15m\"", "schedule = \"15\""),
            "f.toml",
        )
        .unwrap_err();
        assert_eq!(e.path, "sync_profile[0].schedule");
        let e = Config::parse(&GOOD.replace("ldap://127", "http://127"), "f.toml").unwrap_err();
        assert_eq!(e.path, "directory[0].url");
        let e = Config::parse(
            &GOOD
                .replace("\"users\"\nsource", "\"contoso\"\nsource")
                .replace("name = \"users\"", "name = \"x\"")
                .replace("name = \"fabrikam\"", "name = \"contoso\""),
            "f.toml",
        )
        .unwrap_err();
        assert!(e.message.contains("defined twice"), "{e}");
        let e = Config::parse(
            &GOOD
                .replace(
                    "object_types = [\"user\", \"group\"]\nschedule",
                    "object_types = [\"device\", \"user\"]\nschedule",
                )
                .replace(
                    "path = \"tenant.json\"",
                    "path = \"tenant.json\"\nobject_types = [\"user\"]",
                ),
            "f.toml",
        )
        .unwrap_err();
        assert!(e.message.contains("does not import devices"), "{e}");
    }

    #[test]
    fn graph_directories_pick_their_cloud_and_check_credentials() {
        let graph = |extra: &str| {
            format!(
                "[[directory]]\nname = \"fab\"\nkind = \"graph\"\ntenant_id = \"fabrikam.onmicrosoft.com\"\nclient_id = \"535fb089-9ff3-47b6-9bfb-4f1264799865\"\n{extra}\n"
            )
        };
        let c = Config::parse(&graph("client_secret = \"s\"\ncloud = \"usgov-dod\""), "f").unwrap();
        let DirectoryConfig::Graph(g) = &c.directories[0] else {
            panic!("not graph")
        };
        assert_eq!(g.login_url(), "https://login.microsoftonline.us");
        assert_eq!(g.graph_url(), "https://dod-graph.microsoft.us");
        assert_eq!(g.page_size, 999);
        assert_eq!(g.client_secret_env(), "FERRY_DIRECTORY_FAB_CLIENT_SECRET");
        assert!(!format!("{g:?}").contains("client_secret: Some(\"s\")"));
        let c = Config::parse(&graph("graph_url = \"http://127.0.0.1:9/\""), "f").unwrap();
        let DirectoryConfig::Graph(g) = &c.directories[0] else {
            panic!("not graph")
        };
        assert_eq!(g.graph_url(), "http://127.0.0.1:9");
        assert_eq!(g.login_url(), "https://login.microsoftonline.com");
        for (extra, path, needle) in [
            ("cloud = \"mars\"", "directory[0]", "unknown variant `mars`"),
            ("page_size = 1000", "directory[0].page_size", "1–999"),
            (
                "client_secret = \"a\"\nclient_secret_file = \"b\"",
                "directory[0].client_secret_file",
                "not both",
            ),
            (
                "certificate_file = \"c.pem\"",
                "directory[0].private_key_file",
                "go together",
            ),
            (
                "client_secret = \"a\"\ncertificate_file = \"c\"\nprivate_key_file = \"k\"",
                "directory[0].certificate_file",
                "not both",
            ),
            (
                "graph_url = \"graph.microsoft.com\"",
                "directory[0].graph_url",
                "not a URL",
            ),
            ("bind_dn = \"x\"", "directory[0]", "unknown field `bind_dn`"),
        ] {
            let e = Config::parse(&graph(extra), "f.toml").unwrap_err();
            assert_eq!(e.path, path, "{extra}: {e}");
            assert!(e.to_string().contains(needle), "{extra}: {e}");
        }
        let e =
            Config::parse(&graph("").replace("fabrikam.onmicrosoft.com", "a/b"), "f").unwrap_err();
        assert!(e.to_string().contains("not a tenant"), "{e}");
    }

    #[test]
    fn fingerprint_changes_with_rules_not_secrets() {
        let a = Config::parse(GOOD, "f").unwrap();
        let b = Config::parse(&GOOD.replace("s3cret", "other"), "f").unwrap();
        let c = Config::parse(
            &GOOD.replace("@fabrikam.test\"]", "@fabrikam.example\"]"),
            "f",
        )
        .unwrap();
        let fp = |c: &Config| c.profile_fingerprint(&c.profiles[0]);
        assert_eq!(fp(&a), fp(&b));
        assert_ne!(fp(&a), fp(&c));
    }

    #[test]
    fn default_attribute_maps_follow_match_rules() {
        let c = Config::parse(GOOD, "f").unwrap();
        let attrs = c.profiles[0].effective_attributes();
        assert_eq!(attrs.len(), 2);
        assert_eq!(attrs[1].target, "mail");
        assert_eq!(attrs[1].transforms.len(), 2);
    }

    const DEVICES: &str = r#"
[[runbook]]
name = "Pre-Req"
source_directories = ["contoso"]
target_directories = ["fabrikam"]

[[runbook]]
name = "Main"
source_directories = ["contoso"]
target_directories = ["fabrikam"]
prerequisites = ["Pre-Req"]
[runbook.permission_updates]
mode = "add"
paths = ["/home"]

[[batch]]
name = "Pilot"
source_directory = "contoso"
target_directory = "fabrikam"
runbooks = ["Pre-Req", "Main"]
enforced_after = "2026-12-08T18:00"
canary = "10%"
max_failure_rate = 0.05
max_concurrent = 50
computers = ["PC-0001", "PC-0002"]
"#;

    #[test]
    fn runbooks_and_batches_parse_with_the_api_fields() {
        let c = Config::parse(&format!("{GOOD}{DEVICES}"), "ferry.toml").unwrap();
        assert_eq!(c.runbooks.len(), 2);
        assert_eq!(c.runbooks[1].prerequisites, ["Pre-Req"]);
        let b = c.batches[0].batch();
        assert_eq!(b.time_zone, "UTC");
        assert_eq!(b.canary, Some(crate::wire::Canary::Share("10%".into())));
        assert_eq!(b.max_concurrent, Some(50));
        assert_eq!(c.batches[0].computers, ["PC-0001", "PC-0002"]);
    }

    #[test]
    fn runbook_and_batch_errors_name_the_key_and_line() {
        let src = format!("{GOOD}{DEVICES}");
        // (text, changed to, the error's path, its message, what its line starts with)
        let cases: &[(&str, &str, &str, &str, &str)] = &[
            (
                "max_concurrent = 50",
                "max_concurrent = 50\ncolour = \"red\"",
                "batch[0].colour",
                "unknown field `colour`",
                "colour",
            ),
            (
                "max_concurrent = 50",
                "max_concurrent = \"lots\"",
                "batch[0].max_concurrent",
                "invalid type",
                "max_concurrent = \"lots\"",
            ),
            (
                "mode = \"add\"",
                "mode = \"add\"\nrecursive = true",
                "runbook[1].permission_updates.recursive",
                "unknown field `recursive`",
                "recursive",
            ),
            (
                "mode = \"add\"",
                "mode = \"merge\"",
                "runbook[1].permission_updates.mode",
                "unknown variant `merge`",
                "mode = \"merge\"",
            ),
            (
                "name = \"Main\"",
                "name = \"Pre-Req\"",
                "runbook[1].name",
                "runbook `Pre-Req` is defined twice",
                "name = \"Pre-Req\"\nsource_directories = [\"contoso\"]\ntarget_directories = [\"fabrikam\"]\nprerequisites",
            ),
            (
                "\"PC-0002\"]",
                "\"PC-0002\", \"pc-0001\"]",
                "batch[0].computers[2]",
                "`pc-0001` is already in batch `Pilot`",
                "computers =",
            ),
        ];
        for (from, to, path, message, at) in cases {
            let changed = src.replacen(from, to, 1);
            let e = Config::parse(&changed, "ferry.toml").unwrap_err();
            assert_eq!(e.path, *path, "{to}: {e}");
            assert!(e.message.contains(message), "{to}: {e}");
            let line = changed[..changed.find(at).unwrap()].matches('\n').count() + 1;
            assert!(
                e.location.starts_with(&format!(" (line {line},")),
                "{to}: {e} (the key is on line {line})"
            );
        }
    }
}
