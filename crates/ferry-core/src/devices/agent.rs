//! The agent protocol's messages (docs/agent-protocol.md), shared by the server and the agent.
//! Every request and answer carries `protocol`; a server that does not speak the agent's version
//! answers `426` with code `protocol_mismatch` and the versions it speaks.

use crate::runbook::Runbook;
use serde::{Deserialize, Serialize};

/// A secret that travels in a protocol message (a pre-shared key, a node key, a token): sent as
/// is, unlike [`crate::config::Secret`] which never serializes its value, but never shown by
/// `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Credential(String);

impl Credential {
    pub fn new(s: impl Into<String>) -> Credential {
        Credential(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credential(***)")
    }
}

/// The version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;
/// Versions the server accepts.
pub const SUPPORTED_PROTOCOLS: &[u32] = &[1];

/// `POST /agent/v1/enroll`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    pub protocol: u32,
    /// The pre-shared key the agent was installed with.
    pub psk: Credential,
    pub device: DeviceFacts,
    #[serde(default)]
    pub profiles: Vec<HarvestedProfile>,
    /// The node key this device was given before, when it enrolls again: the proof that it is
    /// the device enrolled under that device id and host name. Without it, an enrollment that
    /// claims an enrolled agent's device id or host name is held for an operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_node_key: Option<Credential>,
}

/// What the agent knows about its device.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceFacts {
    /// A stable identifier of the machine (Windows: the Entra `deviceId` or the machine GUID;
    /// Linux: `/etc/machine-id`).
    pub device_id: String,
    pub hostname: String,
    /// `windows`, `linux`, `macos`.
    pub os: String,
    #[serde(default)]
    pub os_version: String,
    pub agent_version: String,
    /// The directory object id of the computer in the source directory, when known.
    #[serde(default)]
    pub directory_object_id: Option<String>,
    /// Domain or tenant the device is joined to, when known.
    #[serde(default)]
    pub joined_to: Option<String>,
}

/// A local user profile found on the device (the "profile harvest").
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HarvestedProfile {
    /// Account name as the device shows it (`CONTOSO\ann`, `ann`).
    pub name: String,
    #[serde(default)]
    pub sid: Option<String>,
    #[serde(default)]
    pub uid: Option<u32>,
    pub home: String,
    #[serde(default)]
    pub size_bytes: u64,
    /// Last use, ms since the epoch.
    #[serde(default)]
    pub last_used: Option<i64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EnrollResponse {
    pub protocol: u32,
    pub agent_id: i64,
    /// The node credential: sent as `Authorization: Bearer …` on every later call. The server
    /// keeps only its SHA-256.
    pub node_key: Credential,
    pub poll_interval_seconds: u32,
    /// Set when the enrollment is held for an operator (`agent_id` is then 0): the node key
    /// works only once the request is approved; until then calls are answered `403
    /// pending_approval`, and `403 enrollment_refused` if it is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<HeldEnrollment>,
}

/// An enrollment waiting for an operator (`ferry agents approve ID`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldEnrollment {
    pub request_id: i64,
    /// Why it is held (`claims the host name of agent 7 (PC-0001)`).
    pub reason: String,
}

/// `POST /agent/v1/checkin`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckinRequest {
    pub protocol: u32,
    /// A fresh harvest, when the profiles changed since the last one.
    #[serde(default)]
    pub profiles: Option<Vec<HarvestedProfile>>,
    /// The agent's own state (`idle`, `offered`, `running`, `succeeded`, `failed`).
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub agent_version: Option<String>,
    /// The device's pre-flight, when it ran one since its last report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preflight: Option<DevicePreflight>,
    /// The post-flight of the device's last run or rollback, until the server has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
    /// The device's clock when it sent this (ms since the epoch): the server checks it
    /// against its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<i64>,
}

/// What a device checked before its run (`docs/devices.md`, "Device pre-flight").
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevicePreflight {
    /// When it ran (the device's clock, ms since the epoch).
    pub at: i64,
    pub checks: Vec<PreflightCheck>,
}

/// One check of a pre-flight.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreflightCheck {
    /// `free-space`, `reboot`, `commands`, `sessions`, `open-files`, `server`, `clock`,
    /// `profiles`.
    pub check: String,
    pub ok: bool,
    /// A failed blocking check keeps the run from starting; a failed other one is a warning.
    pub blocking: bool,
    /// What was found, in words (and how to fix it when it failed).
    pub detail: String,
}

impl PreflightCheck {
    pub fn new(check: &str, ok: bool, blocking: bool, detail: impl Into<String>) -> Self {
        PreflightCheck {
            check: check.into(),
            ok,
            blocking,
            detail: detail.into(),
        }
    }
}

impl DevicePreflight {
    /// The failed blocking checks: none means the device is ready.
    pub fn blockers(&self) -> impl Iterator<Item = &PreflightCheck> {
        self.checks.iter().filter(|c| !c.ok && c.blocking)
    }

    pub fn ready(&self) -> bool {
        self.blockers().next().is_none()
    }

    /// `not ready: reboot (a reboot is pending: …); commands (…)`, or none when ready.
    pub fn not_ready(&self) -> Option<String> {
        let b: Vec<String> = self
            .blockers()
            .map(|c| format!("{} ({})", c.check, c.detail))
            .collect();
        (!b.is_empty()).then(|| format!("not ready: {}", b.join("; ")))
    }
}

/// What the agent proved after a run or its rollback (post-flight), kept on the server as the
/// run's evidence.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    pub run: String,
    /// `run` (after the last step) or `rollback`.
    pub after: String,
    pub at: i64,
    /// `principals` (a re-run of the run's map would change nothing: no source principal left
    /// in owners, groups or ACL entries, counts and the first paths otherwise; after a rollback:
    /// every journaled file as the run found it), `homes` (every target account resolves its
    /// home), `check-commands` (the runbooks' check commands succeed).
    pub checks: Vec<PreflightCheck>,
}

impl Verification {
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.ok || !c.blocking)
    }
}

/// The most checks a pre-flight or post-flight report holds.
pub const REPORT_CHECKS_MAX: usize = 32;
/// The longest check name of a report, in bytes.
pub const CHECK_NAME_MAX: usize = 32;
/// The longest detail of a pre-flight check, in bytes.
pub const PREFLIGHT_DETAIL_MAX: usize = 2_000;
/// The longest detail of a post-flight check, in bytes.
pub const VERIFICATION_DETAIL_MAX: usize = 8_000;

/// A report's checks cut to what the server takes: at most [`REPORT_CHECKS_MAX`], each detail
/// at most `detail_max` bytes.
pub fn bound_checks(checks: &mut Vec<PreflightCheck>, detail_max: usize) {
    checks.truncate(REPORT_CHECKS_MAX);
    for c in checks {
        c.detail = bounded_detail(&c.detail, detail_max);
    }
}

/// `detail` cut to at most `max` bytes (at a character boundary), saying so: what an agent sends
/// stays within what the server takes, however long the paths it names.
pub fn bounded_detail(detail: &str, max: usize) -> String {
    if detail.len() <= max {
        return detail.to_string();
    }
    const MORE: &str = " … (cut)";
    let mut end = max.saturating_sub(MORE.len());
    while end > 0 && !detail.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{MORE}", &detail[..end])
}

/// How far a device's clock may be from the server's before its run is held back: Kerberos'
/// default tolerance, which a join to Active Directory needs.
pub const CLOCK_TOLERANCE_MS: i64 = 5 * 60_000;

/// The server's check of a device's clock (`device` at the moment the server read it as `server`).
pub fn clock_check(device: i64, server: i64) -> PreflightCheck {
    // Saturating: a device may send any number (i64::MIN wrapped to a "small" skew before).
    let skew = device.saturating_sub(server).clamp(-i64::MAX, i64::MAX);
    let ok = skew.abs() <= CLOCK_TOLERANCE_MS;
    PreflightCheck::new(
        "clock",
        ok,
        true,
        if ok {
            format!("within {} s of the server's", (skew.abs() + 999) / 1000)
        } else {
            format!(
                "{} s {} the server's, more than the {} s a domain join tolerates: set the time (NTP) on the device",
                skew.abs() / 1000,
                if skew > 0 { "ahead of" } else { "behind" },
                CLOCK_TOLERANCE_MS / 1000
            )
        },
    )
}

/// The server's check that every harvested profile has a translation (`untranslated`: those
/// that have none): blocking unless the runbook says to skip them, and never skipped silently.
pub fn profiles_check(untranslated: &[String], skip: bool) -> PreflightCheck {
    if untranslated.is_empty() {
        return PreflightCheck::new(
            "profiles",
            true,
            true,
            "every harvested profile has a translation",
        );
    }
    let names = untranslated.join(", ");
    if skip {
        PreflightCheck::new(
            "profiles",
            false,
            false,
            format!(
                "no translation for {names}: the runbook skips them (their files keep their owners)"
            ),
        )
    } else {
        PreflightCheck::new(
            "profiles",
            false,
            true,
            format!(
                "no translation for {names}: match them (sync, or pin them in the translation table), or set the runbook's permission_updates.skip_unresolved_profiles"
            ),
        )
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CheckinResponse {
    pub protocol: u32,
    pub poll_interval_seconds: u32,
    /// The batch this device is in, if any.
    pub assignment: Option<Assignment>,
    /// Present when the migration is due (Available From or Enforced After has passed): all the
    /// device needs to run it.
    pub migration: Option<MigrationOrder>,
    /// Why a due migration is held back (the device keeps checking in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked: Option<String>,
    /// The agent's id (an agent whose held enrollment was approved learns it here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<i64>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub batch: String,
    /// Runbook names in the order they run (prerequisites first).
    pub runbooks: Vec<String>,
    /// ms since the epoch.
    pub available_from: Option<i64>,
    pub enforced_after: i64,
    pub time_zone: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MigrationOrder {
    /// Identifies this run in events and logs.
    pub run: String,
    /// `offered` (the user may start or snooze) or `enforced` (start within 15 minutes when
    /// nobody is signed in).
    pub mode: String,
    /// The runbooks, prerequisites first.
    pub runbooks: Vec<Runbook>,
    /// Translation entries for this device's harvested profiles only.
    pub translation: Vec<ProfileTranslation>,
    /// Profiles with no translation: they will not be re-permissioned.
    pub untranslated: Vec<String>,
    /// The target's bulk enrolment token, when a runbook joins Entra ID.
    pub enrolment_token: Option<EnrolmentTokenGrant>,
}

/// A translation entry as a device receives it: a projection of the one translation shape,
/// [`crate::export::TranslationEntry::for_profile`].
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileTranslation {
    /// The harvested profile's name.
    pub profile: String,
    pub source_sid: Option<String>,
    pub target_sid: Option<String>,
    pub source_uid: Option<u32>,
    pub target_uid: Option<u32>,
    pub source_gid: Option<u32>,
    pub target_gid: Option<u32>,
    pub target_name: String,
    pub target_upn: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EnrolmentTokenGrant {
    pub id: i64,
    pub kind: String,
    pub package_upn: String,
    pub expires_at: i64,
    pub file_name: Option<String>,
    pub content_base64: Credential,
}

/// `POST /agent/v1/events`: progress of a run.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsRequest {
    pub protocol: u32,
    pub run: String,
    pub events: Vec<AgentEvent>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentEvent {
    /// ms since the epoch, on the device.
    pub at: i64,
    pub step: String,
    /// `started`, `succeeded`, `failed`, `skipped`.
    pub status: String,
    #[serde(default)]
    pub message: String,
    /// 0–100.
    #[serde(default)]
    pub progress: Option<u8>,
}

/// `POST /agent/v1/logs`: a chunk of the run's local log.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogChunk {
    pub protocol: u32,
    pub run: String,
    /// Position of this chunk in the run's log (bytes already sent), so a resend is not stored twice.
    pub offset: u64,
    pub text: String,
}

/// Every agent endpoint's error body.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AgentError {
    pub protocol: u32,
    /// `protocol_mismatch`, `bad_psk`, `retired_psk`, `used_psk`, `unauthorized`,
    /// `pending_approval`, `enrollment_refused`, `forbidden`, `not_assigned`, `out_of_order`,
    /// `too_large`, `rate_limited`, `bad_request`, `not_found`, `internal`.
    pub code: String,
    pub error: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supported_protocols: Vec<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_travel_but_are_not_shown() {
        let c = Credential::new("psk_abc");
        assert_eq!(serde_json::to_string(&c).unwrap(), "\"psk_abc\"");
        assert_eq!(format!("{c:?}"), "Credential(***)");
        let r: EnrollResponse = serde_json::from_str(
            r#"{"protocol": 1, "agent_id": 3, "node_key": "k", "poll_interval_seconds": 60}"#,
        )
        .unwrap();
        assert!(!format!("{r:?}").contains("\"k\""));
    }

    // Would catch: a device clock of i64::MIN wrapping into a "small" skew (it passed), or
    // panicking the check-in in a debug build.
    #[test]
    fn absurd_clocks_are_far_off_not_a_panic() {
        for c in [i64::MIN, i64::MIN + 1_800_000_000_000, i64::MAX] {
            assert!(!clock_check(c, 1_800_000_000_000).ok, "{c}");
        }
        assert!(clock_check(1_800_000_001_000, 1_800_000_000_000).ok);
    }

    proptest::proptest! {
        // Would catch: an agent's report refused for good because a detail (paths a local user
        // chose) is longer than the server takes, or cut inside a character.
        #[test]
        fn a_bounded_detail_fits_and_keeps_its_start(d in "\\PC{0,3000}", max in 10usize..2500) {
            let b = bounded_detail(&d, max);
            proptest::prop_assert!(b.len() <= max, "{} > {max}", b.len());
            if d.len() <= max {
                proptest::prop_assert_eq!(&b, &d);
            } else {
                let kept = b.trim_end_matches(" … (cut)");
                proptest::prop_assert!(d.starts_with(kept));
            }
        }
    }
}
