//! Environment moves between tenants (the Power Platform tenant-to-tenant workflow): which
//! environments may move, the request's life with its two seven-day limits, the status lines
//! Microsoft prints, and the per-user validation of a `usermapping.csv` with Microsoft's codes.
//! Pure: time comes in as milliseconds since the epoch, lookups as functions.

use crate::usermapping::Row;
use rustc_hash::{FxHashMap, FxHashSet};

/// Seven days, the life of an unanswered request and of a successful validation.
pub const SEVEN_DAYS_MS: i64 = 7 * 24 * 3600 * 1000;

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EnvironmentType {
    Production,
    Sandbox,
    Default,
    Developer,
    Trial,
    Teams,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cloud {
    Public,
    Gcc,
}

/// What decides whether an environment may be submitted for a move.
#[derive(Clone, Debug)]
pub struct MoveFacts<'a> {
    pub environment_type: EnvironmentType,
    pub cloud: Cloud,
    pub target_cloud: Cloud,
    pub has_dataverse: bool,
    pub linked_to_finance_and_operations: bool,
    /// Kinds of the environment's components (`canvas-app`, `flow`, `bot`, …).
    pub component_kinds: &'a [&'a str],
}

/// Components the move does not carry: the seed's list, by kind and name.
pub const UNSUPPORTED_COMPONENTS: &[(&str, &str)] = &[
    ("customer-voice", "Dynamics 365 Customer Voice"),
    ("omnichannel", "Omnichannel for Customer Service"),
    ("component-library", "component library"),
    (
        "customer-insights-journeys",
        "Dynamics 365 Customer Insights - Journeys",
    ),
    (
        "customer-insights-data",
        "Dynamics 365 Customer Insights - Data",
    ),
];

/// Why an environment cannot be submitted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("only production and sandbox environments can move between tenants; this one is {0}")]
    Type(&'static str),
    #[error("an environment cannot move between the public cloud and GCC")]
    Cloud,
    #[error(
        "tenant-to-tenant moves support sandbox and production environments with Dataverse; this one has no Dataverse organisation (org_id)"
    )]
    NoDataverse,
    #[error(
        "a Dataverse organisation linked to finance and operations cannot move between tenants"
    )]
    FinanceAndOperations,
}

/// Whether the environment may be submitted; if so, the unsupported components to report.
pub fn check_submit(f: &MoveFacts<'_>) -> Result<Vec<String>, Refusal> {
    match f.environment_type {
        EnvironmentType::Production | EnvironmentType::Sandbox => {}
        t => {
            return Err(Refusal::Type(match t {
                EnvironmentType::Default => "default",
                EnvironmentType::Developer => "developer",
                EnvironmentType::Trial => "trial",
                _ => "teams",
            }));
        }
    }
    if !f.has_dataverse {
        return Err(Refusal::NoDataverse);
    }
    if f.cloud != f.target_cloud {
        return Err(Refusal::Cloud);
    }
    if f.linked_to_finance_and_operations {
        return Err(Refusal::FinanceAndOperations);
    }
    Ok(f.component_kinds
        .iter()
        .filter_map(|k| {
            UNSUPPORTED_COMPONENTS
                .iter()
                .find(|(u, _)| u == k)
                .map(|(u, name)| {
                    format!("{u}: {name} isn't supported by a tenant-to-tenant migration")
                })
        })
        .collect())
}

/// A tenant ferry moves environments between.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tenant {
    /// The tenant id (a GUID in Entra ID; any stable name in ferry).
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub domains: Vec<String>,
    /// ferry's directories of this tenant (their names in the configuration): where its users are.
    #[serde(default)]
    pub directories: Vec<String>,
    #[serde(default = "public")]
    pub cloud: Cloud,
}

fn public() -> Cloud {
    Cloud::Public
}

/// One component of an environment.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Component {
    /// `canvas-app`, `flow`, `bot`, `website`, `custom-connector`, `connection`, `gateway`, or one of
    /// [`UNSUPPORTED_COMPONENTS`].
    pub kind: String,
    pub name: String,
    /// Canvas apps: inside a solution.
    #[serde(default)]
    pub solution_aware: bool,
    /// Flows: on or off.
    #[serde(default)]
    pub enabled: bool,
    /// Flows: the connection references they use.
    #[serde(default)]
    pub connection_references: Vec<String>,
    /// Flows with an HTTP trigger: its URL (regenerated by the move).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_trigger_url: Option<String>,
}

/// An environment registered for a tenant.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    pub id: String,
    pub tenant: String,
    pub name: String,
    pub url: String,
    /// The Dataverse organisation's id; none: no Dataverse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_id: Option<String>,
    #[serde(rename = "type")]
    pub environment_type: EnvironmentType,
    #[serde(default = "public")]
    pub cloud: Cloud,
    #[serde(default)]
    pub components: Vec<Component>,
    #[serde(default)]
    pub linked_to_finance_and_operations: bool,
    #[serde(default)]
    pub managed: bool,
    #[serde(default)]
    pub administration_mode: bool,
    #[serde(default)]
    pub system_users: Vec<SystemUser>,
}

impl Environment {
    /// The facts [`check_submit`] needs, for a move to a tenant in `target_cloud`.
    pub fn facts<'a>(&self, target_cloud: Cloud, kinds: &'a [&'a str]) -> MoveFacts<'a> {
        MoveFacts {
            environment_type: self.environment_type,
            cloud: self.cloud,
            target_cloud,
            has_dataverse: self.org_id.is_some(),
            linked_to_finance_and_operations: self.linked_to_finance_and_operations,
            component_kinds: kinds,
        }
    }
}

/// A move request as ferry keeps it. Each side knows it by its own migration id.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Move {
    pub source_migration_id: String,
    pub target_migration_id: String,
    pub environment: String,
    pub source_tenant: String,
    pub target_tenant: String,
    pub request: Request,
    /// Unsupported components reported at submission.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// The uploaded usermapping.csv.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mapping: Option<String>,
    /// The error file of the last failed validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<String>,
    /// Users the last validation mapped (source system user id → target UPN).
    #[serde(default)]
    pub mapped_users: usize,
    /// After the move: what to do next (the seed's post-move steps, for this environment).
    #[serde(default)]
    pub checklist: Vec<String>,
    /// Why the last migration attempt was rolled back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The server running the hand-over while `migrating` (its `server-id`): a server that
    /// restarts rolls back the moves it was handing over when it stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migrating_on: Option<String>,
    /// While a validation runs: what it is doing, in words and figures ("validated 40,000 of
    /// 100,000 users"); none once it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
}

/// The outcome of moving an environment: what the target and the source now hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Moved {
    pub target: Environment,
    /// The environment the source tenant keeps: same name, no Dataverse.
    pub source_remnant: Environment,
    pub checklist: Vec<String>,
    /// Users migrated (mapped), users left out (the next two together).
    pub migrated_users: usize,
    pub left_out_users: usize,
    /// Users left out because the mapping file does not name them.
    pub not_in_mapping: usize,
    /// Application users the mapping file names: they cannot be mapped
    /// (`ApplicationUserCannotBeMapped`), so they are left out although they are in the file.
    pub application_users_in_mapping: usize,
    /// Source e-mail → target UPN of each migrated user: what records' references become.
    pub remap: Vec<(String, String)>,
}

/// Moves `env` to `target_tenant`: system users remapped through `mapping` (source e-mail or
/// SystemUserId → target UPN; users not in it are not migrated), flows turned off with new HTTP
/// trigger URLs, Managed Environment off. `has_mailbox` says whether a target user has one;
/// `new_url` makes a fresh HTTP trigger URL.
pub fn move_environment(
    env: &Environment,
    target_tenant: &str,
    remnant_id: &str,
    mapping: &[Row<'_>],
    has_mailbox: impl Fn(&str) -> bool,
    mut new_url: impl FnMut(&Component) -> String,
) -> Moved {
    let org = OrgIndex::new(&env.system_users);
    let mut to: FxHashMap<&str, &str> = FxHashMap::default();
    let mut applications: FxHashSet<&str> = FxHashSet::default();
    for r in mapping {
        if let Some(u) = org.find(r.source) {
            if u.application_user {
                applications.insert(u.id.as_str());
            } else {
                to.insert(u.id.as_str(), r.destination);
            }
        }
    }
    let mut target = env.clone();
    target.tenant = target_tenant.to_string();
    target.administration_mode = false;
    target.system_users = env
        .system_users
        .iter()
        .filter_map(|u| {
            to.get(u.id.as_str()).map(|d| SystemUser {
                email: d.to_string(),
                ..u.clone()
            })
        })
        .collect();
    let mut checklist = vec![
        format!(
            "Managed Environment needs to be re-enabled for {} in the destination tenant (it needs the required license there)",
            env.name
        ),
        "Update the security groups in the destination tenant: security group migration isn't supported".to_string(),
        "Reconfigure applications and settings such as Dynamics 365 for Outlook, server-side sync and SharePoint".to_string(),
    ];
    let mut references = Vec::new();
    for c in &mut target.components {
        if c.kind == "flow" {
            if c.enabled {
                checklist.push(format!(
                    "flow `{}` was turned off: turn it on after checking its connections",
                    c.name
                ));
            }
            c.enabled = false;
            if c.http_trigger_url.is_some() {
                let url = new_url(c);
                checklist.push(format!(
                    "flow `{}` has a new HTTP trigger URL: {url} — update its callers",
                    c.name
                ));
                c.http_trigger_url = Some(url);
            }
            references.extend(c.connection_references.iter().cloned());
        }
    }
    references.sort();
    references.dedup();
    for r in references {
        checklist.push(format!(
            "connection reference `{r}`: map it to a connection in the target tenant"
        ));
    }
    for c in &target.components {
        match c.kind.as_str() {
            "canvas-app" if !c.solution_aware => checklist.push(format!(
                "canvas app `{}` is not solution-aware: re-share it and re-point its connections",
                c.name
            )),
            "connection" => checklist.push(format!(
                "connection `{}`: re-create it with a target tenant account",
                c.name
            )),
            "custom-connector" => checklist.push(format!(
                "custom connector `{}`: re-register its authentication in the target tenant",
                c.name
            )),
            "gateway" | "on-premises-gateway" => checklist.push(format!(
                "gateway `{}`: reconfigure it for the target tenant",
                c.name
            )),
            "bot" => checklist.push(format!(
                "bot `{}`: re-publish it and re-connect its channels",
                c.name
            )),
            "website" | "portal" => checklist.push(format!(
                "website `{}`: re-provision it in the target tenant",
                c.name
            )),
            _ => {}
        }
    }
    for u in &target.system_users {
        if !has_mailbox(&u.email) {
            checklist.push(format!(
                "{}: no mailbox in the target tenant; reconfigure the user's mailbox",
                u.email
            ));
        }
    }
    target.managed = false;
    let source_remnant = Environment {
        id: remnant_id.to_string(),
        tenant: env.tenant.clone(),
        name: env.name.clone(),
        url: env.url.clone(),
        org_id: None,
        environment_type: env.environment_type,
        cloud: env.cloud,
        components: Vec::new(),
        linked_to_finance_and_operations: false,
        managed: false,
        administration_mode: false,
        system_users: Vec::new(),
    };
    let remap = env
        .system_users
        .iter()
        .filter_map(|u| {
            to.get(u.id.as_str())
                .map(|d| (u.email.clone(), d.to_string()))
        })
        .collect();
    let left_out = env.system_users.len() - target.system_users.len();
    Moved {
        remap,
        migrated_users: target.system_users.len(),
        left_out_users: left_out,
        not_in_mapping: left_out - applications.len(),
        application_users_in_mapping: applications.len(),
        target,
        source_remnant,
        checklist,
    }
}

/// Where a move request stands.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    Submitted,
    Rejected,
    Expired,
    Approved,
    MappingUploaded,
    Validating,
    ValidationFailed,
    Validated,
    ValidationExpired,
    Migrating,
    Completed,
    Failed,
    Cancelled,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Submitted => "submitted",
            State::Rejected => "rejected",
            State::Expired => "expired",
            State::Approved => "approved",
            State::MappingUploaded => "mapping-uploaded",
            State::Validating => "validating",
            State::ValidationFailed => "validation-failed",
            State::Validated => "validated",
            State::ValidationExpired => "validation-expired",
            State::Migrating => "migrating",
            State::Completed => "completed",
            State::Failed => "failed",
            State::Cancelled => "cancelled",
        }
    }

    /// Nothing more happens to the request.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            State::Rejected | State::Expired | State::Completed | State::Cancelled
        )
    }
}

/// A move request's timeline. Expiry is applied when the request is looked at (`state_at`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Request {
    pub state: State,
    pub submitted_at: i64,
    pub validated_at: Option<i64>,
}

/// An action the request's state does not allow; says what it is in and what would be needed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot {action}: the request is {state}{hint}", state = state.as_str())]
pub struct NotNow {
    pub action: &'static str,
    pub state: State,
    pub hint: &'static str,
}

impl Request {
    pub fn submit(now: i64) -> Request {
        Request {
            state: State::Submitted,
            submitted_at: now,
            validated_at: None,
        }
    }

    /// The state at `now`: unanswered for seven days → expired; validated seven days ago without
    /// a migration → validation expired.
    pub fn state_at(&self, now: i64) -> State {
        match self.state {
            State::Submitted if now - self.submitted_at >= SEVEN_DAYS_MS => State::Expired,
            State::Validated if self.validated_at.is_some_and(|v| now - v >= SEVEN_DAYS_MS) => {
                State::ValidationExpired
            }
            s => s,
        }
    }

    fn step(
        &mut self,
        now: i64,
        action: &'static str,
        from: &[State],
        to: State,
        hint: &'static str,
    ) -> Result<(), NotNow> {
        let state = self.state_at(now);
        if !from.contains(&state) {
            return Err(NotNow {
                action,
                state,
                hint,
            });
        }
        self.state = to;
        Ok(())
    }

    pub fn approve(&mut self, now: i64) -> Result<(), NotNow> {
        self.step(now, "approve", &[State::Submitted], State::Approved, "")
    }

    pub fn reject(&mut self, now: i64) -> Result<(), NotNow> {
        self.step(now, "reject", &[State::Submitted], State::Rejected, "")
    }

    /// A new file may replace the last one at any point between approval and migration.
    pub fn upload_mapping(&mut self, now: i64) -> Result<(), NotNow> {
        use State::*;
        let from = [
            Approved,
            MappingUploaded,
            ValidationFailed,
            Validated,
            ValidationExpired,
        ];
        let hint = " (the target tenant must approve it first)";
        self.step(now, "upload a user mapping", &from, MappingUploaded, hint)?;
        self.validated_at = None;
        Ok(())
    }

    pub fn start_prepare(&mut self, now: i64) -> Result<(), NotNow> {
        use State::*;
        let from = [
            MappingUploaded,
            ValidationFailed,
            Validated,
            ValidationExpired,
        ];
        self.step(
            now,
            "prepare",
            &from,
            Validating,
            " (upload usermapping.csv first)",
        )
    }

    pub fn finish_prepare(&mut self, now: i64, ok: bool) -> Result<(), NotNow> {
        let to = if ok {
            State::Validated
        } else {
            State::ValidationFailed
        };
        self.step(now, "finish a validation", &[State::Validating], to, "")?;
        self.validated_at = ok.then_some(now);
        Ok(())
    }

    pub fn start_migrate(&mut self, now: i64) -> Result<(), NotNow> {
        let hint = " (a successful validation is good for seven days; after that, prepare again)";
        self.step(now, "migrate", &[State::Validated], State::Migrating, hint)
    }

    /// The move ended: completed, or rolled back to the validated state (`ok == false`; the
    /// validation keeps its date, so its seven days still count).
    pub fn finish_migrate(&mut self, now: i64, ok: bool) -> Result<(), NotNow> {
        let to = if ok {
            State::Completed
        } else {
            State::Validated
        };
        self.step(now, "finish the move", &[State::Migrating], to, "")
    }

    /// Any time before the hand-over begins (not while migrating: the move then completes or
    /// rolls back on its own).
    pub fn cancel(&mut self, now: i64) -> Result<(), NotNow> {
        use State::*;
        let from = [
            Submitted,
            Approved,
            MappingUploaded,
            Validating,
            ValidationFailed,
            Validated,
            ValidationExpired,
            Failed,
        ];
        self.step(now, "cancel", &from, Cancelled, "")
    }

    /// The status line Microsoft's `TenantToTenant-GetStatus` prints for the last operation.
    pub fn status_line(&self, now: i64, error_file_url: &str) -> String {
        match self.state_at(now) {
            State::Validating => "Validate Tenant To Tenant Migration: Running".into(),
            State::Validated => "Validate Tenant To Tenant Migration: Succeeded".into(),
            State::ValidationFailed => {
                format!("Validation Failed, Errors are updated on the blob here: {error_file_url}")
            }
            State::Migrating => "Migrate Environment: Running".into(),
            State::Completed => "Migrate Environment: Succeeded".into(),
            State::Failed => "Migrate Environment: Failed".into(),
            State::ValidationExpired => {
                "Validate Tenant To Tenant Migration: Expired (more than seven days ago; prepare again)".into()
            }
            s => format!("Request: {}", s.as_str()),
        }
    }
}

/// The per-user results of validating a mapping, with the seed's descriptions and actions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum UserCode {
    SourceUserIdMissingInUserMap,
    TargetUserIdMissingInUserMap,
    SourceUserIdIsNotValidGuid,
    SourceUserDoesNotExistInOrgDB,
    TargetUPNDoesNotExistInAAD,
    RetryableError,
    ApplicationUserCannotBeMapped,
    SkippedMapping,
    /// An administrative user's destination has no licence: the migration would fail.
    TargetUserHasNoLicense,
}

impl UserCode {
    pub fn as_str(self) -> &'static str {
        match self {
            UserCode::SourceUserIdMissingInUserMap => "SourceUserIdMissingInUserMap",
            UserCode::TargetUserIdMissingInUserMap => "TargetUserIdMissingInUserMap",
            UserCode::SourceUserIdIsNotValidGuid => "SourceUserIdIsNotValidGuid",
            UserCode::SourceUserDoesNotExistInOrgDB => "SourceUserDoesNotExistInOrgDB",
            UserCode::TargetUPNDoesNotExistInAAD => "TargetUPNDoesNotExistInAAD",
            UserCode::RetryableError => "RetryableError",
            UserCode::ApplicationUserCannotBeMapped => "ApplicationUserCannotBeMapped",
            UserCode::SkippedMapping => "SkippedMapping",
            UserCode::TargetUserHasNoLicense => "TargetUserHasNoLicense",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            UserCode::SourceUserIdMissingInUserMap => "SourceUserId is empty in the mapping.",
            UserCode::TargetUserIdMissingInUserMap => "TargetUserId is empty in the mapping.",
            UserCode::SourceUserIdIsNotValidGuid => "SourceUserId isn't a valid GUID.",
            UserCode::SourceUserDoesNotExistInOrgDB => {
                "SourceUserId didn't match any SystemUserId in the organization's SystemUsers table."
            }
            UserCode::TargetUPNDoesNotExistInAAD => {
                "TargetUserId UPN isn't found in Microsoft Entra ID for the tenant."
            }
            UserCode::RetryableError => {
                "A retriable error has occurred during mapping of the user. It might be successful on next retry."
            }
            UserCode::ApplicationUserCannotBeMapped => {
                "Source user in the map is an application user, which isn't supported by the mapping operation. Application user mapping isn't supported."
            }
            UserCode::SkippedMapping => {
                "Source user doesn't exist in the organization, and the target user already exists."
            }
            UserCode::TargetUserHasNoLicense => {
                "The source user has administrative access and the destination user isn't assigned any license."
            }
        }
    }

    pub fn action(self) -> &'static str {
        match self {
            UserCode::SourceUserIdMissingInUserMap => {
                "Check and fix the Source User in the mapping file."
            }
            UserCode::TargetUserIdMissingInUserMap => {
                "Check and fix the Target User in the mapping file."
            }
            UserCode::SourceUserIdIsNotValidGuid => {
                "Fix the Source User to be a valid GUID in the mapping file."
            }
            UserCode::SourceUserDoesNotExistInOrgDB => "Remove the entry from the mapping file.",
            UserCode::TargetUPNDoesNotExistInAAD => {
                "Check and fix the Target User to an existing and valid user in the tenant Entra ID or remove the entry from the mapping file."
            }
            UserCode::RetryableError => {
                "Rerun the user mapping command with the list of users with this error in the mapping file."
            }
            UserCode::ApplicationUserCannotBeMapped => {
                "No action required. We suggest that you create the application users in the destination tenant. Source tenant app users can't be migrated to the destination tenant. This is by design."
            }
            UserCode::SkippedMapping => {
                "No action required. It means the source user was already mapped to the target user in previous run or manually."
            }
            UserCode::TargetUserHasNoLicense => {
                "Assign a license to the destination user in the destination tenant, or leave the user out of the mapping file."
            }
        }
    }

    /// Whether this result fails the validation (the others need no action).
    pub fn fails(self) -> bool {
        !matches!(
            self,
            UserCode::ApplicationUserCannotBeMapped | UserCode::SkippedMapping
        )
    }
}

/// A user of the environment's Dataverse organisation (its SystemUsers table).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SystemUser {
    /// SystemUserId.
    pub id: String,
    /// The user's e-mail / UPN ("Windows Live ID").
    pub email: String,
    #[serde(default)]
    pub application_user: bool,
    /// Administrative access mode (not full access).
    #[serde(default)]
    pub administrative: bool,
}

/// What the target tenant's imported directory says about a UPN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetLookup {
    Found {
        licensed: bool,
    },
    Missing,
    /// The directory could not be asked right now.
    Unavailable,
}

/// Whether `s` is a GUID (`xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, any case).
pub fn is_guid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                *c == b'-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

/// The organisation's users, found by e-mail (case-insensitive) or by SystemUserId.
pub struct OrgIndex<'a> {
    users: &'a [SystemUser],
    by_key: FxHashMap<String, u32>,
}

impl<'a> OrgIndex<'a> {
    pub fn new(users: &'a [SystemUser]) -> OrgIndex<'a> {
        let mut by_key = FxHashMap::with_capacity_and_hasher(users.len() * 2, Default::default());
        for (i, u) in users.iter().enumerate() {
            by_key
                .entry(u.email.to_ascii_lowercase())
                .or_insert(i as u32);
            by_key.entry(u.id.to_ascii_lowercase()).or_insert(i as u32);
        }
        OrgIndex { users, by_key }
    }

    pub fn find(&self, key: &str) -> Option<&'a SystemUser> {
        let k = if key.bytes().any(|b| b.is_ascii_uppercase()) {
            std::borrow::Cow::Owned(key.to_ascii_lowercase())
        } else {
            std::borrow::Cow::Borrowed(key)
        };
        self.by_key
            .get(k.as_ref())
            .map(|&i| &self.users[i as usize])
    }
}

/// One row's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserResult<'a> {
    pub line: usize,
    pub source: &'a str,
    pub destination: &'a str,
    /// `None`: mapped.
    pub code: Option<UserCode>,
    /// The SystemUserId the source resolved to.
    pub system_user_id: Option<&'a str>,
}

/// Validates each mapped user against the environment's organisation and the target tenant's
/// directory: the source must be a system user (by e-mail or SystemUserId) with a GUID id and not
/// an application user, the destination a user of the target directory, licensed when the source
/// has administrative access.
pub fn validate_users<'a>(
    rows: &[Row<'a>],
    org: &OrgIndex<'a>,
    target: impl Fn(&str) -> TargetLookup,
) -> Vec<UserResult<'a>> {
    rows.iter()
        .map(|r| {
            let mut res = UserResult {
                line: r.line,
                source: r.source,
                destination: r.destination,
                code: None,
                system_user_id: None,
            };
            res.code = if r.source.trim().is_empty() {
                Some(UserCode::SourceUserIdMissingInUserMap)
            } else if r.destination.trim().is_empty() {
                Some(UserCode::TargetUserIdMissingInUserMap)
            } else if !r.source.contains('@') && !is_guid(r.source) {
                Some(UserCode::SourceUserIdIsNotValidGuid)
            } else {
                match org.find(r.source) {
                    None => match (org.find(r.destination), target(r.destination)) {
                        (Some(_), TargetLookup::Found { .. }) => Some(UserCode::SkippedMapping),
                        _ => Some(UserCode::SourceUserDoesNotExistInOrgDB),
                    },
                    Some(u) => {
                        res.system_user_id = Some(u.id.as_str());
                        if !is_guid(&u.id) {
                            Some(UserCode::SourceUserIdIsNotValidGuid)
                        } else if u.application_user {
                            Some(UserCode::ApplicationUserCannotBeMapped)
                        } else {
                            match target(r.destination) {
                                TargetLookup::Missing => Some(UserCode::TargetUPNDoesNotExistInAAD),
                                TargetLookup::Unavailable => Some(UserCode::RetryableError),
                                TargetLookup::Found { licensed: false } if u.administrative => {
                                    Some(UserCode::TargetUserHasNoLicense)
                                }
                                TargetLookup::Found { .. } => None,
                            }
                        }
                    }
                }
            };
            res
        })
        .collect()
}

/// The error file of a validation: a CSV of every row with a code, with its line, the seed's
/// description and action.
pub fn error_file(results: &[UserResult<'_>]) -> String {
    let q = |s: &str| {
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    };
    let mut out = String::from("Line,Source,Destination,ErrorCode,Description,Action\r\n");
    for r in results {
        if let Some(c) = r.code {
            out.push_str(&format!(
                "{},{},{},{},{},{}\r\n",
                r.line,
                q(r.source),
                q(r.destination),
                c.as_str(),
                q(c.description()),
                q(c.action())
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 24 * 3600 * 1000;

    #[test]
    fn only_production_and_sandbox_in_one_cloud_without_finance_and_operations() {
        let f = |t, c, tc, fo| MoveFacts {
            environment_type: t,
            cloud: c,
            target_cloud: tc,
            has_dataverse: true,
            linked_to_finance_and_operations: fo,
            component_kinds: &["canvas-app", "omnichannel", "flow"],
        };
        use {Cloud::*, EnvironmentType::*};
        let w = check_submit(&f(Production, Public, Public, false)).unwrap();
        assert_eq!(w.len(), 1);
        assert_eq!(
            w,
            [
                "omnichannel: Omnichannel for Customer Service isn't supported by a tenant-to-tenant migration"
            ]
        );
        assert!(check_submit(&f(Sandbox, Gcc, Gcc, false)).is_ok());
        for t in [Default, Developer, Trial, Teams] {
            assert!(matches!(
                check_submit(&f(t, Public, Public, false)),
                Err(Refusal::Type(_))
            ));
        }
        assert_eq!(
            check_submit(&f(Production, Gcc, Public, false)),
            Err(Refusal::Cloud)
        );
        assert_eq!(
            check_submit(&f(Production, Public, Public, true)),
            Err(Refusal::FinanceAndOperations)
        );
        // The seed: "Tenant-to-tenant moves support sandbox and production environments with
        // Dataverse" (issue 17: one without went through the whole move).
        for t in [Production, Sandbox] {
            assert_eq!(
                check_submit(&MoveFacts {
                    has_dataverse: false,
                    ..f(t, Public, Public, false)
                }),
                Err(Refusal::NoDataverse)
            );
        }
    }

    #[test]
    fn the_two_seven_day_limits() {
        let t0 = 1_800_000_000_000;
        let mut r = Request::submit(t0);
        assert_eq!(r.state_at(t0 + 7 * DAY - 1), State::Submitted);
        assert_eq!(r.state_at(t0 + 7 * DAY), State::Expired);
        let e = r.clone().approve(t0 + 7 * DAY).unwrap_err();
        assert_eq!(e.to_string(), "cannot approve: the request is expired");

        r.approve(t0 + DAY).unwrap();
        assert!(
            r.start_prepare(t0 + DAY)
                .unwrap_err()
                .to_string()
                .contains("upload usermapping.csv first")
        );
        r.upload_mapping(t0 + DAY).unwrap();
        r.start_prepare(t0 + DAY).unwrap();
        assert_eq!(
            r.status_line(t0 + DAY, "u"),
            "Validate Tenant To Tenant Migration: Running"
        );
        r.finish_prepare(t0 + DAY, false).unwrap();
        assert_eq!(
            r.status_line(t0 + DAY, "https://ferry/e/1/errors.csv"),
            "Validation Failed, Errors are updated on the blob here: https://ferry/e/1/errors.csv"
        );
        r.upload_mapping(t0 + 2 * DAY).unwrap();
        r.start_prepare(t0 + 2 * DAY).unwrap();
        r.finish_prepare(t0 + 2 * DAY, true).unwrap();
        assert_eq!(
            r.status_line(t0 + 2 * DAY, "u"),
            "Validate Tenant To Tenant Migration: Succeeded"
        );
        // Seven days after the validation: prepare again.
        let late = t0 + 9 * DAY;
        assert_eq!(r.state_at(late), State::ValidationExpired);
        assert!(
            r.clone()
                .start_migrate(late)
                .unwrap_err()
                .to_string()
                .contains("prepare again")
        );
        r.start_prepare(late).unwrap();
        r.finish_prepare(late, true).unwrap();
        r.start_migrate(late + DAY).unwrap();
        assert_eq!(
            r.status_line(late + DAY, "u"),
            "Migrate Environment: Running"
        );
        r.finish_migrate(late + DAY, true).unwrap();
        assert_eq!(
            r.status_line(late + 30 * DAY, "u"),
            "Migrate Environment: Succeeded"
        );
        assert!(
            r.cancel(late + 30 * DAY).is_err(),
            "no cancel after completion"
        );
    }

    #[test]
    fn cancel_before_completion_and_reject() {
        let mut r = Request::submit(0);
        r.reject(1).unwrap();
        assert!(r.cancel(2).is_err());
        let mut r = Request::submit(0);
        r.approve(1).unwrap();
        r.upload_mapping(1).unwrap();
        r.cancel(2).unwrap();
        assert_eq!(r.state_at(3), State::Cancelled);
    }

    #[test]
    fn per_user_codes() {
        let users = vec![
            SystemUser {
                id: "11111111-1111-1111-1111-111111111111".into(),
                email: "Ann@contoso.test".into(),
                application_user: false,
                administrative: false,
            },
            SystemUser {
                id: "22222222-2222-2222-2222-222222222222".into(),
                email: "app@contoso.test".into(),
                application_user: true,
                administrative: false,
            },
            SystemUser {
                id: "not-a-guid".into(),
                email: "odd@contoso.test".into(),
                application_user: false,
                administrative: false,
            },
            SystemUser {
                id: "33333333-3333-3333-3333-333333333333".into(),
                email: "boss@contoso.test".into(),
                application_user: false,
                administrative: true,
            },
            SystemUser {
                id: "44444444-4444-4444-4444-444444444444".into(),
                email: "done@fabrikam.test".into(),
                application_user: false,
                administrative: false,
            },
        ];
        let org = OrgIndex::new(&users);
        let target = |upn: &str| match upn.to_ascii_lowercase().as_str() {
            "ann@fabrikam.test" | "app@fabrikam.test" | "odd@fabrikam.test"
            | "done@fabrikam.test" => TargetLookup::Found { licensed: true },
            "boss@fabrikam.test" => TargetLookup::Found { licensed: false },
            "flaky@fabrikam.test" => TargetLookup::Unavailable,
            _ => TargetLookup::Missing,
        };
        let rows = [
            ("ann@contoso.test", "Ann@Fabrikam.test"),
            ("", "x@fabrikam.test"),
            ("ann@contoso.test", ""),
            ("odd@contoso.test", "odd@fabrikam.test"),
            ("ghost@contoso.test", "ghost@fabrikam.test"),
            ("ann@contoso.test", "nobody@fabrikam.test"),
            ("ann@contoso.test", "flaky@fabrikam.test"),
            ("app@contoso.test", "app@fabrikam.test"),
            ("gone@contoso.test", "done@fabrikam.test"),
            ("boss@contoso.test", "boss@fabrikam.test"),
            ("11111111-1111-1111-1111-111111111111", "ann@fabrikam.test"),
            ("1111-2222", "ann@fabrikam.test"),
        ];
        let rows: Vec<Row> = rows
            .iter()
            .enumerate()
            .map(|(i, (s, d))| Row {
                line: i + 2,
                source: s,
                destination: d,
            })
            .collect();
        let got: Vec<Option<&str>> = validate_users(&rows, &org, target)
            .iter()
            .map(|r| r.code.map(UserCode::as_str))
            .collect();
        assert_eq!(
            got,
            [
                None,
                Some("SourceUserIdMissingInUserMap"),
                Some("TargetUserIdMissingInUserMap"),
                Some("SourceUserIdIsNotValidGuid"),
                Some("SourceUserDoesNotExistInOrgDB"),
                Some("TargetUPNDoesNotExistInAAD"),
                Some("RetryableError"),
                Some("ApplicationUserCannotBeMapped"),
                Some("SkippedMapping"),
                Some("TargetUserHasNoLicense"),
                None,
                Some("SourceUserIdIsNotValidGuid"),
            ]
        );
        let results = validate_users(&rows, &org, target);
        let f = error_file(&results);
        assert!(f.starts_with("Line,Source,Destination,ErrorCode,Description,Action\r\n3,,x@fabrikam.test,SourceUserIdMissingInUserMap,SourceUserId is empty in the mapping.,Check and fix the Source User in the mapping file.\r\n"), "{f}");
        assert_eq!(f.lines().count(), 1 + 10);
        assert!(!UserCode::SkippedMapping.fails() && UserCode::RetryableError.fails());
    }
}
