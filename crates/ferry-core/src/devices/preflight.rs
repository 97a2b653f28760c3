//! The tenant pre-flight: whether the target Microsoft Entra tenant lets a batch's devices join
//! Entra ID and enrol in Intune, decided from facts read through Microsoft Graph (by
//! `ferry-directory`'s `graph/preflight.rs`) before any device starts.
//!
//! Pure: the facts come in as values, the findings go out. Each finding says which devices and
//! users it holds back and what to change in the tenant (the portal path), so an operator can
//! fix the tenant rather than a device. The server caches the findings per batch and directory
//! and holds back the devices a blocking finding names (`ferry-server/src/devices/preflight.rs`).
//!
//! The Graph reference each fact comes from:
//! * device registration policy (who may join, the quota, MFA to join):
//!   <https://learn.microsoft.com/graph/api/deviceregistrationpolicy-get?view=graph-rest-1.0>
//! * Intune enrolment restrictions and device limit:
//!   <https://learn.microsoft.com/graph/api/intune-onboarding-deviceenrollmentconfiguration-list?view=graph-rest-1.0>
//! * the Intune MDM user scope (beta only; no application permission):
//!   <https://learn.microsoft.com/graph/api/mobiledevicemanagementpolicies-list?view=graph-rest-beta>
//! * licences: <https://learn.microsoft.com/graph/api/subscribedsku-list?view=graph-rest-1.0> and
//!   users' `assignedLicenses`: <https://learn.microsoft.com/graph/api/resources/user?view=graph-rest-1.0>

use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};

/// The service plan names that carry Intune MDM (Intune Plan 1 as bundled in Microsoft 365 and
/// EMS, and its education and government variants).
pub const INTUNE_PLANS: &[&str] = &["INTUNE_A", "INTUNE_EDU", "INTUNE_A_VL", "INTUNE_O365"];

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Ok,
    Warning,
    /// Holds back the devices it names (or all of the batch's devices).
    Blocking,
}

/// One check's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Finding {
    /// `entra-join-allowed`, `entra-join-mfa`, `entra-device-quota`, `intune-mdm-scope`,
    /// `intune-windows-enrolment`, `intune-device-limit`, `licence-intune`, `licence-units`,
    /// `bulk-enrolment-token`, or `graph-permission:<call>` when Graph refused a read.
    pub check: String,
    pub severity: Severity,
    pub message: String,
    /// What to change in the tenant, and where.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// Every device of the batch is concerned (a tenant-wide setting).
    #[serde(default)]
    pub all_devices: bool,
    /// The devices (host names) concerned, when not all.
    #[serde(default)]
    pub devices: Vec<String>,
    /// The target users concerned (user principal names, else ids).
    #[serde(default)]
    pub users: Vec<String>,
}

impl Finding {
    fn ok(check: &str, message: String) -> Finding {
        Finding {
            check: check.into(),
            severity: Severity::Ok,
            message,
            fix: None,
            all_devices: false,
            devices: Vec::new(),
            users: Vec::new(),
        }
    }
    fn tenant(check: &str, severity: Severity, message: String, fix: &str) -> Finding {
        Finding {
            check: check.into(),
            severity,
            message,
            fix: Some(fix.into()),
            all_devices: true,
            devices: Vec::new(),
            users: Vec::new(),
        }
    }
    /// Whether this finding holds back the device `host` (compared ignoring case).
    pub fn blocks(&self, host: &str) -> bool {
        self.severity == Severity::Blocking
            && (self.all_devices || self.devices.iter().any(|d| d.eq_ignore_ascii_case(host)))
    }
}

/// The pre-flight of a directory (tenant-wide checks) or of a batch (with its devices' users
/// and its bulk enrolment token), as the API answers it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PreflightReport {
    /// The target (Microsoft Entra) directory.
    pub directory: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<String>,
    /// When Graph was read, ms since the epoch (results are cached for a few minutes).
    pub checked_at: i64,
    /// No blocking finding.
    pub ok: bool,
    pub findings: Vec<Finding>,
}

impl PreflightReport {
    /// The first blocking finding that holds back `host`.
    pub fn blocking_for(&self, host: &str) -> Option<&Finding> {
        self.findings.iter().find(|f| f.blocks(host))
    }
}

/// A Graph read that was refused or failed: which call, the HTTP status, and the application
/// permission that call needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unreadable {
    /// `GET /policies/deviceRegistrationPolicy`, …
    pub call: String,
    pub status: u16,
    /// The least-privileged application permission (empty when there is none).
    pub permission: String,
    pub message: String,
}

/// Who a policy lets in (`deviceRegistrationMembership` and its kinds).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Membership {
    /// `#microsoft.graph.allDeviceRegistrationMembership`
    All,
    /// `#microsoft.graph.noDeviceRegistrationMembership`
    None,
    /// `#microsoft.graph.enumeratedDeviceRegistrationMembership`: these user and group ids.
    Enumerated {
        users: Vec<String>,
        groups: Vec<String>,
    },
}

/// `GET /policies/deviceRegistrationPolicy`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistrationPolicy {
    /// `userDeviceQuota`: devices a user may have before new registrations are blocked.
    pub user_device_quota: u32,
    /// `multiFactorAuthConfiguration == "required"`.
    pub mfa_required: bool,
    /// `azureADJoin.allowedToJoin`.
    pub allowed_to_join: Membership,
}

/// The default Intune enrolment restrictions (`deviceEnrollmentConfigurations` of priority 0).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct EnrolmentRestrictions {
    /// `deviceEnrollmentLimitConfiguration.limit`.
    pub device_limit: Option<u32>,
    /// `deviceEnrollmentPlatformRestrictionsConfiguration.windowsRestriction.platformBlocked`.
    pub windows_blocked: bool,
}

/// The Intune MDM user scope (`mobileDeviceManagementPolicies`, `appliesTo`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MdmScope {
    All,
    None,
    /// `selected`: the `includedGroups` ids.
    Selected(Vec<String>),
    /// The tenant has no Microsoft Intune MDM application.
    NoIntune,
}

/// A subscribed SKU, reduced to what the checks need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sku {
    pub sku_id: String,
    pub part_number: String,
    /// One of its service plans is in [`INTUNE_PLANS`] and not disabled.
    pub intune: bool,
    /// `prepaidUnits.enabled`.
    pub enabled_units: i64,
    /// `consumedUnits`.
    pub consumed_units: i64,
}

/// A matched target user as Graph describes them.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct TargetUser {
    pub id: String,
    /// `userPrincipalName` (the id when Graph did not say).
    pub name: String,
    /// `assignedLicenses[].skuId`.
    pub sku_ids: Vec<String>,
    /// Devices the user owns (`ownedDevices`), counted against the quota and the device limit.
    pub owned_devices: u32,
}

/// What the tenant pre-flight read from Graph.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantFacts {
    pub registration: Result<RegistrationPolicy, Unreadable>,
    pub enrolment: Result<EnrolmentRestrictions, Unreadable>,
    pub mdm: Result<MdmScope, Unreadable>,
    pub skus: Result<Vec<Sku>, Unreadable>,
    /// Transitive user members of the groups the policies name.
    pub group_members: HashMap<String, Vec<String>>,
    /// The matched target users asked about, by id.
    pub users: Result<HashMap<String, TargetUser>, Unreadable>,
}

/// What the batch's runbooks do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Needs {
    pub join: bool,
    pub intune: bool,
}

/// A device of the batch and the target user ids its harvested profiles are matched to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceUsers {
    pub host: String,
    pub users: Vec<String>,
}

/// The findings for a tenant (`devices` empty: the tenant-wide checks only) or a batch.
/// `token` is the bulk enrolment token's state when a batch joins: `Ok(description)` or
/// `Err(why it cannot be used)`.
pub fn evaluate(
    facts: &TenantFacts,
    needs: Needs,
    devices: &[DeviceUsers],
    token: Option<Result<String, String>>,
) -> Vec<Finding> {
    let mut out = Vec::new();
    if !needs.join && !needs.intune {
        return out;
    }
    let users = facts.users.as_ref().ok();
    let name = |id: &str| {
        users
            .and_then(|u| u.get(id))
            .map_or(id.to_string(), |u| u.name.clone())
    };
    // Per-user checks: `bad(user)` says whether a user is held back; a device is held back
    // when any of its matched users is.
    let per_user = |check: &str,
                    what: &str,
                    fix: &str,
                    bad: &dyn Fn(&str) -> bool,
                    out: &mut Vec<Finding>|
     -> bool {
        let mut hosts = Vec::new();
        let mut names = BTreeSet::new();
        for d in devices {
            let blocked: Vec<&String> = d.users.iter().filter(|u| bad(u)).collect();
            if !blocked.is_empty() {
                hosts.push(d.host.clone());
                names.extend(blocked.iter().map(|u| name(u)));
            }
        }
        if hosts.is_empty() {
            return false;
        }
        let names: Vec<String> = names.into_iter().collect();
        out.push(Finding {
            check: check.into(),
            severity: Severity::Blocking,
            message: format!(
                "{} device(s) held back: {}; {what}: {}",
                hosts.len(),
                list(&hosts),
                list(&names)
            ),
            fix: Some(fix.into()),
            all_devices: false,
            devices: hosts,
            users: names,
        });
        true
    };
    let in_groups = |user: &str, groups: &[String]| {
        groups.iter().any(|g| {
            facts
                .group_members
                .get(g)
                .is_some_and(|m| m.iter().any(|x| x == user))
        })
    };
    if let Err(u) = &facts.users
        && !devices.is_empty()
    {
        out.push(unreadable(u, true));
    }

    // Entra join: who may join, MFA to join, the per-user quota.
    if needs.join {
        match &facts.registration {
            Err(u) => out.push(unreadable(u, true)),
            Ok(p) => {
                const WHO: &str = "Microsoft Entra admin center › Identity › Devices › All devices › Device settings: \"Users may join devices to Microsoft Entra\"";
                match &p.allowed_to_join {
                    Membership::None => out.push(Finding::tenant(
                        "entra-join-allowed",
                        Severity::Blocking,
                        "no user may join devices to Microsoft Entra ID (azureADJoin.allowedToJoin is none): every device of the batch is held back".into(),
                        &format!("{WHO}: set All, or Selected with a group holding the migrated users"),
                    )),
                    Membership::All => out.push(Finding::ok(
                        "entra-join-allowed",
                        "all users may join devices to Microsoft Entra ID".into(),
                    )),
                    Membership::Enumerated { users: allowed, groups } => {
                        let bad = |u: &str| !allowed.iter().any(|a| a == u) && !in_groups(u, groups);
                        if !per_user(
                            "entra-join-allowed",
                            "these users are not among the selected users and groups that may join devices to Microsoft Entra ID",
                            &format!("{WHO}: add the users, or a group holding them, to Selected"),
                            &bad,
                            &mut out,
                        ) {
                            out.push(Finding::ok(
                                "entra-join-allowed",
                                "the selected users and groups that may join include every matched user".into(),
                            ));
                        }
                    }
                }
                if p.mfa_required {
                    out.push(Finding::tenant(
                        "entra-join-mfa",
                        Severity::Blocking,
                        "multifactor authentication is required to join devices (multiFactorAuthConfiguration is required): an unattended join cannot answer it, so every device of the batch is held back".into(),
                        "Microsoft Entra admin center › Identity › Devices › All devices › Device settings: set \"Require multifactor authentication to register or join devices\" to No (enforce MFA with a Conditional Access policy on \"Register or join devices\" that excludes the enrolment account instead)",
                    ));
                } else {
                    out.push(Finding::ok(
                        "entra-join-mfa",
                        "multifactor authentication is not required to join".into(),
                    ));
                }
                let quota = p.user_device_quota;
                let bad = |u: &str| {
                    users
                        .and_then(|m| m.get(u))
                        .is_some_and(|t| t.owned_devices >= quota)
                };
                if quota == 0 {
                    out.push(Finding::tenant(
                        "entra-device-quota",
                        Severity::Blocking,
                        "the per-user device quota is 0 (userDeviceQuota): no user may join a device".into(),
                        "Microsoft Entra admin center › Identity › Devices › All devices › Device settings: raise \"Maximum number of devices per user\"",
                    ));
                } else if !per_user(
                    "entra-device-quota",
                    &format!(
                        "these users already have {quota} device(s), the per-user quota (userDeviceQuota)"
                    ),
                    "Microsoft Entra admin center › Identity › Devices › All devices › Device settings: raise \"Maximum number of devices per user\", or delete the users' stale devices (Identity › Devices › All devices)",
                    &bad,
                    &mut out,
                ) {
                    out.push(Finding::ok(
                        "entra-device-quota",
                        format!("every matched user is below the per-user device quota of {quota}"),
                    ));
                }
            }
        }
    }

    // Intune: the MDM user scope, Windows enrolment, the device limit, licences.
    if needs.intune {
        const SCOPE: &str = "Microsoft Entra admin center › Identity › Mobility (MDM and WIP) › Microsoft Intune: set \"MDM user scope\"";
        match &facts.mdm {
            // The MDM policies are beta only and have no application permission: a refusal is a
            // warning to confirm by hand, not a block.
            Err(u) => out.push(Finding {
                severity: Severity::Warning,
                fix: Some(format!(
                    "confirm it by hand: {SCOPE} to All, or Some with a group holding the migrated users"
                )),
                all_devices: false,
                ..unreadable(u, false)
            }),
            Ok(MdmScope::NoIntune) => out.push(Finding::tenant(
                "intune-mdm-scope",
                Severity::Blocking,
                "the tenant has no Microsoft Intune MDM application: devices cannot enrol in Intune".into(),
                "Microsoft Entra admin center › Identity › Mobility (MDM and WIP): add Microsoft Intune (buy or start an Intune subscription)",
            )),
            Ok(MdmScope::None) => out.push(Finding::tenant(
                "intune-mdm-scope",
                Severity::Blocking,
                "the Intune MDM user scope is None: no device enrols automatically, so every device of the batch is held back".into(),
                &format!("{SCOPE} to All, or Some with a group holding the migrated users"),
            )),
            Ok(MdmScope::All) => out.push(Finding::ok(
                "intune-mdm-scope",
                "the Intune MDM user scope is All".into(),
            )),
            Ok(MdmScope::Selected(groups)) => {
                let bad = |u: &str| !in_groups(u, groups);
                if !per_user(
                    "intune-mdm-scope",
                    "these users are outside the Intune MDM user scope (Some: its groups)",
                    &format!("{SCOPE}: add a group holding these users to Some, or set All"),
                    &bad,
                    &mut out,
                ) {
                    out.push(Finding::ok(
                        "intune-mdm-scope",
                        "every matched user is in the Intune MDM user scope's groups".into(),
                    ));
                }
            }
        }
        match &facts.enrolment {
            Err(u) => out.push(unreadable(u, true)),
            Ok(r) => {
                if r.windows_blocked {
                    out.push(Finding::tenant(
                        "intune-windows-enrolment",
                        Severity::Blocking,
                        "the default Intune enrolment restriction blocks Windows (windowsRestriction.platformBlocked): every device of the batch is held back".into(),
                        "Microsoft Intune admin center › Devices › Enrollment › Device platform restriction › Windows restrictions › All Users: allow Windows (MDM)",
                    ));
                } else {
                    out.push(Finding::ok(
                        "intune-windows-enrolment",
                        "Windows enrolment is allowed".into(),
                    ));
                }
                if let Some(limit) = r.device_limit {
                    let bad = |u: &str| {
                        users
                            .and_then(|m| m.get(u))
                            .is_some_and(|t| t.owned_devices >= limit)
                    };
                    if !per_user(
                        "intune-device-limit",
                        &format!(
                            "these users already have {limit} device(s), the Intune device limit"
                        ),
                        "Microsoft Intune admin center › Devices › Enrollment › Device limit restriction › All users: raise the limit, or retire the users' stale devices",
                        &bad,
                        &mut out,
                    ) {
                        out.push(Finding::ok(
                            "intune-device-limit",
                            format!(
                                "every matched user is below the Intune device limit of {limit}"
                            ),
                        ));
                    }
                }
            }
        }
        match &facts.skus {
            Err(u) => out.push(unreadable(u, true)),
            Ok(skus) => licences(skus, users, &per_user, &mut out),
        }
    }

    if needs.join
        && let Some(t) = token
    {
        out.push(match t {
            Ok(what) => Finding::ok("bulk-enrolment-token", what),
            Err(why) => Finding::tenant(
                "bulk-enrolment-token",
                Severity::Blocking,
                format!("the bulk enrolment token cannot be used: {why}"),
                "make a new provisioning package (Windows Configuration Designer › Provision desktop devices › Enroll in Azure AD › Get Bulk Token) and upload it: ferry enrolment-tokens add",
            ),
        });
    }
    out
}

type PerUser<'a> = dyn Fn(&str, &str, &str, &dyn Fn(&str) -> bool, &mut Vec<Finding>) -> bool + 'a;

fn licences(
    skus: &[Sku],
    users: Option<&HashMap<String, TargetUser>>,
    per_user: &PerUser<'_>,
    out: &mut Vec<Finding>,
) {
    let intune: Vec<&Sku> = skus.iter().filter(|s| s.intune).collect();
    const LICENCES: &str = "Microsoft 365 admin center › Billing › Licenses";
    if intune.is_empty() {
        out.push(Finding::tenant(
            "licence-intune",
            Severity::Blocking,
            format!(
                "no subscribed SKU of the tenant includes Intune ({}): devices cannot enrol",
                INTUNE_PLANS.join(", ")
            ),
            &format!("{LICENCES}: buy a licence that includes Intune (Microsoft Intune Plan 1, Microsoft 365 E3/E5/Business Premium, EMS E3/E5) and assign it to the migrated users"),
        ));
        return;
    }
    let intune_ids: Vec<&str> = intune.iter().map(|s| s.sku_id.as_str()).collect();
    let unlicensed = |u: &str| {
        users.and_then(|m| m.get(u)).is_some_and(|t| {
            !t.sku_ids
                .iter()
                .any(|s| intune_ids.iter().any(|i| i.eq_ignore_ascii_case(s)))
        })
    };
    let free: i64 = intune
        .iter()
        .map(|s| (s.enabled_units - s.consumed_units).max(0))
        .sum();
    let parts: Vec<&str> = intune.iter().map(|s| s.part_number.as_str()).collect();
    let before = out.len();
    if !per_user(
        "licence-intune",
        &format!(
            "these users have no licence that includes Intune ({})",
            parts.join(", ")
        ),
        &format!(
            "{LICENCES}: assign {} to these users ({free} unit(s) free)",
            parts.join(" or ")
        ),
        &unlicensed,
        out,
    ) {
        out.push(Finding::ok(
            "licence-intune",
            "every matched user has a licence that includes Intune".into(),
        ));
    }
    let missing = out
        .get(before)
        .filter(|f| f.severity == Severity::Blocking)
        .map_or(0, |f| f.users.len() as i64);
    if missing > free {
        let hosts = out[before].devices.clone();
        out.push(Finding {
            check: "licence-units".into(),
            severity: Severity::Blocking,
            message: format!(
                "{missing} matched user(s) need a licence that includes Intune and only {free} unit(s) of {} are free: {} device(s) held back: {}; users: {}",
                parts.join(", "),
                hosts.len(),
                list(&hosts),
                list(&out[before].users)
            ),
            fix: Some(format!(
                "{LICENCES}: buy at least {} more unit(s), or remove licences from users who left",
                missing - free
            )),
            all_devices: false,
            devices: hosts,
            users: out[before].users.clone(),
        });
    } else if free == 0 {
        out.push(Finding {
            severity: Severity::Warning,
            ..Finding::ok(
                "licence-units",
                format!(
                    "no unit of {} is free: a user licensed later cannot be",
                    parts.join(", ")
                ),
            )
        });
    } else {
        out.push(Finding::ok(
            "licence-units",
            format!("{free} licence unit(s) that include Intune are free"),
        ));
    }
}

/// A read Graph refused, as a finding naming the permission to grant.
fn unreadable(u: &Unreadable, all: bool) -> Finding {
    let fix = if u.permission.is_empty() {
        format!(
            "{} cannot be read by an application: check the setting in the portal",
            u.call
        )
    } else if u.status == 403 || u.status == 401 {
        format!(
            "Microsoft Entra admin center › Identity › Applications › App registrations › ferry's app › API permissions: add the Microsoft Graph application permission {} and grant admin consent",
            u.permission
        )
    } else {
        "run the pre-flight again (?refresh=true) once Microsoft Graph answers".into()
    };
    Finding {
        check: format!("graph-permission:{}", u.call),
        severity: Severity::Blocking,
        message: format!(
            "ferry could not read {} (HTTP {}: {}), so it cannot tell whether devices may join or enrol{}",
            u.call,
            u.status,
            u.message,
            if u.permission.is_empty() {
                String::new()
            } else {
                format!("; it needs {}", u.permission)
            }
        ),
        fix: Some(fix),
        all_devices: all,
        devices: Vec::new(),
        users: Vec::new(),
    }
}

/// At most 10 names, then how many more.
fn list(v: &[String]) -> String {
    if v.len() <= 10 {
        v.join(", ")
    } else {
        format!("{} and {} more", v[..10].join(", "), v.len() - 10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn user(id: &str, skus: &[&str], owned: u32) -> (String, TargetUser) {
        (
            id.into(),
            TargetUser {
                id: id.into(),
                name: format!("{id}@fabrikam.test"),
                sku_ids: skus.iter().map(|s| s.to_string()).collect(),
                owned_devices: owned,
            },
        )
    }

    fn permissive() -> TenantFacts {
        TenantFacts {
            registration: Ok(RegistrationPolicy {
                user_device_quota: 50,
                mfa_required: false,
                allowed_to_join: Membership::All,
            }),
            enrolment: Ok(EnrolmentRestrictions {
                device_limit: Some(15),
                windows_blocked: false,
            }),
            mdm: Ok(MdmScope::All),
            skus: Ok(vec![Sku {
                sku_id: "e3".into(),
                part_number: "SPE_E3".into(),
                intune: true,
                enabled_units: 10,
                consumed_units: 2,
            }]),
            group_members: HashMap::new(),
            users: Ok([user("ann", &["e3"], 0), user("bob", &["e3"], 1)]
                .into_iter()
                .collect()),
        }
    }

    fn devices() -> Vec<DeviceUsers> {
        vec![
            DeviceUsers {
                host: "PC-1".into(),
                users: vec!["ann".into()],
            },
            DeviceUsers {
                host: "PC-2".into(),
                users: vec!["bob".into()],
            },
        ]
    }

    const BOTH: Needs = Needs {
        join: true,
        intune: true,
    };

    fn blocking(f: &[Finding]) -> Vec<&Finding> {
        f.iter()
            .filter(|f| f.severity == Severity::Blocking)
            .collect()
    }

    #[test]
    fn a_permissive_tenant_passes_every_check() {
        // Catches a check that blocks when the tenant allows everything.
        let f = evaluate(&permissive(), BOTH, &devices(), Some(Ok("token 1".into())));
        assert!(blocking(&f).is_empty(), "{f:#?}");
        for c in [
            "entra-join-allowed",
            "entra-join-mfa",
            "entra-device-quota",
            "intune-mdm-scope",
            "intune-windows-enrolment",
            "intune-device-limit",
            "licence-intune",
            "licence-units",
            "bulk-enrolment-token",
        ] {
            assert!(f.iter().any(|x| x.check == c), "no {c} finding");
        }
    }

    #[test]
    fn runbooks_that_neither_join_nor_enrol_are_not_checked() {
        let f = evaluate(&permissive(), Needs::default(), &devices(), None);
        assert!(f.is_empty());
    }

    #[test]
    fn join_limited_to_a_group_blocks_the_users_outside_it() {
        // Catches a group check that ignores membership or names the wrong device.
        let mut t = permissive();
        t.registration.as_mut().unwrap().allowed_to_join = Membership::Enumerated {
            users: vec![],
            groups: vec!["g1".into()],
        };
        t.group_members.insert("g1".into(), vec!["ann".into()]);
        let f = evaluate(&t, BOTH, &devices(), None);
        let b = blocking(&f);
        assert_eq!(b.len(), 1, "{b:#?}");
        assert_eq!(b[0].check, "entra-join-allowed");
        assert_eq!(b[0].devices, ["PC-2"]);
        assert_eq!(b[0].users, ["bob@fabrikam.test"]);
        assert!(b[0].message.contains("PC-2") && b[0].message.contains("bob@fabrikam.test"));
        assert!(b[0].fix.as_deref().unwrap().contains("Device settings"));
        assert!(b[0].blocks("pc-2") && !b[0].blocks("PC-1"));
    }

    #[test]
    fn tenant_wide_settings_block_every_device() {
        // Catches a tenant-wide block that names no device and so lets every device through.
        let mut t = permissive();
        t.registration.as_mut().unwrap().mfa_required = true;
        t.enrolment.as_mut().unwrap().windows_blocked = true;
        t.mdm = Ok(MdmScope::None);
        let f = evaluate(&t, BOTH, &devices(), None);
        let checks: Vec<&str> = blocking(&f).iter().map(|f| f.check.as_str()).collect();
        assert_eq!(
            checks,
            [
                "entra-join-mfa",
                "intune-mdm-scope",
                "intune-windows-enrolment"
            ]
        );
        assert!(blocking(&f).iter().all(|f| f.blocks("ANY-PC")));
    }

    #[test]
    fn quota_limit_and_licences_name_their_users() {
        let mut t = permissive();
        t.registration.as_mut().unwrap().user_device_quota = 1;
        t.enrolment.as_mut().unwrap().device_limit = Some(1);
        t.users
            .as_mut()
            .unwrap()
            .get_mut("ann")
            .unwrap()
            .sku_ids
            .clear();
        t.skus.as_mut().unwrap()[0].consumed_units = 10;
        let f = evaluate(&t, BOTH, &devices(), None);
        let by = |c: &str| f.iter().find(|x| x.check == c).unwrap();
        assert_eq!(by("entra-device-quota").devices, ["PC-2"]);
        assert_eq!(by("intune-device-limit").devices, ["PC-2"]);
        assert_eq!(by("licence-intune").devices, ["PC-1"]);
        assert_eq!(by("licence-units").severity, Severity::Blocking);
        assert!(
            by("licence-units")
                .fix
                .as_deref()
                .unwrap()
                .contains("buy at least 1")
        );
    }

    #[test]
    fn a_refused_read_names_the_permission_to_grant() {
        let mut t = permissive();
        t.registration = Err(Unreadable {
            call: "GET /policies/deviceRegistrationPolicy".into(),
            status: 403,
            permission: "Policy.Read.DeviceConfiguration".into(),
            message: "Insufficient privileges to complete the operation.".into(),
        });
        t.mdm = Err(Unreadable {
            call: "GET /beta/policies/mobileDeviceManagementPolicies".into(),
            status: 403,
            permission: String::new(),
            message: "denied".into(),
        });
        let f = evaluate(&t, BOTH, &devices(), None);
        let b = blocking(&f);
        assert_eq!(b.len(), 1);
        assert!(
            b[0].fix
                .as_deref()
                .unwrap()
                .contains("Policy.Read.DeviceConfiguration")
        );
        assert!(
            f.iter()
                .any(|x| x.severity == Severity::Warning && x.check.contains("mobileDevice"))
        );
    }

    proptest! {
        /// A device is named by a per-user finding exactly when one of its users lacks a
        /// licence; devices without matched users are never named.
        #[test]
        fn licence_findings_name_exactly_the_devices_of_unlicensed_users(
            licensed in proptest::collection::vec(any::<bool>(), 1..12),
            owners in proptest::collection::vec(proptest::collection::vec(0usize..12, 0..3), 0..10),
        ) {
            let mut t = permissive();
            let users: HashMap<String, TargetUser> = licensed.iter().enumerate()
                .map(|(i, l)| user(&format!("u{i}"), if *l { &["e3"] } else { &[] }, 0))
                .collect();
            t.users = Ok(users);
            t.skus.as_mut().unwrap()[0].enabled_units = 1000;
            let devs: Vec<DeviceUsers> = owners.iter().enumerate().map(|(i, us)| DeviceUsers {
                host: format!("PC-{i}"),
                users: us.iter().filter(|u| **u < licensed.len()).map(|u| format!("u{u}")).collect(),
            }).collect();
            let f = evaluate(&t, Needs { join: false, intune: true }, &devs, None);
            for d in &devs {
                let expect = d.users.iter().any(|u| !licensed[u[1..].parse::<usize>().unwrap()]);
                let named = f.iter().any(|x| x.check == "licence-intune" && x.blocks(&d.host));
                prop_assert_eq!(expect, named, "{}", d.host);
            }
        }
    }
}
