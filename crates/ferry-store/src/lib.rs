//! ferry's persistent state behind one [`Store`] trait, made of one trait per area ([`AuthStore`],
//! [`DeviceStore`], [`ConfigStore`], [`MoveStore`], [`ElectionStore`], [`SyncStore`]) so that a
//! reader sees what each caller may touch. It is implemented once, in SQL, by [`SqlStore`] over a
//! small [`backend::Backend`] adapter, of which there are two, chosen once at start: embedded
//! SQLite ([`sqlite::SqliteStore`], the default, one file under `--data-dir`) and PostgreSQL
//! ([`postgres::PgStore`], `--database-url`, for several servers sharing one database). Only a
//! cycle's bulk write ([`backend::Backend::commit_sync`]) is written per backend, for speed.
//!
//! Methods are use cases, not tables. Writes that belong together are one transaction: a cycle's
//! objects, decisions (the translation table), plan, history and logs are committed by
//! [`Store::commit_sync`] whole or not at all, so a failed or killed cycle leaves the previous table.
//! Servers sharing a database elect through it: [`Store::try_lease`] (one holder per name until it
//! expires) and [`Store::claim_slot`] (one claimant per scheduled slot, by primary key).
//!
//! Migrations are embedded, forward-only and run at open. One conformance suite
//! (`tests/conformance.rs`) runs against both backends.

use async_trait::async_trait;
use ferry_core::ObjectKind;
use ferry_core::model::DirObject;
use ferry_core::plan::{self, DecisionDiff, DecisionKey, Level, LogEntry, Plan, Status, Write};
use rustc_hash::FxHashMap;

pub mod backend;
pub mod backup;
mod migrate;
pub mod pgtls;
pub mod postgres;
mod query;
pub mod search_index;
mod sql;
pub mod sqlite;

/// The plain row types live in `ferry_core::wire`, shared with the API client.
pub use ferry_core::wire::{
    AgentRecord, Approval, AuditEntry, CycleInfo, DecisionRow, DirectoryState, EnrollmentRequest,
    EnrolmentToken, EnvRecord, FailedComm, HistoryRow, OperatorRecord, PlanInfo, Psk, StoredEvent,
    StoredLog, StoredObject, TokenInfo,
};
pub use sql::SqlStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("PostgreSQL: {}", with_causes(.0))]
    Postgres(#[from] tokio_postgres::Error),
    #[error("PostgreSQL connection pool: {0}")]
    Pool(String),
    #[error("cannot open the database: {0}")]
    Open(String),
    #[error(
        "the database schema is version {found}, newer than this ferry knows ({known}); upgrade ferry"
    )]
    SchemaTooNew { found: i64, known: i64 },
    #[error(
        "cycle {0} is no longer running (another server aborted it); its results were not committed"
    )]
    CycleNotRunning(i64),
    #[error("a unique value is taken: {0}")]
    Unique(String),
    #[error("another enrollment of device `{0}` was taken a moment before this one")]
    ClaimChanged(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// An error and its causes (`error performing TLS handshake: invalid peer certificate: UnknownIssuer`).
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !msg.contains(&t) {
            msg = format!("{msg}: {t}");
        }
        src = s.source();
    }
    msg
}

/// A token to store.
#[derive(Clone, Debug)]
pub struct NewEnrolmentToken {
    pub directory: String,
    pub kind: String,
    pub file_name: Option<String>,
    pub package_upn: String,
    /// As stored (the server seals it).
    pub content: Vec<u8>,
    /// The length of the content as uploaded.
    pub size: i64,
    pub sha256: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub uploaded_at: i64,
}

/// An enrollment to hold: the facts and harvest as sent, and the hash of the node key it was
/// given (which works only once approved).
#[derive(Clone, Debug)]
pub struct NewEnrollmentRequest<'a> {
    pub enrollment: Enrollment<'a>,
    pub reason: &'a str,
    pub conflict_agent_id: Option<i64>,
}

/// An enrollment to store: a new agent, or a device enrolling again (new node credential).
#[derive(Clone, Debug)]
pub struct Enrollment<'a> {
    pub facts: &'a ferry_core::agent::DeviceFacts,
    pub profiles: &'a [ferry_core::agent::HarvestedProfile],
    pub node_hash: &'a str,
    pub psk_id: i64,
    pub now: i64,
    pub address: Option<&'a str>,
    /// The node-key hash of the live agent with this device id that the enrollment was decided
    /// against (None: no live agent had it). When it changed in between (two servers enrolling
    /// the device at once), `enroll_agent` fails with [`StoreError::ClaimChanged`].
    pub replaces: Option<&'a str>,
}

/// A check-in, recorded in bulk a moment later (write-behind).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contact {
    pub agent_id: i64,
    pub at: i64,
    pub address: Option<String>,
    pub state: Option<String>,
    pub agent_version: Option<String>,
}

/// An agent's assigned run and steps as stored (both or neither).
pub(crate) fn assigned(
    row: Option<(Option<String>, Option<String>)>,
) -> Result<Option<(String, Vec<String>)>> {
    match row {
        Some((Some(run), steps)) => {
            let steps = match steps {
                Some(s) => serde_json::from_str(&s)
                    .map_err(|e| StoreError::Corrupt(format!("assigned steps: {e}")))?,
                None => Vec::new(),
            };
            Ok(Some((run, steps)))
        }
        _ => Ok(None),
    }
}

/// What became of a log chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogAdd {
    Stored,
    /// A chunk with this start was stored before.
    Resend,
    /// It would take the run's log past the cap; nothing was stored.
    OverCap,
}

/// Named JSON documents kept by the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DocKind {
    Runbook,
    Batch,
    Tenant,
    Environment,
    /// An environment move request, named by its source-side migration id.
    EnvMove,
    /// A directory added in the console (with its credential, which the API never returns).
    Directory,
    /// A sync profile added in the console.
    Profile,
    /// An operator's override (pin or exclude) entered through the API, CLI or console, named
    /// `PROFILE/SOURCE_ID` (profile names hold no `/`).
    Override,
    /// A batch's wave (halted, resumed), named as the batch; kept by the servers.
    Wave,
}

impl DocKind {
    pub fn table(self) -> &'static str {
        match self {
            DocKind::Runbook => "runbooks",
            DocKind::Batch => "batches",
            DocKind::Tenant => "tenants",
            DocKind::Environment => "environments",
            DocKind::EnvMove => "env_moves",
            DocKind::Directory => "console_directories",
            DocKind::Profile => "console_profiles",
            DocKind::Override => "sync_overrides",
            DocKind::Wave => "batch_waves",
        }
    }
}

/// What [`Store::hand_over`] writes.
pub struct HandOver<'a> {
    /// Environment documents (name, body): the environment as the target's, the source's remnant.
    pub environments: &'a [(String, String)],
    /// The move request's document name, the body it was read with, its new body.
    pub move_name: &'a str,
    pub move_read: &'a str,
    pub move_body: &'a str,
    /// Whose records, and source user → target user.
    pub records_env: &'a str,
    pub remap: &'a [(String, String)],
    pub audit: &'a AuditEntry,
    pub now: i64,
}

/// What [`Store::hand_over`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandedOver {
    /// Records whose user references were rewritten.
    pub records: u64,
    /// The id of the audit line it recorded.
    pub audit_id: i64,
}

/// The changes one import makes to a directory's stored objects.
pub struct ObjectChanges<'a> {
    /// New or changed objects with their content hash (computed once, by the caller's comparison).
    pub upserts: Vec<(&'a DirObject, u64)>,
    pub deletes: Vec<(ObjectKind, String)>,
    pub state: DirectoryState,
}

/// Everything a cycle's sync phase commits, in one transaction.
pub struct SyncCommit<'a> {
    pub cycle_id: i64,
    pub now: i64,
    pub objects: Vec<ObjectChanges<'a>>,
    pub plan: &'a Plan,
    pub decisions: &'a DecisionDiff<'a>,
    /// History lines for decisions that changed: (kind, source id, text).
    pub history: Vec<(ObjectKind, String, String)>,
    pub logs: &'a [LogEntry],
}

/// Which decisions to list.
#[derive(Clone, Debug, Default)]
pub struct DecisionQuery {
    pub profile: Option<String>,
    pub status: Option<Status>,
    pub kind: Option<ObjectKind>,
    /// Case-insensitive substring of a name, UPN, mail or SID on either side.
    pub search: Option<String>,
    /// Rows to skip; ignored with `after`. Kept for old callers: a deep `OFFSET` walks every
    /// row it skips.
    pub offset: i64,
    /// 0 means no limit.
    pub limit: i64,
    /// Keyset paging: only decisions after this one in the listing's order: (profile, sort
    /// value, kind, source id), each way reversed by [`Direction::Desc`].
    pub after: Option<DecisionCursor>,
    /// The column sorted on within each profile; [`DecisionSort::Kind`] by default.
    pub sort: DecisionSort,
    pub direction: Direction,
}

/// A list's direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Direction {
    #[default]
    Asc,
    Desc,
}

impl Direction {
    /// `asc` or `desc`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "asc" => Some(Direction::Asc),
            "desc" => Some(Direction::Desc),
            _ => None,
        }
    }

    pub fn is_desc(self) -> bool {
        self == Direction::Desc
    }
}

/// The value of a sorted column in a keyset cursor: the sort value of a page's last row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SortValue {
    Int(i64),
    Text(String),
}

impl SortValue {
    /// The value as JSON (a number or a string).
    pub fn json(&self) -> serde_json::Value {
        match self {
            SortValue::Int(i) => (*i).into(),
            SortValue::Text(t) => t.clone().into(),
        }
    }

    /// A JSON number or string read back.
    pub fn from_json(v: &serde_json::Value) -> Option<Self> {
        match v {
            serde_json::Value::Number(n) => n.as_i64().map(SortValue::Int),
            serde_json::Value::String(s) => Some(SortValue::Text(s.clone())),
            _ => None,
        }
    }
}

/// What decisions are sorted by within each profile. Text is compared by code point (the
/// binary collation, the same on SQLite and PostgreSQL); every order ends with the decision's
/// key (kind, source id), so that equal values keep one order across pages. A missing value
/// sorts as the empty text (no rule: as -1), first.
///
/// Migration 0023's index serves the source names among a status's decisions (the translation
/// table: matched). The other columns ([`DecisionSort::ordered`]) are served by migration 0027's
/// `decisions_order`: on PostgreSQL a view over `decisions` and its indexes; on SQLite a table the
/// search indexer fills after each cycle (an index on `decisions` cost the first sync cycle of a
/// million about 4 s a column), read when it is whole for the profiles listed, and until then the
/// listing sorts every row its filters find.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DecisionSort {
    /// (kind, source id): the primary key.
    #[default]
    Kind,
    Status,
    SourceName,
    TargetName,
    SourceSid,
    TargetSid,
    /// The deciding rule's position in the plan.
    Rule,
}

impl DecisionSort {
    /// The API's name of the column.
    pub fn name(self) -> &'static str {
        match self {
            DecisionSort::Kind => "kind",
            DecisionSort::Status => "status",
            DecisionSort::SourceName => "source_name",
            DecisionSort::TargetName => "target_name",
            DecisionSort::SourceSid => "source_sid",
            DecisionSort::TargetSid => "target_sid",
            DecisionSort::Rule => "rule",
        }
    }

    /// Whether the order is read from migration 0027's `decisions_order`.
    pub fn ordered(self) -> bool {
        matches!(
            self,
            DecisionSort::TargetName
                | DecisionSort::SourceSid
                | DecisionSort::TargetSid
                | DecisionSort::Rule
        )
    }

    /// The sort value of a row (None for [`DecisionSort::Kind`], which the key is): text as
    /// sorted (a missing value empty), the rule's position in decimal (-1 for none).
    pub fn value_of(self, row: &DecisionRow) -> Option<String> {
        let text = |v: &Option<String>| Some(v.clone().unwrap_or_default());
        match self {
            DecisionSort::Kind => None,
            DecisionSort::Status => Some(row.status.as_str().to_string()),
            DecisionSort::SourceName => Some(row.source_name.clone()),
            DecisionSort::TargetName => text(&row.target_name),
            DecisionSort::SourceSid => text(&row.source_sid),
            DecisionSort::TargetSid => text(&row.target_sid),
            DecisionSort::Rule => Some(row.rule.map_or(-1, i64::from).to_string()),
        }
    }
}

/// Where a page of decisions ends: the key of its last row, and its sort value when the list is
/// sorted on another column than the key ([`DecisionSort::value_of`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecisionCursor {
    pub profile: String,
    pub kind: ObjectKind,
    pub source_id: String,
    pub value: Option<String>,
}

impl DecisionCursor {
    /// The cursor after `row` in a list sorted by `sort`.
    pub fn of(row: &DecisionRow, sort: DecisionSort) -> Self {
        DecisionCursor {
            profile: row.profile.clone(),
            kind: row.kind,
            source_id: row.source_id.clone(),
            value: sort.value_of(row),
        }
    }

    /// The cursor as an opaque page token (`after=`): a JSON array of its three parts, and the
    /// sort value fourth when there is one.
    pub fn token(&self) -> String {
        match &self.value {
            None => serde_json::json!([self.profile, self.kind.as_str(), self.source_id]),
            Some(v) => serde_json::json!([self.profile, self.kind.as_str(), self.source_id, v]),
        }
        .to_string()
    }

    /// A page token read back; `None` when it is not one [`DecisionCursor::token`] wrote.
    pub fn parse(token: &str) -> Option<Self> {
        let parts: Vec<String> = serde_json::from_str(token).ok()?;
        let [profile, kind, source_id, rest @ ..] = parts.as_slice() else {
            return None;
        };
        if rest.len() > 1 {
            return None;
        }
        Some(DecisionCursor {
            profile: profile.clone(),
            kind: ObjectKind::parse(kind)?,
            source_id: source_id.clone(),
            value: rest.first().cloned(),
        })
    }
}

/// How a batch names an agent's run: `{prefix}{agent id}{suffix}`.
#[derive(Clone, Copy, Debug)]
pub struct RunName<'a> {
    pub prefix: &'a str,
    pub suffix: &'a str,
}

impl RunName<'_> {
    pub fn of(&self, agent: i64) -> String {
        format!("{}{agent}{}", self.prefix, self.suffix)
    }
}

/// Which audit lines [`ConfigStore::audit_page`] reads.
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    /// Only this tenant's lines (a tenant admin's view).
    pub tenant: Option<String>,
    /// Only lines recorded at or after this time (epoch ms).
    pub since: Option<i64>,
    /// Only lines with a greater id: the last id of the previous page.
    pub after: Option<i64>,
    pub limit: i64,
    /// Only lines of this action (`sync.run`, …).
    pub action: Option<String>,
    /// Only lines of this operator.
    pub actor: Option<String>,
    /// Newest first: `after` then means a smaller id (the page continues back in time).
    pub newest_first: bool,
}

/// Which agents to list: a page by id, optionally narrowed.
#[derive(Clone, Debug, Default)]
pub struct AgentQuery {
    /// Case-insensitive substring of the host name or device id.
    pub search: Option<String>,
    pub state: Option<String>,
    /// Only agents whose computer is in this batch.
    pub batch: Option<String>,
    /// Only agents not heard from since this time (ms).
    pub silent_before: Option<i64>,
    /// Rows to skip; ignored with `after`.
    pub offset: i64,
    /// 0 means no limit.
    pub limit: i64,
    /// Keyset paging: only agents after this id in the list's order (the last id of the
    /// previous page), and after `after_value` when sorted on a column: that row's value.
    pub after: Option<i64>,
    pub after_value: Option<SortValue>,
    pub sort: AgentSort,
    pub direction: Direction,
}

/// What agents are sorted by; each order ends with the id. Host names are compared by their key
/// (`host_key`, the Unicode lower case, written by Rust), by code point, the same on both backends
/// (migration 0025 indexes it with the id; 0023 the others).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AgentSort {
    #[default]
    Id,
    Hostname,
    State,
    LastContact,
}

impl AgentSort {
    /// The API's name of the column.
    pub fn name(self) -> &'static str {
        match self {
            AgentSort::Id => "id",
            AgentSort::Hostname => "hostname",
            AgentSort::State => "state",
            AgentSort::LastContact => "last_contact",
        }
    }

    /// The sort value of an agent (None for the id, which the key is).
    pub fn value_of(self, a: &AgentRecord) -> Option<SortValue> {
        match self {
            AgentSort::Id => None,
            AgentSort::Hostname => Some(SortValue::Text(query::host_key(&a.hostname))),
            AgentSort::State => Some(SortValue::Text(a.state.clone())),
            AgentSort::LastContact => Some(SortValue::Int(a.last_contact)),
        }
    }
}

/// Which refused agent communications to list.
#[derive(Clone, Debug, Default)]
pub struct FailedQuery {
    /// Only refusals with this code.
    pub code: Option<String>,
    pub sort: FailedSort,
    pub direction: Direction,
    /// Keyset paging: the id of the previous page's last row, and its sort value.
    pub after: Option<i64>,
    pub after_value: Option<SortValue>,
    /// 0 means no limit.
    pub limit: i64,
}

/// What refused communications are sorted by, each order ending with the id: when last seen,
/// or the address they came from (none sorts as the empty text; code point order).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FailedSort {
    #[default]
    At,
    Address,
}

impl FailedSort {
    pub fn name(self) -> &'static str {
        match self {
            FailedSort::At => "at",
            FailedSort::Address => "address",
        }
    }

    pub fn value_of(self, f: &FailedComm) -> SortValue {
        match self {
            FailedSort::At => SortValue::Int(f.at),
            FailedSort::Address => SortValue::Text(f.address.clone().unwrap_or_default()),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct LogQuery {
    pub profile: Option<String>,
    pub cycle_id: Option<i64>,
    /// Minimum level: `warning` lists warnings and errors.
    pub min_level: Option<Level>,
    pub object_id: Option<String>,
    /// Only entries with an id below this (paging backwards from the newest).
    pub before_id: Option<i64>,
    pub limit: i64,
    /// Oldest first (by id, the order entries were written in); the page continues after
    /// `after_id` then, and `before_id` is not used.
    pub oldest_first: bool,
    pub after_id: Option<i64>,
}

/// Operators, their tokens, passwords and sign-in throttling.
#[async_trait]
pub trait AuthStore: Send + Sync + 'static {
    /// Creates or replaces the token called `name`.
    async fn put_token(&self, name: &str, hash: &str, role: &str, now: i64) -> Result<()>;
    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenInfo>>;
    /// Creates or replaces an operator's password (an argon2 PHC string) and role.
    async fn put_operator_password(
        &self,
        name: &str,
        role: &str,
        hash: &str,
        now: i64,
    ) -> Result<()>;
    /// An operator's role and password hash.
    async fn operator_password(&self, name: &str) -> Result<Option<(String, String)>>;
    /// Records a token's use (the server calls this at most once a minute per token).
    async fn touch_token(&self, hash: &str, now: i64) -> Result<()>;
    /// Deletes the token called `name`; false when there was none.
    async fn delete_token(&self, name: &str) -> Result<bool>;
    /// Every operator (tokens other than sessions and the install's `admin` token), by name.
    async fn operators(&self) -> Result<Vec<OperatorRecord>>;
    /// Deletes an operator: its token, its session and its password, in one transaction.
    async fn delete_operator(&self, name: &str) -> Result<bool>;
    /// Failed sign-ins recorded under `key` and when the last one was: `(failures, last_at)`.
    async fn sign_in_failures(&self, key: &str) -> Result<Option<(i64, i64)>>;
    /// Counts one more failed sign-in under `key` (atomically); returns the new `(failures, last_at)`.
    async fn add_sign_in_failure(&self, key: &str, now: i64) -> Result<(i64, i64)>;
    /// Forgets the failures under `key` (after a successful sign-in).
    async fn clear_sign_in_failures(&self, key: &str) -> Result<()>;
    /// Forgets failures whose last one was before `before` (keeps the table bounded).
    async fn prune_sign_in_failures(&self, before: i64) -> Result<u64>;
}

/// Devices: enrolment packages, pre-shared keys, enrollments, agents, their runs, events and logs, batches, refused contacts.
#[async_trait]
pub trait DeviceStore: Send + Sync + 'static {
    async fn add_enrolment_token(&self, t: &NewEnrolmentToken) -> Result<EnrolmentToken>;
    /// Newest first; all directories when `directory` is None.
    async fn enrolment_tokens(&self, directory: Option<&str>) -> Result<Vec<EnrolmentToken>>;
    /// A token with its content.
    async fn enrolment_token_content(&self, id: i64) -> Result<Option<(EnrolmentToken, Vec<u8>)>>;
    /// Marks a token revoked; false when there is no such token or it already was.
    async fn revoke_enrolment_token(&self, id: i64, now: i64) -> Result<bool>;
    /// Replaces a token's stored content (sealing one stored before ferry sealed them).
    async fn set_enrolment_token_content(&self, id: i64, content: &[u8]) -> Result<()>;
    /// Stores a pre-shared key's hash under a unique name.
    /// A new pre-shared key; `uses` limits how many enrollments it admits, `device` the host
    /// name it enrolls.
    async fn add_psk(
        &self,
        name: &str,
        hash: &str,
        uses: Option<i64>,
        device: Option<&str>,
        now: i64,
    ) -> Result<Psk>;
    /// Takes one use of a live key in one statement (so two enrollments cannot share a
    /// single-use key); false when it is retired or used up.
    async fn use_psk(&self, id: i64) -> Result<bool>;
    async fn psks(&self) -> Result<Vec<Psk>>;
    async fn psk_by_hash(&self, hash: &str) -> Result<Option<Psk>>;
    /// False when there is no such key or it already was retired.
    async fn retire_psk(&self, name: &str, now: i64) -> Result<bool>;
    /// Enrolls a device (again): its facts, harvest and new node credential, in one transaction.
    async fn enroll_agent(&self, e: &Enrollment<'_>) -> Result<AgentRecord>;
    async fn agent_by_node_hash(&self, hash: &str) -> Result<Option<AgentRecord>>;
    /// Enrolled agents with this device id or host name (ignoring case), each with its node-key
    /// hash, to tell a re-enrollment that proves its key from a conflicting claim.
    async fn agents_claimed(
        &self,
        device_id: &str,
        hostname: &str,
    ) -> Result<Vec<(AgentRecord, String)>>;
    /// Records the run handed to the agent at check-in, with its planned step ids.
    async fn assign_run(&self, agent: i64, run: &str, steps: &[String]) -> Result<()>;
    /// The run last handed to the agent and its step ids.
    async fn assigned_run(&self, agent: i64) -> Result<Option<(String, Vec<String>)>>;
    async fn add_enrollment_request(&self, r: &NewEnrollmentRequest<'_>) -> Result<i64>;
    /// Held enrollments, newest first; `state` narrows them (`pending`).
    async fn enrollment_requests(&self, state: Option<&str>) -> Result<Vec<EnrollmentRequest>>;
    async fn enrollment_request_by_node_hash(
        &self,
        hash: &str,
    ) -> Result<Option<EnrollmentRequest>>;
    /// Decides a pending request in one transaction. Approving enrolls it as `enroll_agent`
    /// would (the agent with its device id takes its node key; agents of other devices with its
    /// host name are marked `replaced` and their keys stop working). None when there is no
    /// pending request with that id.
    async fn decide_enrollment(
        &self,
        id: i64,
        approve: bool,
        by: &str,
        now: i64,
    ) -> Result<Option<(EnrollmentRequest, Option<AgentRecord>)>>;
    async fn agents(&self) -> Result<Vec<AgentRecord>>;
    async fn agent(&self, id: i64) -> Result<Option<AgentRecord>>;
    /// A page of agents, by id.
    async fn agents_page(&self, q: &AgentQuery) -> Result<Vec<AgentRecord>>;
    async fn count_agents(&self, q: &AgentQuery) -> Result<i64>;
    /// How many agents are in each state, among those of `batch` (all agents when None).
    async fn agent_states(&self, batch: Option<&str>) -> Result<Vec<(String, i64)>>;
    /// Records a device's newest pre-flight (JSON of `DevicePreflight`).
    async fn set_agent_preflight(&self, agent: i64, preflight: &str) -> Result<()>;
    /// Records a device's newest post-flight (JSON of `Verification`).
    async fn set_agent_verification(&self, agent: i64, verification: &str) -> Result<()>;
    /// Per state of the agents of `batch`: (state, agents, of them handed the batch's run), by
    /// state. An agent's run of the batch is `run.of(agent id)`; a run of another batch, or of
    /// this batch before it was rescheduled, is not (its state says nothing of this batch). One
    /// pass: a batch's wave and its progress page read their counts from it.
    async fn batch_agent_states(
        &self,
        batch: &str,
        run: &RunName<'_>,
    ) -> Result<Vec<(String, i64, i64)>>;
    /// (host name key, state, agent id) of the live agent of each of `hostnames` (their keys,
    /// `ferry_core::devices::host::host_key`) that
    /// was handed its run `run.of(agent id)` (a batch's canary).
    async fn agent_states_of(
        &self,
        hostnames: &[String],
        run: &RunName<'_>,
    ) -> Result<Vec<(String, String, i64)>>;
    /// The agents of `batch` handed its run whose state is one of `states`, by id.
    async fn batch_agents_in(
        &self,
        batch: &str,
        run: &RunName<'_>,
        states: &[&str],
    ) -> Result<Vec<i64>>;
    /// Records check-ins in one transaction.
    async fn record_contacts(&self, contacts: &[Contact]) -> Result<()>;
    async fn set_agent_profiles(
        &self,
        agent: i64,
        profiles: &[ferry_core::agent::HarvestedProfile],
    ) -> Result<()>;
    async fn agent_profiles(&self, agent: i64) -> Result<Vec<ferry_core::agent::HarvestedProfile>>;
    async fn add_agent_events(
        &self,
        agent: i64,
        run: &str,
        events: &[ferry_core::agent::AgentEvent],
        now: i64,
    ) -> Result<()>;
    /// Oldest first; every run when `run` is None.
    async fn agent_events(&self, agent: i64, run: Option<&str>) -> Result<Vec<StoredEvent>>;
    /// The newest event of each of these agents that reported one.
    async fn latest_events_of(&self, agents: &[i64]) -> Result<Vec<StoredEvent>>;
    /// Stores a log chunk once per (agent, run, start), unless the run's stored log would pass
    /// `cap` bytes (checked and counted in one transaction, so servers sharing the database
    /// keep one count).
    async fn add_agent_log(
        &self,
        agent: i64,
        run: &str,
        start: i64,
        text: &str,
        now: i64,
        cap: i64,
    ) -> Result<LogAdd>;
    /// The run's log chunks joined in order.
    async fn agent_log(&self, agent: i64, run: &str) -> Result<String>;
    /// Adds computers to a batch, all or none: the computers already in another batch are returned
    /// with that batch's name, and nothing is added. Names are kept as given (shown so) and
    /// compared in lower case: `PC-1` and `pc-1` are one computer.
    async fn add_batch_computers(
        &self,
        batch: &str,
        computers: &[String],
        now: i64,
    ) -> Result<Vec<(String, String)>>;
    /// Removes computers (any case) from a batch; how many were in it.
    async fn remove_batch_computers(&self, batch: &str, computers: &[String]) -> Result<u64>;
    /// (computer as it was added, batch, added_at) of every batch.
    async fn batch_computers(&self) -> Result<Vec<(String, String, i64)>>;
    /// Of these host-name keys (`ferry_core::devices::host::host_key`), the ones a live (not
    /// replaced) agent has.
    async fn live_hostnames(&self, hostnames: &[String]) -> Result<Vec<String>>;
    /// (host-name key, state) of every live (not replaced) agent, read from one narrow index
    /// (migration 0030): the console's overview joins them with the batches' computers it holds
    /// (`GET /batches?states=true`), not one scan of the agents per batch.
    async fn live_agent_states(&self) -> Result<Vec<(String, String)>>;
    /// A fingerprint of the runbooks, batches and batch memberships (their counts and newest
    /// change times): another server's change to any of them changes it. Cheap: a server reads
    /// it every few seconds to know when to load them again.
    async fn devices_config_stamp(&self) -> Result<Vec<i64>>;
    /// Records a refusal; one like it (same code, address, agent, device) seen since `window_from`
    /// is counted instead of stored again.
    async fn record_failed_comm(&self, f: &FailedComm, window_from: i64) -> Result<()>;
    /// Deletes failed communications last seen, events received and log chunks received
    /// before these times (None: kept); returns how many rows went.
    async fn prune_agent_history(
        &self,
        failed_before: Option<i64>,
        events_before: Option<i64>,
    ) -> Result<u64>;
    /// Newest first.
    async fn failed_comms(&self, limit: i64) -> Result<Vec<FailedComm>>;
    /// A sorted, filtered page of refused communications.
    async fn failed_comms_page(&self, q: &FailedQuery) -> Result<Vec<FailedComm>>;
    /// How many refused communications a query finds, its page aside.
    async fn count_failed_comms(&self, q: &FailedQuery) -> Result<i64>;
}

/// Named JSON documents (console directories and profiles, overrides, batches, tenants, environments, moves) and the audit trail.
#[async_trait]
pub trait ConfigStore: Send + Sync + 'static {
    /// Inserts or replaces a named document.
    async fn put_document(&self, kind: DocKind, name: &str, body: &str, now: i64) -> Result<()> {
        self.change_documents(kind, &[(name.to_string(), body.to_string())], &[], now)
            .await
    }
    /// Inserts or replaces `puts` (name, body) and deletes `deletes`, in one transaction: all or
    /// nothing.
    async fn change_documents(
        &self,
        kind: DocKind,
        puts: &[(String, String)],
        deletes: &[String],
        now: i64,
    ) -> Result<()>;
    /// Inserts a document unless one of that name exists: false when it does (then
    /// [`swap_document`](Self::swap_document) changes it).
    async fn create_document(
        &self,
        kind: DocKind,
        name: &str,
        body: &str,
        now: i64,
    ) -> Result<bool>;
    /// Replaces a document only if its body is still `old` (compare-and-swap): false when another
    /// writer (another server) changed or removed it since it was read.
    async fn swap_document(
        &self,
        kind: DocKind,
        name: &str,
        old: &str,
        new: &str,
        now: i64,
    ) -> Result<bool>;
    /// (name, body), by name.
    async fn documents(&self, kind: DocKind) -> Result<Vec<(String, String)>>;
    async fn delete_document(&self, kind: DocKind, name: &str) -> Result<bool>;
    /// Records an audit line (its `id` is ignored); returns the id it was given.
    async fn add_audit(&self, e: &AuditEntry) -> Result<i64>;
    /// Newest first; only `tenant`'s lines when given.
    async fn audit(&self, tenant: Option<&str>, limit: i64) -> Result<Vec<AuditEntry>>;
    /// Lines in the order they were recorded (by id), from `after` on, for an export: keyset
    /// paging, so that a trail growing meanwhile is read whole, each line once.
    async fn audit_page(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>>;
    /// How many lines a query finds, its page (`after`, `limit`) aside.
    async fn count_audit(&self, q: &AuditQuery) -> Result<i64>;
}

/// Environment moves: the records of an environment and the hand-over.
#[async_trait]
pub trait MoveStore: Send + Sync + 'static {
    /// Adds or replaces records of `env`, in one transaction.
    async fn put_env_records(&self, env: &str, records: &[EnvRecord]) -> Result<()>;
    async fn env_records(&self, env: &str, offset: i64, limit: i64) -> Result<Vec<EnvRecord>>;
    async fn count_env_records(&self, env: &str) -> Result<i64>;
    /// An environment move's hand-over, in one transaction: the environment documents put, the
    /// move request swapped to its new state (compare-and-swap: `None`, and nothing written, when
    /// it is no longer the body read), every user reference (owner, created by, modified by) of
    /// the records of `records_env` found in `remap` (compared without ASCII case) rewritten, and
    /// the audit line. Returns the records changed and the audit line's id. A server killed at
    /// any point leaves all of it or none.
    async fn hand_over(&self, h: &HandOver<'_>) -> Result<Option<HandedOver>>;
}

/// Servers sharing a database: leases, scheduled slots, recovery of a stopped server, cluster-wide values.
#[async_trait]
pub trait ElectionStore: Send + Sync + 'static {
    /// Takes or renews the lease `name` for `holder` until `now + ttl_ms`; false if another holder's
    /// lease has not expired.
    async fn try_lease(&self, name: &str, holder: &str, now: i64, ttl_ms: i64) -> Result<bool>;
    async fn release_lease(&self, name: &str, holder: &str) -> Result<()>;
    /// At a server's start: releases the leases its previous run held (holders `<server>:…`) and marks
    /// that run's unfinished cycles aborted. Returns how many cycles were aborted.
    async fn recover_server(&self, server: &str, now: i64) -> Result<u64>;
    /// Claims a scheduled slot of a profile; exactly one claimant ever gets true for a slot.
    async fn claim_slot(&self, profile: &str, slot: i64, holder: &str, now: i64) -> Result<bool>;
    /// Sets `key` to `value` unless it is set already, and returns the value it has: the first
    /// server to claim a key wins, every other one reads what it wrote.
    async fn claim_meta(&self, key: &str, value: &str) -> Result<String>;
    /// (the newest migration applied to the database, the newest this build knows): a server is
    /// ready only when the first is at least the second.
    async fn schema_version(&self) -> Result<(i64, i64)>;
}

/// Sync cycles: objects, decisions (the translation table), plans, approvals, history and logs.
#[async_trait]
pub trait SyncStore: Send + Sync + 'static {
    /// Records a new running cycle, marking any earlier `running` cycle of the profile `aborted`
    /// (its server died; the caller holds the profile's lease).
    async fn begin_cycle(
        &self,
        profile: &str,
        trigger: &str,
        slot: Option<i64>,
        server: &str,
        now: i64,
    ) -> Result<i64>;
    async fn set_cycle_phase(&self, id: i64, phase: &str) -> Result<()>;
    /// What a running cycle is doing, in words and figures; cleared when it ends.
    async fn set_cycle_progress(&self, id: i64, progress: &str) -> Result<()>;
    /// Ends a cycle as failed with its error and log entries.
    async fn fail_cycle(
        &self,
        id: i64,
        profile: &str,
        error: &str,
        logs: &[LogEntry],
        now: i64,
    ) -> Result<()>;
    /// Commits a cycle's import and sync in one transaction.
    async fn commit_sync(&self, c: SyncCommit<'_>) -> Result<()>;
    /// Ends a cycle as succeeded, with what its export did and its log entries.
    async fn finish_cycle(
        &self,
        id: i64,
        profile: &str,
        export: &str,
        logs: &[LogEntry],
        now: i64,
    ) -> Result<()>;
    async fn cycle(&self, id: i64) -> Result<Option<CycleInfo>>;
    async fn cycles(&self, profile: Option<&str>, limit: i64) -> Result<Vec<CycleInfo>>;
    /// `(kind, id) → content hash` of every stored object of a directory.
    async fn object_digest(&self, directory: &str) -> Result<FxHashMap<(ObjectKind, String), u64>>;
    async fn load_objects(&self, directory: &str) -> Result<Vec<DirObject>>;
    /// The objects of `kind` in `directory` whose id is one of `ids` (by the unique key), in id
    /// order; ids not stored are left out. Up to 500 ids a call.
    async fn objects_by_id(
        &self,
        directory: &str,
        kind: ObjectKind,
        ids: &[&str],
    ) -> Result<Vec<DirObject>>;
    async fn directory_state(&self, directory: &str) -> Result<Option<DirectoryState>>;
    /// Objects whose id, name, UPN, mail or SID equals `query` (case-insensitively).
    async fn find_objects(&self, query: &str, limit: i64) -> Result<Vec<StoredObject>>;
    /// The objects the single object report shows for `query`. On SQLite, once its search index
    /// is whole (migration 0024), the objects of the translation table's decisions one of whose
    /// values (id, name, UPN, mail or SID, either side) equals `query`, read by primary key: a few
    /// milliseconds at a million entries. When that finds none (an object in no decision, such as
    /// an unmatched target, or a directory in no profile) or the index is not whole, it is
    /// [`find_objects`](Self::find_objects), which scans the objects' look-up keys on SQLite. An
    /// object of the same name as one found through a decision, itself in no decision, is then
    /// not listed. On PostgreSQL it is `find_objects` (indexed).
    /// The objects, and whether every stored object was looked at (false: only those of the
    /// decisions, through the index; `find_objects` answers for every object).
    async fn report_objects(&self, query: &str, limit: i64) -> Result<(Vec<StoredObject>, bool)>;
    /// Whether `directory` holds any object of `kind` (has computers been synced from it?).
    async fn has_objects(&self, directory: &str, kind: ObjectKind) -> Result<bool>;
    /// The computers of `directory` named any of `names`, ignoring case (what an agent's host
    /// name may stand for; indexed, unlike [`find_objects`](Self::find_objects) on SQLite).
    async fn devices_named(&self, directory: &str, names: &[&str]) -> Result<Vec<DirObject>>;
    /// `(kind, source id) → (row hash, status)` of a profile's stored decisions.
    async fn decision_digest(&self, profile: &str)
    -> Result<FxHashMap<DecisionKey, (u64, Status)>>;
    async fn decisions(&self, q: &DecisionQuery) -> Result<Vec<DecisionRow>>;
    async fn count_decisions(&self, q: &DecisionQuery) -> Result<i64>;
    /// [`count_decisions`](Self::count_decisions) that stops at `cap` (returns `cap` when there
    /// are that many or more): a search's total without reading every match of a common term.
    async fn count_decisions_upto(&self, q: &DecisionQuery, cap: i64) -> Result<i64>;
    /// One chunk of SQLite's search index filled outside the cycle (migration 0024; one short
    /// write transaction): whether more work may remain. Always `false` on PostgreSQL, whose
    /// index the database keeps in step. Run by the server's indexer task after cycles.
    async fn index_search(&self) -> Result<bool>;
    /// Decisions where the object is the source or the target.
    async fn decisions_for_object(&self, kind: ObjectKind, id: &str) -> Result<Vec<DecisionRow>>;
    async fn plan(&self, profile: &str) -> Result<Option<PlanInfo>>;
    /// The profiles that have a plan (configured or not any more), by name.
    async fn plan_profiles(&self) -> Result<Vec<String>>;
    async fn plan_writes(&self, profile: &str, offset: i64, limit: i64) -> Result<Vec<Write>>;
    /// Up to `limit` writes of a profile's plan after the one numbered `after` (none: from the
    /// first), in plan order, each with its number: keyset pages over the plan's primary key
    /// (the What-If export reads every write so, never by `OFFSET`).
    async fn plan_writes_after(
        &self,
        profile: &str,
        after: Option<i64>,
        limit: i64,
    ) -> Result<Vec<(i64, Write)>>;
    async fn approve(&self, profile: &str, plan_hash: &str, by: &str, now: i64) -> Result<()>;
    async fn approval(&self, profile: &str) -> Result<Option<Approval>>;
    async fn history(&self, kind: ObjectKind, source_id: &str) -> Result<Vec<HistoryRow>>;
    async fn append_logs(
        &self,
        cycle_id: Option<i64>,
        profile: Option<&str>,
        logs: &[LogEntry],
        now: i64,
    ) -> Result<()>;
    async fn logs(&self, q: &LogQuery) -> Result<Vec<StoredLog>>;
    /// How many log lines a query finds in all, whatever its page (`before_id`, `limit`).
    async fn count_logs(&self, q: &LogQuery) -> Result<i64>;
}

/// The whole store: every area, as the server holds it (`Arc<dyn Store>`).
pub trait Store:
    AuthStore + DeviceStore + ConfigStore + MoveStore + ElectionStore + SyncStore
{
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;
}

/// The area traits, for calling store methods: `use ferry_store::prelude::*`.
pub mod prelude {
    pub use crate::{
        AuthStore, ConfigStore, DeviceStore, ElectionStore, MoveStore, Store, SyncStore,
    };
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Opens the store a server is configured for: PostgreSQL when a URL is given, else SQLite in `data_dir`.
pub async fn open(
    database_url: Option<&str>,
    data_dir: &std::path::Path,
) -> Result<std::sync::Arc<dyn Store>> {
    Ok(match database_url {
        Some(url) => std::sync::Arc::new(postgres::PgStore::connect(url).await?),
        None => std::sync::Arc::new(sqlite::SqliteStore::open(&data_dir.join("ferry.db"))?),
    })
}

/// Shared helpers for encoding rows.
pub(crate) mod codec {
    use super::*;

    pub fn kind(s: &str) -> Result<ObjectKind> {
        ObjectKind::parse(s)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown object kind `{s}`")))
    }
    pub fn status(s: &str) -> Result<Status> {
        Status::parse(s)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown decision status `{s}`")))
    }
    pub fn level(s: &str) -> Result<Level> {
        Level::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown log level `{s}`")))
    }
    pub fn json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T> {
        serde_json::from_str(s).map_err(|e| StoreError::Corrupt(e.to_string()))
    }
    pub fn opt_json<T: serde::de::DeserializeOwned + Default>(s: Option<String>) -> Result<T> {
        match s {
            None => Ok(T::default()),
            Some(s) if s.is_empty() => Ok(T::default()),
            Some(s) => json(&s),
        }
    }
    pub fn members(o: &DirObject) -> Option<String> {
        if o.members.is_empty() {
            None
        } else {
            serde_json::to_string(&o.members).ok()
        }
    }
    pub fn attrs(o: &DirObject) -> Option<String> {
        if o.attrs.is_empty() {
            None
        } else {
            serde_json::to_string(&o.attrs).ok()
        }
    }
    /// The `%term%` pattern for a case-insensitive substring search, with LIKE's wildcards escaped.
    pub fn like_pattern(term: &str) -> String {
        like_pattern_as_typed(&term.to_lowercase())
    }
    /// [`like_pattern`] of the term as it is, for SQL that folds the pattern itself.
    pub fn like_pattern_as_typed(term: &str) -> String {
        let mut s = String::with_capacity(term.len() + 2);
        s.push('%');
        for c in term.chars() {
            if matches!(c, '%' | '_' | '\\') {
                s.push('\\');
            }
            s.push(c);
        }
        s.push('%');
        s
    }
    pub fn candidates(v: &[&str]) -> Option<String> {
        if v.is_empty() {
            None
        } else {
            serde_json::to_string(v).ok()
        }
    }
}
