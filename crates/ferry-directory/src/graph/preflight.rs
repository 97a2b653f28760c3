//! The tenant pre-flight's reads: the facts `ferry_core::preflight::evaluate` decides on, read
//! with the connector's sign-in, retry and `$batch` (no other HTTP code). A refused or failed
//! read becomes an [`Unreadable`] naming the least-privileged application permission Graph
//! documents for it, so the finding can say what to grant.
//!
//! | call | application permission | reference |
//! |---|---|---|
//! | `GET /v1.0/policies/deviceRegistrationPolicy` | Policy.Read.DeviceConfiguration | <https://learn.microsoft.com/graph/api/deviceregistrationpolicy-get?view=graph-rest-1.0> |
//! | `GET /v1.0/deviceManagement/deviceEnrollmentConfigurations` | DeviceManagementServiceConfig.Read.All | <https://learn.microsoft.com/graph/api/intune-onboarding-deviceenrollmentconfiguration-list?view=graph-rest-1.0> |
//! | `GET /beta/policies/mobileDeviceManagementPolicies?$expand=includedGroups` | none (delegated Policy.Read.All only; beta) | <https://learn.microsoft.com/graph/api/mobiledevicemanagementpolicies-list?view=graph-rest-beta> |
//! | `GET /v1.0/subscribedSkus` | Organization.Read.All | <https://learn.microsoft.com/graph/api/subscribedsku-list?view=graph-rest-1.0> |
//! | `GET /v1.0/users/{id}?$select=id,userPrincipalName,assignedLicenses` (`$batch`) | User.Read.All | <https://learn.microsoft.com/graph/api/user-get?view=graph-rest-1.0> |
//! | `GET /v1.0/users/{id}/ownedDevices?$select=id` (`$batch`) | User.Read.All | <https://learn.microsoft.com/graph/api/user-list-owneddevices?view=graph-rest-1.0> |
//! | `GET /v1.0/groups/{id}/transitiveMembers?$select=id` | GroupMember.Read.All | <https://learn.microsoft.com/graph/api/group-list-transitivemembers?view=graph-rest-1.0> |

use super::*;
use ferry_core::preflight::{
    EnrolmentRestrictions, INTUNE_PLANS, MdmScope, Membership, RegistrationPolicy, Sku, TargetUser,
    TenantFacts, Unreadable,
};
use std::collections::HashMap;

const REGISTRATION: (&str, &str) = (
    "GET /policies/deviceRegistrationPolicy",
    "Policy.Read.DeviceConfiguration",
);
const ENROLMENT: (&str, &str) = (
    "GET /deviceManagement/deviceEnrollmentConfigurations",
    "DeviceManagementServiceConfig.Read.All",
);
const MDM: (&str, &str) = ("GET /beta/policies/mobileDeviceManagementPolicies", "");
const SKUS: (&str, &str) = ("GET /subscribedSkus", "Organization.Read.All");
const USERS: (&str, &str) = (
    "GET /users/{id} (assignedLicenses, ownedDevices)",
    "User.Read.All",
);
const MEMBERS: (&str, &str) = ("GET /groups/{id}/transitiveMembers", "GroupMember.Read.All");

fn unreadable((call, permission): (&str, &str), status: u16, message: String) -> Unreadable {
    Unreadable {
        call: call.into(),
        status,
        permission: permission.into(),
        message,
    }
}

impl GraphConnector {
    /// A GET of a JSON body (a collection's pages followed), as values.
    async fn get_values(&self, url: String, what: (&str, &str)) -> Result<Vec<Value>, Unreadable> {
        let mut out = Vec::new();
        let mut next = Some(url);
        let mut pages = 0;
        while let Some(url) = next.take() {
            pages += 1;
            let a = self
                .send(Method::GET, &url, None, &[])
                .await
                .map_err(|e| unreadable(what, 0, e.to_string()))?;
            if !a.status.is_success() {
                let (code, message) = graph_error_parts(&a.body);
                return Err(unreadable(
                    what,
                    a.status.as_u16(),
                    format!("{code}: {message}"),
                ));
            }
            let mut v: Value = serde_json::from_slice(&a.body)
                .map_err(|e| unreadable(what, a.status.as_u16(), format!("not JSON: {e}")))?;
            match v.get_mut("value").map(Value::take) {
                Some(Value::Array(items)) => out.extend(items),
                _ => out.push(v.clone()),
            }
            if pages < 100 {
                next = v["@odata.nextLink"].as_str().map(str::to_string);
            }
        }
        Ok(out)
    }

    /// Reads what the tenant pre-flight decides on; `users` are the matched target users'
    /// object ids (none for the tenant-wide checks).
    pub async fn preflight_facts(&self, users: &[String]) -> TenantFacts {
        let graph = self.cfg.graph_url().to_string();
        let registration = self
            .get_values(self.url("/policies/deviceRegistrationPolicy"), REGISTRATION)
            .await
            .and_then(|v| {
                parse_registration(v.first().unwrap_or(&Value::Null))
                    .ok_or_else(|| unreadable(REGISTRATION, 200, "unexpected JSON".into()))
            });
        let enrolment = self
            .get_values(
                self.url("/deviceManagement/deviceEnrollmentConfigurations"),
                ENROLMENT,
            )
            .await
            .map(|v| parse_enrolment(&v));
        let mdm = self
            .get_values(
                format!(
                    "{graph}/beta/policies/mobileDeviceManagementPolicies?$expand=includedGroups"
                ),
                MDM,
            )
            .await
            .map(|v| parse_mdm(&v));
        let skus = self
            .get_values(self.url("/subscribedSkus"), SKUS)
            .await
            .map(|v| v.iter().map(parse_sku).collect());
        let mut groups: Vec<String> = Vec::new();
        if let Ok(RegistrationPolicy {
            allowed_to_join: Membership::Enumerated { groups: g, .. },
            ..
        }) = &registration
        {
            groups.extend(g.iter().cloned());
        }
        if let Ok(MdmScope::Selected(g)) = &mdm {
            groups.extend(g.iter().cloned());
        }
        groups.sort();
        groups.dedup();
        let mut group_members = HashMap::new();
        let mut failed = None;
        if !users.is_empty() {
            for g in &groups {
                let url = self.url(&format!(
                    "/groups/{g}/transitiveMembers?$select=id&$top=999"
                ));
                let mut ids = Vec::new();
                match self
                    .pages(url, |objs| ids.extend(objs.into_iter().map(|o| o.id)))
                    .await
                {
                    Ok(_) => {
                        group_members.insert(g.clone(), ids);
                    }
                    Err(DirectoryError::Graph {
                        status, message, ..
                    }) => failed = Some(unreadable(MEMBERS, status, message)),
                    Err(e) => failed = Some(unreadable(MEMBERS, 0, e.to_string())),
                }
            }
        }
        let target_users = match failed {
            Some(u) => Err(u),
            None => self.target_users(users).await,
        };
        TenantFacts {
            registration,
            enrolment,
            mdm,
            skus,
            group_members,
            users: target_users,
        }
    }

    /// Each user's licences and owned devices, two `$batch` requests per user.
    async fn target_users(
        &self,
        ids: &[String],
    ) -> Result<HashMap<String, TargetUser>, Unreadable> {
        let mut reqs = Vec::with_capacity(ids.len() * 2);
        for id in ids {
            reqs.push(BatchReq {
                method: "GET",
                url: format!("/users/{id}?$select=id,userPrincipalName,assignedLicenses"),
                body: None,
            });
            reqs.push(BatchReq {
                method: "GET",
                url: format!("/users/{id}/ownedDevices?$select=id&$top=999"),
                body: None,
            });
        }
        let answers = self
            .batch(&reqs)
            .await
            .map_err(|e| unreadable(USERS, 0, e.to_string()))?;
        let mut out = HashMap::new();
        for (id, pair) in ids.iter().zip(answers.chunks(2)) {
            let [(s1, user), (s2, owned)] = pair else {
                continue;
            };
            for (s, body) in [(s1, user), (s2, owned)] {
                if matches!(s, 401 | 403) {
                    return Err(unreadable(USERS, *s, batch_error(*s, body)));
                }
            }
            if *s1 != 200 {
                // A user the table matched but Graph no longer has: the next sync says so.
                continue;
            }
            out.insert(
                id.clone(),
                TargetUser {
                    id: id.clone(),
                    name: user["userPrincipalName"].as_str().unwrap_or(id).to_string(),
                    sku_ids: user["assignedLicenses"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|l| l["skuId"].as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default(),
                    owned_devices: if *s2 == 200 {
                        owned["value"].as_array().map_or(0, |v| v.len() as u32)
                    } else {
                        0
                    },
                },
            );
        }
        Ok(out)
    }
}

/// `deviceRegistrationMembership` by its `@odata.type`.
fn membership(v: &Value) -> Membership {
    let ids = |k: &str| -> Vec<String> {
        v[k].as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    match v["@odata.type"].as_str().unwrap_or_default() {
        t if t.ends_with("allDeviceRegistrationMembership") => Membership::All,
        t if t.ends_with("enumeratedDeviceRegistrationMembership") => Membership::Enumerated {
            users: ids("users"),
            groups: ids("groups"),
        },
        _ => Membership::None,
    }
}

fn parse_registration(v: &Value) -> Option<RegistrationPolicy> {
    Some(RegistrationPolicy {
        user_device_quota: u32::try_from(v["userDeviceQuota"].as_i64()?).unwrap_or(0),
        mfa_required: v["multiFactorAuthConfiguration"].as_str() == Some("required"),
        allowed_to_join: membership(&v["azureADJoin"]["allowedToJoin"]),
    })
}

/// The defaults (priority 0, applied to all users) among the enrolment configurations.
fn parse_enrolment(items: &[Value]) -> EnrolmentRestrictions {
    let mut r = EnrolmentRestrictions::default();
    for v in items
        .iter()
        .filter(|v| v["priority"].as_i64().unwrap_or(0) == 0)
    {
        let t = v["@odata.type"].as_str().unwrap_or_default();
        if t.ends_with("deviceEnrollmentLimitConfiguration") {
            r.device_limit = v["limit"]
                .as_u64()
                .map(|l| l.min(u64::from(u32::MAX)) as u32);
        } else if t.ends_with("deviceEnrollmentPlatformRestrictionsConfiguration") {
            r.windows_blocked = v["windowsRestriction"]["platformBlocked"].as_bool() == Some(true);
        }
    }
    r
}

/// The Microsoft Intune MDM policy's scope; any other MDM application is ignored.
fn parse_mdm(items: &[Value]) -> MdmScope {
    let intune = items.iter().find(|v| {
        v["displayName"]
            .as_str()
            .is_some_and(|n| n.eq_ignore_ascii_case("Microsoft Intune"))
    });
    let Some(p) = intune else {
        return MdmScope::NoIntune;
    };
    match p["appliesTo"].as_str().unwrap_or_default() {
        "all" => MdmScope::All,
        "selected" => MdmScope::Selected(
            p["includedGroups"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|g| g["id"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
        ),
        _ => MdmScope::None,
    }
}

fn parse_sku(v: &Value) -> Sku {
    Sku {
        sku_id: v["skuId"].as_str().unwrap_or_default().to_string(),
        part_number: v["skuPartNumber"].as_str().unwrap_or_default().to_string(),
        intune: v["servicePlans"].as_array().is_some_and(|plans| {
            plans.iter().any(|p| {
                p["servicePlanName"]
                    .as_str()
                    .is_some_and(|n| INTUNE_PLANS.contains(&n))
                    && p["provisioningStatus"].as_str() != Some("Disabled")
            })
        }),
        enabled_units: v["prepaidUnits"]["enabled"].as_i64().unwrap_or(0),
        consumed_units: v["consumedUnits"].as_i64().unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_examples_parse() {
        // The v1.0 reference's own example answers (shortened).
        let reg: Value = serde_json::from_str(r##"{"id":"deviceRegistrationPolicy","userDeviceQuota":2,"multiFactorAuthConfiguration":"notRequired",
            "azureADJoin":{"isAdminConfigurable":true,"allowedToJoin":{"@odata.type":"#microsoft.graph.allDeviceRegistrationMembership"}}}"##).unwrap();
        let p = parse_registration(&reg).unwrap();
        assert_eq!((p.user_device_quota, p.mfa_required), (2, false));
        assert_eq!(p.allowed_to_join, Membership::All);
        let e: Value = serde_json::from_str(r##"{"@odata.type":"#microsoft.graph.enumeratedDeviceRegistrationMembership","users":["u1"],"groups":["g1"]}"##).unwrap();
        assert_eq!(
            membership(&e),
            Membership::Enumerated {
                users: vec!["u1".into()],
                groups: vec!["g1".into()]
            }
        );
        let sku: Value = serde_json::from_str(r#"{"consumedUnits":14,"prepaidUnits":{"enabled":25,"lockedOut":0,"suspended":0,"warning":0},
            "servicePlans":[{"servicePlanId":"8c098270-9dd4-4350-9b30-ba4703f3b36b","servicePlanName":"ADALLOM_S_O365","provisioningStatus":"Success","appliesTo":"Company"}],
            "skuId":"c7df2760-2c81-4ef7-b578-5b5392b571df","skuPartNumber":"ENTERPRISEPREMIUM"}"#).unwrap();
        let s = parse_sku(&sku);
        assert!(!s.intune, "ADALLOM is not Intune");
        assert_eq!((s.enabled_units, s.consumed_units), (25, 14));
        let mdm: Value = serde_json::from_str(r#"[{"id":"x","appliesTo":"selected","displayName":"Microsoft Intune","includedGroups":[{"id":"g","displayName":"G"}]}]"#).unwrap();
        assert_eq!(
            parse_mdm(mdm.as_array().unwrap()),
            MdmScope::Selected(vec!["g".into()])
        );
        assert_eq!(parse_mdm(&[]), MdmScope::NoIntune);
    }
}
