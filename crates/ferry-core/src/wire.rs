//! The API's wire types: the bodies the admin API answers and takes, shared by the server that
//! writes them and the client (`ferry-client`) that reads them, so that there is one shape. Plain
//! values only: the store re-exports its row types from here.

use crate::ObjectKind;
use crate::agent::{Assignment, HarvestedProfile, ProfileTranslation};
use crate::envmove::State as MoveState;
use crate::export::TranslationEntry;
use crate::model::DirObject;
use crate::plan::{Counts, LogEntry, Status, Write};
use crate::state::{AgentState, CyclePhase, CycleStatus, UnknownState};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

// ---- Store rows (re-exported by ferry-store) ----

/// A bearer token's record (the token itself is never stored, only its SHA-256).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    pub name: String,
    pub role: String,
    pub created_at: i64,
    /// When it was last used, as recorded (coalesced by the server); none: not since it was made.
    #[serde(default)]
    pub last_used_at: Option<i64>,
}

/// An operator as listed: its API token's record and whether it may sign in with a password.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorRecord {
    pub name: String,
    pub role: String,
    pub created_at: i64,
    pub has_password: bool,
    /// Whether a session made by signing in exists (it may have expired).
    pub has_session: bool,
}

/// A stored bulk enrolment token (its content is read separately, by whom it is for).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrolmentToken {
    pub id: i64,
    /// The target Entra directory devices join with it.
    pub directory: String,
    /// `ppkg` (a provisioning package from Windows Configuration Designer) or `bprt` (the bulk
    /// token itself, or a reference to where it is kept).
    pub kind: String,
    pub file_name: Option<String>,
    /// The `package_{GUID}@…` account Windows Configuration Designer created; deleting it in the
    /// tenant revokes the token.
    pub package_upn: String,
    pub sha256: String,
    pub size: i64,
    /// When the token was made, and when it expires (at most 180 days later), in ms.
    pub created_at: i64,
    pub expires_at: i64,
    pub uploaded_at: i64,
    pub revoked_at: Option<i64>,
}

/// A pre-shared key agents enroll with (only its SHA-256 is stored).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Psk {
    pub id: i64,
    pub name: String,
    pub created_at: i64,
    /// A retired key enrolls no new agents; agents enrolled with it keep working.
    pub retired_at: Option<i64>,
    /// Enrollments it may still admit (None: unlimited); a used-up key enrolls no one.
    #[serde(default)]
    pub uses_left: Option<i64>,
    /// The one host name it enrolls (None: any).
    #[serde(default)]
    pub device: Option<String>,
}

/// An enrollment held for an operator: it claimed the device id or host name of an enrolled
/// agent without proving that agent's node key, or the project approves new enrollments.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollmentRequest {
    pub id: i64,
    pub device_id: String,
    pub hostname: String,
    pub facts: crate::agent::DeviceFacts,
    pub psk_id: i64,
    pub address: Option<String>,
    /// Why it is held (`claims the device id of agent 7 (PC-0001)`).
    pub reason: String,
    /// The enrolled agent it conflicts with.
    pub conflict_agent_id: Option<i64>,
    /// `pending`, `approved` or `refused`.
    pub state: String,
    pub created_at: i64,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
}

/// An enrolled agent.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRecord {
    pub id: i64,
    pub device_id: String,
    pub hostname: String,
    pub os: String,
    pub facts: crate::agent::DeviceFacts,
    pub psk_id: i64,
    pub enrolled_at: i64,
    pub last_contact: i64,
    pub last_address: Option<String>,
    pub agent_version: String,
    pub state: String,
    /// The run the server last handed this agent (events and logs are taken for it only).
    #[serde(default)]
    pub assigned_run: Option<String>,
    /// The device's newest pre-flight, with the server's clock check.
    #[serde(default)]
    pub preflight: Option<crate::agent::DevicePreflight>,
    /// What the device proved after its last run or rollback (post-flight): the run's evidence.
    #[serde(default)]
    pub verification: Option<crate::agent::Verification>,
}

/// A run's event as stored.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub agent_id: i64,
    pub run: String,
    pub received_at: i64,
    #[serde(flatten)]
    pub event: crate::agent::AgentEvent,
}

/// A refused or failed agent call, for the failed communications report.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedComm {
    pub id: i64,
    pub at: i64,
    pub address: Option<String>,
    /// `bad_psk`, `retired_psk`, `unauthorized`, `forbidden`, `protocol_mismatch`, `rate_limited`, …
    pub code: String,
    pub reason: String,
    pub agent_id: Option<i64>,
    pub device_id: Option<String>,
    /// How often it was seen (repeats within an hour are counted, not stored again).
    #[serde(default = "one")]
    pub count: i64,
    /// When it was first seen (`at` is the last time).
    #[serde(default)]
    pub first_at: i64,
}

fn one() -> i64 {
    1
}

/// A record of an environment, with the users it refers to (e-mail/UPN).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvRecord {
    pub id: String,
    pub owner: String,
    pub created_by: String,
    pub modified_by: String,
}

/// One line of the audit trail: who did what, when, for which tenant.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: i64,
    /// The operator (token name).
    pub actor: String,
    pub tenant: Option<String>,
    /// `env.move.submit`, `env.move.approve`, …
    pub action: String,
    /// What the action was on (an environment or migration id).
    pub subject: String,
    pub detail: String,
    /// The operator's address: the client IP of the connection the act came on (none for the
    /// server's own acts, and for lines recorded before addresses were kept).
    #[serde(default)]
    pub address: Option<String>,
    /// The id of the request that made the act (`x-request-id`), to find it in the server's log.
    #[serde(default)]
    pub request_id: Option<String>,
}

/// A cycle as listed and reported.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CycleInfo {
    pub id: i64,
    pub profile: String,
    /// `manual` or `schedule`.
    pub trigger: String,
    pub slot: Option<i64>,
    pub server: String,
    /// `running`, `succeeded`, `failed`, `aborted`.
    pub status: String,
    /// `import`, `sync`, `export`, `done`.
    pub phase: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub counts: Option<Counts>,
    pub plan_hash: Option<String>,
    /// What the export did: `not needed`, `awaiting approval`, `exported N writes, M failed`.
    pub export: Option<String>,
    pub error: Option<String>,
    /// While it runs: what it is doing, in words and figures ("read 120,000 source and 98,000
    /// target objects"); none once it ended.
    #[serde(default)]
    pub progress: Option<String>,
}

/// What an import left behind for the next one.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryState {
    pub directory: String,
    /// LDAP: the highest `modifyTimestamp`/`uSNChanged` seen; the next delta starts there.
    pub watermark: Option<String>,
    pub last_full_import: Option<i64>,
    pub last_import: i64,
    pub objects: i64,
}

/// The current What-If of a profile.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanInfo {
    pub profile: String,
    pub cycle_id: i64,
    pub hash: String,
    pub fingerprint: String,
    pub mode: String,
    pub rules: Vec<String>,
    pub counts: Counts,
    pub created_at: i64,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub profile: String,
    pub plan_hash: String,
    pub approved_by: String,
    pub approved_at: i64,
}

/// One stored decision, with the identities on both sides.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionRow {
    pub profile: String,
    pub kind: ObjectKind,
    pub source_id: String,
    pub status: Status,
    /// Position of the deciding rule in the plan's rule list.
    pub rule: Option<u32>,
    /// The deciding rule described (`mail → mail (replace_suffix)`, `pinned by OP: REASON`), in
    /// the What-If's answers.
    #[serde(default)]
    pub rule_name: Option<String>,
    pub source_name: String,
    pub source_upn: Option<String>,
    pub source_mail: Option<String>,
    pub source_sid: Option<String>,
    pub source_uid: Option<u32>,
    pub source_gid: Option<u32>,
    pub target_id: Option<String>,
    pub target_name: Option<String>,
    pub target_upn: Option<String>,
    pub target_mail: Option<String>,
    pub target_sid: Option<String>,
    pub target_uid: Option<u32>,
    pub target_gid: Option<u32>,
    /// Ambiguous: candidate target ids; conflict: the other source ids.
    pub candidates: Vec<String>,
    pub first_cycle: i64,
    pub changed_cycle: i64,
}

impl DecisionRow {
    /// The translation-table view of a matched decision, with the rule described.
    pub fn to_entry(&self, rules: &[String]) -> Option<TranslationEntry> {
        if self.status != Status::Matched {
            return None;
        }
        Some(TranslationEntry {
            profile: self.profile.clone(),
            kind: self.kind,
            source_id: self.source_id.clone(),
            target_id: self.target_id.clone().unwrap_or_default(),
            source_name: self.source_name.clone(),
            target_name: self.target_name.clone().unwrap_or_default(),
            source_upn: self.source_upn.clone(),
            target_upn: self.target_upn.clone(),
            source_mail: self.source_mail.clone(),
            target_mail: self.target_mail.clone(),
            source_sid: self.source_sid.clone(),
            target_sid: self.target_sid.clone(),
            source_uid: self.source_uid,
            target_uid: self.target_uid,
            source_gid: self.source_gid,
            target_gid: self.target_gid,
            rule: self.rule.and_then(|r| rules.get(r as usize).cloned()),
            source_device_id: None,
            target_device_id: None,
        })
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredLog {
    pub id: i64,
    pub at: i64,
    pub cycle_id: Option<i64>,
    pub profile: Option<String>,
    #[serde(flatten)]
    pub entry: LogEntry,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRow {
    pub profile: String,
    pub cycle_id: i64,
    pub at: i64,
    pub change: String,
}

/// A directory object found by the single object report.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredObject {
    pub directory: String,
    pub object: DirObject,
}

// ---- Errors ----

/// The body of every error answer.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    pub status: u16,
    /// The request's id, as the `x-request-id` answer header and the server's log lines give it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

// ---- Directories ----

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DirectoryInfo {
    pub name: String,
    /// `ldap` or `file`.
    pub kind: String,
    pub object_types: Vec<ObjectKind>,
    /// Where it is: the LDAP URL and base DN, or the snapshot path.
    pub location: String,
    /// The last import, if any.
    pub state: Option<DirectoryState>,
    /// `file` (ferry.toml; change it there) or `console` (added in the console; editable).
    pub origin: String,
    /// The entry's keys as in ferry.toml, without its credential.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub settings: serde_json::Value,
    /// Whether a bind password or client secret is set (it is never shown).
    pub has_credential: bool,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindCount {
    pub kind: ObjectKind,
    pub count: u64,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestResult {
    pub directory: String,
    pub ok: bool,
    /// What was checked, in order; on failure the last line says what is wrong.
    pub checks: Vec<String>,
    pub counts: Vec<KindCount>,
}

// ---- Bulk enrolment tokens ----

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadBody {
    /// `ppkg` (provisioning package) or `bprt` (the bulk token itself).
    pub kind: String,
    pub file_name: Option<String>,
    /// The `package_{GUID}@…` account Windows Configuration Designer created.
    pub package_upn: String,
    /// When the token was made: `YYYY-MM-DD` or RFC 3339 (default: now).
    pub created: Option<String>,
    /// When it expires (at most 180 days after `created`): `YYYY-MM-DD` or RFC 3339.
    pub expires: String,
    /// The file's bytes, base64.
    pub content_base64: String,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenView {
    #[serde(flatten)]
    pub token: EnrolmentToken,
    /// `valid`, `expiring` (within 30 days), `expired` or `revoked`.
    pub status: String,
    pub expires: String,
    pub warning: Option<String>,
}

// ---- Sync profiles, cycles, the What-If ----

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProfileInfo {
    pub name: String,
    pub source: String,
    pub target: String,
    /// `match-only`, `create` or `update`.
    pub mode: String,
    pub object_types: Vec<ObjectKind>,
    /// Interval between scheduled cycles, e.g. `15m`; none: on demand only.
    pub schedule: Option<String>,
    pub enabled: bool,
    /// The match rules in force, in order.
    pub rules: Vec<String>,
    pub last_cycle: Option<CycleInfo>,
    /// Whether the current What-If has writes that wait for an approval.
    pub awaiting_approval: bool,
    /// `file` (ferry.toml; change it there) or `console` (added in the console; editable).
    pub origin: String,
    /// The entry as in ferry.toml (`match` rules, `attribute` mappings, `schedule`, …).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub settings: serde_json::Value,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Started {
    pub cycle_id: i64,
    /// The cycle's record when `wait` was asked for.
    pub cycle: Option<CycleInfo>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WhatIf {
    pub plan: PlanInfo,
    pub approval: Option<Approval>,
    /// The plan has writes, and they are not approved.
    pub needs_approval: bool,
    /// The next cycle will export (the plan's exact writes are approved).
    pub approved: bool,
    pub decisions_total: i64,
    /// False when `total_upto` was asked and more decisions match: `decisions_total` is then
    /// that many, a lower bound.
    #[serde(default = "yes")]
    pub decisions_total_exact: bool,
    pub decisions: Vec<DecisionRow>,
    /// The `after` of the next page of decisions (keyset paging); absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decisions_next: Option<String>,
    pub writes_total: u64,
    pub writes: Vec<Write>,
    /// The `writes_after` of the next page of writes (keyset paging by the write's number in the
    /// plan); absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writes_next: Option<i64>,
    /// The candidates of this page's ambiguous and conflicting decisions, with the attribute
    /// that tied them (by `source_id` of the decision).
    #[serde(default)]
    pub candidates: Vec<Candidate>,
}

/// An object an ambiguous decision could match (a target), or a source in conflict with the
/// decision's source over one target, with the value that tied it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    /// The decision's source object.
    pub source_id: String,
    /// `target` (an ambiguous decision's candidate) or `source` (a conflicting source).
    pub side: String,
    pub directory: String,
    pub kind: ObjectKind,
    pub id: String,
    /// Absent when the object is no longer in the directory's stored objects.
    pub name: Option<String>,
    pub upn: Option<String>,
    pub mail: Option<String>,
    pub sid: Option<String>,
    /// The rule that tied the candidates, described.
    pub rule: Option<String>,
    /// The attribute the rule compares on this side (`mail`), and its values on this object.
    pub attribute: Option<String>,
    pub values: Vec<String>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApproveBody {
    /// The plan hash the operator reviewed; refused if the What-If has changed since.
    pub plan_hash: Option<String>,
}

// ---- Overrides ----

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverrideRequest {
    /// The source object: its id, or a UPN, mail, SID or name that names one object.
    pub source: String,
    /// Pin: the target object (id or look-up key) the source is matched to.
    #[serde(default)]
    pub target: Option<String>,
    /// Exclude the source object from the profile.
    #[serde(default)]
    pub exclude: bool,
    #[serde(default)]
    pub reason: Option<String>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverrideView {
    /// The source object's id (as the configuration names it, for `config` overrides).
    pub source: String,
    pub source_name: Option<String>,
    pub target: Option<String>,
    pub target_name: Option<String>,
    pub exclude: bool,
    pub reason: Option<String>,
    /// Who made it (`config` for entries of the configuration).
    pub operator: String,
    /// `config` (ferry.toml or the console profile's entry; change it there) or `operator`
    /// (entered through the API, CLI or console; `unpin` removes it).
    pub origin: String,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportResult {
    pub pins: u64,
    pub excludes: u64,
    /// Overrides of sources that had one already (replaced).
    pub replaced: u64,
}

// ---- The translation table ----

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TranslationPage {
    /// Every entry the query finds, on all pages (with `total_upto`, at most that many).
    pub total: i64,
    /// False when `total_upto` was asked and more entries match: `total` is then a lower bound.
    #[serde(default = "yes")]
    pub total_exact: bool,
    pub offset: i64,
    pub entries: Vec<TranslationEntry>,
    /// The `after` of the next page (keyset paging); absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

// ---- The single object report ----

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileView {
    pub profile: String,
    /// `source` or `target`: the object's side in this profile.
    pub side: String,
    pub decision: DecisionRow,
    /// The rule that decided it, described.
    pub rule: Option<String>,
    /// The object on the other side: the target a source is matched to, or the source that maps
    /// to a target.
    pub counterpart: Option<StoredObject>,
    /// Both sides' identity attributes, side by side: name, UPN, mail, SID, uid/gid, then every
    /// attribute a match rule of the profile compares for this kind (the target side empty when
    /// there is no counterpart).
    pub identity: Vec<IdentityRow>,
    /// When the cycle that first decided the object ran (`decision.first_cycle`).
    #[serde(default)]
    pub first_at: Option<i64>,
    /// When the cycle that made the current decision ran (`decision.changed_cycle`).
    #[serde(default)]
    pub decided_at: Option<i64>,
    /// An ambiguous decision's candidate targets, or a conflict's other sources.
    #[serde(default)]
    pub candidates: Vec<Candidate>,
}

/// One attribute on both sides (`source → target` when a rule compares two different ones).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityRow {
    pub attribute: String,
    pub source: Vec<String>,
    pub target: Vec<String>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectReport {
    pub directory: String,
    pub object: DirObject,
    pub profiles: Vec<ProfileView>,
    /// Its decisions from the cycle that first made each (a line for that cycle), then how they
    /// changed, oldest first.
    pub history: Vec<HistoryRow>,
    /// The newest message log entries about it.
    pub logs: Vec<StoredLog>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectReports {
    pub query: String,
    pub objects: Vec<ObjectReport>,
    /// Whether every stored object was looked at. False when the answer came through the
    /// translation table's decisions (SQLite's search index: milliseconds at a million): an
    /// object in no decision with the same value (an unmatched target with the same mail) is then
    /// not listed; ask again with `every=true` to look at every object.
    #[serde(default = "yes")]
    pub every_object: bool,
}

fn yes() -> bool {
    true
}

// ---- Devices: keys, agents, runbooks, batches ----

/// A batch: computers, the runbooks they run, and when (the seed's "Create a Batch").
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    pub name: String,
    pub source_directory: String,
    pub target_directory: String,
    /// Runbook names; prerequisites must be in the list too.
    pub runbooks: Vec<String>,
    /// Local date and time (`2026-12-01T18:00`) in `time_zone` from which the user is offered
    /// the migration.
    #[serde(default)]
    pub available_from: Option<String>,
    /// Local date and time from which the migration runs without asking.
    pub enforced_after: String,
    /// IANA time zone of the two times (default UTC).
    #[serde(default = "utc")]
    pub time_zone: String,
    /// Computers that must finish well before the rest start: a number of devices (`5`) or a
    /// share of the batch (`"10%"`), the first ones by name. A canary device's failure halts the
    /// batch whatever `max_failure_rate` says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<Canary>,
    /// The share of finished devices (0 to 1) that may fail before the batch halts itself;
    /// 0, the default: the first failed device halts it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_failure_rate: f64,
    /// At most this many devices migrating at once (none: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<u32>,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

/// A batch's canary: a number of devices, or a share of the batch as `"10%"`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Canary {
    Devices(u32),
    Share(String),
}

/// A batch's wave, as the servers keep it: whether it halted itself, and what an operator
/// accepted when resuming it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaveState {
    /// Set when the batch halted itself: it starts no new device until resumed.
    #[serde(default)]
    pub halted: Option<Halt>,
    /// Failed devices an operator accepted by resuming: the halt rule counts failures beyond.
    #[serde(default)]
    pub accepted_failures: u64,
    #[serde(default)]
    pub accepted_canary_failures: u64,
    /// The agents whose failures were accepted (by id): only their failures are not new.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accepted: Vec<i64>,
    /// The last resume.
    #[serde(default)]
    pub resumed: Option<Resumed>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Halt {
    /// When (ms since the epoch).
    pub at: i64,
    /// Why, in words (which rule, how many devices).
    pub reason: String,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resumed {
    pub at: i64,
    /// The operator who resumed it.
    pub by: String,
    /// The halt it ended.
    pub halt: String,
}

/// A batch's wave as its page shows it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaveView {
    #[serde(flatten)]
    pub state: WaveState,
    /// The canary's computers (lower case), first by name.
    pub canary: Vec<String>,
    /// Canary devices finished well, and failed.
    pub canary_succeeded: u64,
    pub canary_failed: u64,
    pub running: u64,
    pub succeeded: u64,
    pub failed: u64,
}

fn utc() -> String {
    "UTC".into()
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPsk {
    /// A label, e.g. `wave-1`.
    pub name: String,
    /// How many enrollments it admits (none: unlimited); `1` for a single-use key.
    #[serde(default)]
    pub uses: Option<i64>,
    /// The one host name it enrolls (none: any). A key bound to a host name is the operator's
    /// approval of that device's first enrollment when new enrollments wait for approval.
    #[serde(default)]
    pub device: Option<String>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedPsk {
    #[serde(flatten)]
    pub psk: Psk,
    /// The key itself: shown this once (the server keeps its SHA-256). Install agents with it.
    pub key: String,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecidedRequest {
    pub request: EnrollmentRequest,
    /// The agent it enrolled (approved).
    pub agent: Option<AgentRecord>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentEndpointInfo {
    /// Where agents call (none when this server does not serve the agent endpoint).
    pub url: Option<String>,
    /// SHA-256 of the endpoint's certificate, lower-case hex: give it to agents to pin.
    pub certificate_sha256: Option<String>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentView {
    #[serde(flatten)]
    pub agent: AgentRecord,
    pub batch: Option<String>,
    /// The last reported step of the newest run, and its progress.
    pub last_step: Option<String>,
    pub progress: Option<u8>,
    /// No contact for longer than three poll intervals.
    pub silent: bool,
    /// Why the device's claims do not match its batch's source directory: it names another
    /// object than the directory's computer of its host name (its migration is held back until
    /// they agree), or the directory has no computer of its host name (flagged only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mismatch: Option<String>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentDetail {
    #[serde(flatten)]
    pub agent: AgentRecord,
    pub profiles: Vec<HarvestedProfile>,
    pub events: Vec<StoredEvent>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedReport {
    /// Refused or failed calls, newest first: enrollment with a bad or retired key, bad node
    /// keys, agents on the admin API, requests for another device's data, rate limits.
    pub failures: Vec<FailedComm>,
    /// How many refused calls the filters (`code`) find in all, every page.
    #[serde(default)]
    pub failures_total: i64,
    /// On a full page of `failures`: the `after=` of the next one.
    #[serde(default)]
    pub failures_next: Option<String>,
    /// Agents that stopped calling.
    pub silent: Vec<AgentRecord>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchView {
    #[serde(flatten)]
    pub batch: Batch,
    /// Its computers as they were added, unless the list asked for counts only.
    pub computers: Vec<String>,
    pub computer_count: usize,
    /// Notes on the last change (prerequisites added, late additions).
    pub warnings: Vec<String>,
    /// `file` (a `[[batch]]` of ferry.toml: change it there; its halt and resume stay
    /// operators') or `console` (made through the API or console).
    pub origin: String,
    /// With `GET /batches?states=true`: its computers per agent state (`no agent yet` for
    /// those no live agent has enrolled from), every batch's in one pass over the agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub states: Option<HashMap<String, usize>>,
    /// With `states=true`: Available From in ms since the epoch (none: not set or not valid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_at: Option<i64>,
    /// With `states=true`: Enforced After in ms since the epoch (none: not a valid time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforced_at: Option<i64>,
    /// With `states=true`: whether the batch halted itself and waits for an operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub halted: Option<bool>,
}

/// A runbook as listed, with where it is defined.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunbookView {
    #[serde(flatten)]
    pub runbook: crate::runbook::Runbook,
    /// `file` (a `[[runbook]]` of ferry.toml: change it there) or `console`.
    pub origin: String,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComputerChange {
    #[serde(default)]
    pub add: Vec<String>,
    #[serde(default)]
    pub remove: Vec<String>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceWhatIf {
    pub computer: String,
    /// The enrolled agent, if the computer has one yet.
    pub agent_id: Option<i64>,
    /// Profiles that will be re-permissioned, source → target.
    pub remap: Vec<ProfileTranslation>,
    /// Profiles with no translation entry: they will not be re-permissioned (do not migrate
    /// these users' device before they are translated).
    pub no_target: Vec<String>,
    pub steps: Vec<String>,
    pub warnings: Vec<String>,
    /// Ready to start: its newest pre-flight (the device's checks, its clock) and the server's
    /// check of its profiles' translations pass; none until the device reported one.
    pub ready: Option<bool>,
    /// That pre-flight, with the server's `profiles` check.
    pub preflight: Option<crate::agent::DevicePreflight>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchWhatIf {
    pub batch: String,
    pub assignment: Option<Assignment>,
    pub devices: Vec<DeviceWhatIf>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchProgress {
    pub batch: String,
    pub computers: usize,
    /// The wave: halted or not, the canary and how its devices stand.
    pub wave: WaveView,
    /// Per state (`no agent yet`, `enrolled`, `running`, `succeeded`, `failed`, …): how many.
    pub states: HashMap<String, usize>,
    /// A page of the batch's agents (see `sort`, `after` and `limit`).
    pub agents: Vec<AgentView>,
    /// On a full page of `agents`: the `after=` of the next one.
    #[serde(default)]
    pub agents_next: Option<String>,
    /// The batch's computers no live agent has enrolled from yet, as they were added, in order
    /// of name: the first `limit` (their number is `states["no agent yet"]`).
    #[serde(default)]
    pub no_agent: Vec<String>,
    /// When the user is first offered the migration (ms since the epoch; none: at Enforced After).
    #[serde(default)]
    pub available_from: Option<i64>,
    /// When the migration runs without asking (ms since the epoch; none: the batch's time is
    /// not valid).
    #[serde(default)]
    pub enforced_after: Option<i64>,
    /// The IANA time zone the batch's times were set in.
    #[serde(default)]
    pub time_zone: String,
}

// ---- Operators, tenants, environments and their moves ----

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewOperator {
    pub name: String,
    /// Admin of this tenant; none: a ferry admin.
    #[serde(default)]
    pub tenant: Option<String>,
    /// Sees everything a ferry admin sees and changes nothing (not with `tenant`).
    #[serde(default)]
    pub viewer: bool,
    /// To sign in with (`POST /sessions`); at least 12 characters. Stored as an argon2 hash.
    #[serde(default)]
    pub password: Option<String>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedOperator {
    pub name: String,
    pub role: String,
    /// Shown this once; the server keeps its SHA-256.
    pub token: String,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    pub name: String,
    pub password: String,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub name: String,
    pub role: String,
    /// A bearer token for this operator; signing in again, or out, ends the previous one.
    pub token: String,
}

/// Who the caller is.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Me {
    pub name: String,
    /// `admin`, `tenant-admin` or `viewer`.
    pub role: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordsAdded {
    pub added: usize,
    pub total: i64,
}

/// A move as one side sees it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveView {
    /// This side's migration id.
    pub migration_id: String,
    /// `source`, `target`, or `admin` (a ferry admin sees both ids).
    pub side: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub other_migration_id: Option<String>,
    pub environment: String,
    pub source_tenant: String,
    pub target_tenant: String,
    pub state: MoveState,
    /// The status line of the last operation, as Microsoft's GetStatus prints it.
    pub status: String,
    pub submitted_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validated_at: Option<i64>,
    pub warnings: Vec<String>,
    pub mapped_users: usize,
    /// While a validation runs: what it is doing ("validated 40,000 of 100,000 users").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Submit {
    pub target_tenant: String,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Uploaded {
    pub migration_id: String,
    pub users: usize,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    pub code: u16,
    pub description: String,
}

/// A move request's status line (not a decision's status: that is `Status`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveStatus {
    pub migration_id: String,
    pub state: MoveState,
    pub status: String,
    /// While a validation runs: what it is doing ("validated 40,000 of 100,000 users").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
}

/// A view of a finished move: the post-move checklist.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Migrated {
    #[serde(flatten)]
    pub view: MoveView,
    pub checklist: Vec<String>,
    pub migrated_users: usize,
    /// Users not migrated: those the mapping file does not name, and application users it names
    /// (they cannot be mapped).
    pub left_out_users: usize,
    pub not_in_mapping: usize,
    pub application_users_in_mapping: usize,
    pub records_remapped: u64,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rotate {
    /// The new password (at least 12 characters); none: one is generated and returned once. Only
    /// for an operator who signs in with a password, or to give one that did not.
    #[serde(default)]
    pub password: Option<String>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rotated {
    pub name: String,
    pub role: String,
    /// The new API token, shown this once; the previous one no longer works.
    pub token: String,
    /// The generated password, shown this once (none when it was given or the operator has none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

// ---- Typed states of rows that keep them as text ----

impl CycleInfo {
    pub fn status(&self) -> Result<CycleStatus, UnknownState> {
        self.status.parse()
    }
    pub fn phase(&self) -> Result<CyclePhase, UnknownState> {
        self.phase.parse()
    }
}

impl AgentRecord {
    pub fn state(&self) -> Result<AgentState, UnknownState> {
        self.state.parse()
    }
}
