//! A local stand-in for one Microsoft Entra tenant behind Microsoft Graph v1.0, speaking the JSON
//! shapes Microsoft documents (see `shared/reference/graph-powerplatform-crates.md`, Part A):
//!
//! * `POST /{tenant}/oauth2/v2.0/token`: client credentials with a secret or a PS256 client
//!   assertion (verified against the registered RSA key), AADSTS errors with their codes;
//! * `GET /v1.0/{users|groups|devices}` with `$select` and `$top` (1–999), `@odata.nextLink`;
//! * `GET …/delta` with `@odata.deltaLink`, `$deltaToken=latest`, `@removed` (`changed` for
//!   soft-deleted, `deleted`), `members@delta`, and `410 Gone` once deltas are expired;
//! * `GET /v1.0/groups/{id}/members`, `GET …/$count`;
//! * `POST /v1.0/$batch` (at most 20 requests, per-item status, items throttled one by one);
//! * `POST /v1.0/users`, `POST /v1.0/groups`, `PATCH /v1.0/{res}/{id}`,
//!   `POST /v1.0/groups/{id}/members/$ref`, `DELETE /v1.0/groups/{id}/members/{m}/$ref`;
//! * the tenant pre-flight's reads (see [`TenantPolicy`]): `GET /v1.0/policies/deviceRegistrationPolicy`,
//!   `GET /v1.0/deviceManagement/deviceEnrollmentConfigurations`, `GET /beta/policies/mobileDeviceManagementPolicies`
//!   (beta only), `GET /v1.0/subscribedSkus`, users' `assignedLicenses` (`$select`),
//!   `GET /v1.0/users/{id}/ownedDevices`, `GET /v1.0/groups/{id}/transitiveMembers`; each answers 403
//!   when its application permission is in [`TenantPolicy::denied`];
//! * throttling: every Nth request answered `429` with `Retry-After`; injected faults (403,
//!   malformed JSON, a page chain that never ends, 500s).
//!
//! It is a test double for ferry's Graph connector, not a Graph implementation: it keeps one
//! tenant in memory and checks only what ferry's tests rely on.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use ferry_core::sid::entra_sid_from_object_id;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How the simulated tenant is set up.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// The tenant id (a GUID); its `domain` is accepted in the token URL too.
    pub tenant: String,
    pub domain: String,
    pub client_id: String,
    pub client_secret: String,
    /// RSA public key (PKCS#1 DER) of a certificate credential registered on the app.
    pub public_key_der: Option<Vec<u8>>,
    /// `expires_in` of issued tokens.
    pub token_lifetime: u64,
    /// Every Nth Graph request (and `$batch` item) is answered 429; 0 = never.
    pub throttle_every: u64,
    /// The `Retry-After` of throttled answers, as sent (`"0.1"`, `"2.128"`).
    pub retry_after: String,
    /// Objects per delta page (Graph chooses its own; `$top` does not apply to delta).
    pub delta_page: usize,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            tenant: "00000000-0000-4000-8000-000000000001".into(),
            domain: "fabrikam.test".into(),
            client_id: "11111111-1111-4111-8111-111111111111".into(),
            client_secret: "sim-secret".into(),
            public_key_der: None,
            token_lifetime: 3599,
            throttle_every: 0,
            retry_after: "0.1".into(),
            delta_page: 200,
        }
    }
}

/// A fault the simulator injects into Graph reads until cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// 403 Authorization_RequestDenied on every read.
    Forbidden,
    /// Lists answer 200 with a truncated JSON body.
    MalformedJson,
    /// Lists send the same `@odata.nextLink` forever.
    EndlessPaging,
    /// Every stored delta token has expired: 410 Gone.
    ExpireDeltas,
    /// 500 on every request.
    ServerError,
}

/// Who may join devices to Entra ID (`azureADJoin.allowedToJoin`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JoinScope {
    All,
    None,
    /// `enumeratedDeviceRegistrationMembership`: user and group ids.
    Selected {
        users: Vec<String>,
        groups: Vec<String>,
    },
}

/// The Intune MDM user scope (`appliesTo` of the Microsoft Intune MDM policy).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MdmScope {
    All,
    None,
    /// `selected`, with these group ids as `includedGroups`.
    Selected(Vec<String>),
    /// No Microsoft Intune MDM application in the tenant: an empty list.
    NoIntune,
}

/// The device and licensing settings the tenant pre-flight reads. The default is permissive:
/// anyone may join, no MFA to join, a quota of 50, MDM scope All, Windows enrolment allowed with
/// a device limit of 15, and every user licensed for Microsoft 365 E3 (which includes Intune,
/// `INTUNE_A`) with free units left.
#[derive(Clone, Debug)]
pub struct TenantPolicy {
    pub allowed_to_join: JoinScope,
    /// `multiFactorAuthConfiguration`: `required` when true.
    pub mfa_to_join: bool,
    pub user_device_quota: u32,
    pub mdm_scope: MdmScope,
    /// The default platform restriction's `windowsRestriction.platformBlocked`.
    pub windows_enrolment_blocked: bool,
    /// The default `deviceEnrollmentLimitConfiguration.limit`.
    pub enrolment_limit: u32,
    /// Whether the tenant's SKU includes Intune (`INTUNE_A`); false: Exchange Online only.
    pub sku_has_intune: bool,
    /// Users (ids) without an assigned licence; every other user has the tenant's SKU.
    pub unlicensed: Vec<String>,
    /// `prepaidUnits.enabled` of the SKU; `None`: the licensed users plus 100.
    pub prepaid_units: Option<i64>,
    /// Application permissions the app lacks: calls needing them answer 403.
    pub denied: Vec<String>,
}

impl Default for TenantPolicy {
    fn default() -> Self {
        TenantPolicy {
            allowed_to_join: JoinScope::All,
            mfa_to_join: false,
            user_device_quota: 50,
            mdm_scope: MdmScope::All,
            windows_enrolment_blocked: false,
            enrolment_limit: 15,
            sku_has_intune: true,
            unlicensed: Vec::new(),
            prepaid_units: None,
            denied: Vec::new(),
        }
    }
}

/// Microsoft 365 E3's skuId and Intune Plan 1's service plan id, as Microsoft lists them
/// (<https://learn.microsoft.com/entra/identity/users/licensing-service-plan-reference>).
pub const SKU_SPE_E3: &str = "05e9a617-0261-4cee-bb44-138d3ef5d965";
pub const SKU_EXCHANGE_STANDARD: &str = "4b9405b0-7788-4568-add1-99614e613b69";
const PLAN_INTUNE_A: &str = "c1ec4a95-1f05-45b3-a911-aa3fa01094f5";

/// Counters, for tests and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub token_requests: u64,
    pub graph_requests: u64,
    pub throttled: u64,
    pub batches: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Res {
    Users,
    Groups,
    Devices,
}

impl Res {
    fn parse(s: &str) -> Option<Res> {
        Some(match s {
            "users" => Res::Users,
            "groups" => Res::Groups,
            "devices" => Res::Devices,
            _ => return None,
        })
    }
    fn name(self) -> &'static str {
        match self {
            Res::Users => "users",
            Res::Groups => "groups",
            Res::Devices => "devices",
        }
    }
}

#[derive(Default)]
struct Collection {
    objects: Vec<Option<Map<String, Value>>>,
    at: HashMap<String, usize>,
}

impl Collection {
    fn get(&self, id: &str) -> Option<&Map<String, Value>> {
        self.at.get(id).and_then(|&i| self.objects[i].as_ref())
    }
}

enum Change {
    Upsert,
    Removed(&'static str),
}

struct Data {
    users: Collection,
    groups: Collection,
    devices: Collection,
    members: HashMap<String, Vec<String>>,
    /// (sequence, resource, id, change), in order.
    log: Vec<(u64, Res, String, Change)>,
    seq: u64,
    /// Interned `$select` lists (delta tokens carry their index).
    selects: Vec<String>,
    tokens: HashMap<String, Instant>,
    next_id: u64,
    fault: Option<Fault>,
    policy: TenantPolicy,
    /// user id → ids of devices the user owns (`ownedDevices`).
    owned: HashMap<String, Vec<String>>,
}

impl Data {
    fn coll(&mut self, r: Res) -> &mut Collection {
        match r {
            Res::Users => &mut self.users,
            Res::Groups => &mut self.groups,
            Res::Devices => &mut self.devices,
        }
    }
    fn coll_ref(&self, r: Res) -> &Collection {
        match r {
            Res::Users => &self.users,
            Res::Groups => &self.groups,
            Res::Devices => &self.devices,
        }
    }
    fn record(&mut self, r: Res, id: &str, c: Change) {
        self.seq += 1;
        self.log.push((self.seq, r, id.to_string(), c));
    }
    fn select_index(&mut self, select: &str) -> usize {
        match self.selects.iter().position(|s| s == select) {
            Some(i) => i,
            None => {
                self.selects.push(select.to_string());
                self.selects.len() - 1
            }
        }
    }
}

struct Inner {
    opts: SimOptions,
    data: Mutex<Data>,
    counter: AtomicU64,
    stats_tokens: AtomicU64,
    stats_requests: AtomicU64,
    stats_throttled: AtomicU64,
    stats_batches: AtomicU64,
    base: String,
}

/// A running simulator; stops when dropped.
pub struct GraphSim {
    inner: Arc<Inner>,
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

/// A response under construction (also what a `$batch` item carries).
struct Resp {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Value,
    /// Raw body instead of `body` (malformed JSON, `$count`).
    raw: Option<String>,
}

impl Resp {
    fn json(status: u16, body: Value) -> Resp {
        Resp {
            status,
            headers: Vec::new(),
            body,
            raw: None,
        }
    }
    fn error(status: u16, code: &str, message: &str) -> Resp {
        Resp::json(
            status,
            json!({"error": {"code": code, "message": message,
                "innerError": {"date": "2026-11-22T00:00:00", "request-id": "00000000-0000-0000-0000-000000000000"}}}),
        )
    }
}

/// A deterministic GUID for the nth object of a kind in a tenant.
pub fn sim_guid(tenant_tag: u32, kind: u8, n: u64) -> String {
    format!(
        "{tenant_tag:08x}-{kind:02x}00-4{:03x}-8{:03x}-{:012x}",
        (n >> 48) & 0xfff,
        (n >> 36) & 0xfff,
        n & 0xffff_ffff_ffff
    )
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match h {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_map(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k).to_ascii_lowercase(), percent_decode(v))
        })
        .collect()
}

fn selected(o: &Map<String, Value>, select: &str) -> Value {
    if select.is_empty() {
        return Value::Object(o.clone());
    }
    let mut m = Map::new();
    m.insert("id".into(), o.get("id").cloned().unwrap_or(Value::Null));
    for k in select.split(',') {
        let k = k.trim();
        if k == "id" || k == "members" || k.is_empty() {
            continue;
        }
        m.insert(k.to_string(), o.get(k).cloned().unwrap_or(Value::Null));
    }
    Value::Object(m)
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Data> {
        match self.data.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn throttle(&self) -> Option<Resp> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed) + 1;
        let every = self.opts.throttle_every;
        if every > 0 && n.is_multiple_of(every) {
            self.stats_throttled.fetch_add(1, Ordering::Relaxed);
            let mut r = Resp::json(
                429,
                json!({"error": {"code": "TooManyRequests", "innerError": {"code": "429", "date": "2020-08-18T12:51:51",
                    "message": "Please retry after", "request-id": "94fb3b52-452a-4535-a601-69e0a90e3aa2", "status": "429"},
                    "message": "Please retry again later."}}),
            );
            r.headers
                .push(("Retry-After", self.opts.retry_after.clone()));
            r.headers.push((
                "x-ms-throttle-scope",
                format!(
                    "Tenant_Application/ReadWrite/{}/{}",
                    self.opts.client_id, self.opts.tenant
                ),
            ));
            return Some(r);
        }
        None
    }

    fn token(&self, tenant: &str, form: &HashMap<String, String>) -> Resp {
        self.stats_tokens.fetch_add(1, Ordering::Relaxed);
        let aad = |status: u16, error: &str, code: u64, text: &str| {
            Resp::json(
                status,
                json!({
                    "error": error,
                    "error_description": format!("AADSTS{code}: {text}\r\nTrace ID: 255d1aef-8c98-452f-ac51-23d051240864\r\nCorrelation ID: fb3d2015-bc17-4bb9-bb85-30c5cf1aaaa7\r\nTimestamp: 2026-11-22 00:00:00Z"),
                    "error_codes": [code],
                    "timestamp": "2026-11-22 00:00:00Z",
                    "trace_id": "255d1aef-8c98-452f-ac51-23d051240864",
                    "correlation_id": "fb3d2015-bc17-4bb9-bb85-30c5cf1aaaa7"
                }),
            )
        };
        let o = &self.opts;
        if !tenant.eq_ignore_ascii_case(&o.tenant) && !tenant.eq_ignore_ascii_case(&o.domain) {
            return aad(
                400,
                "invalid_request",
                90002,
                &format!(
                    "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
                ),
            );
        }
        let get = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
        if get("grant_type") != "client_credentials" {
            return aad(
                400,
                "unsupported_grant_type",
                70003,
                "The app requested an unsupported grant type.",
            );
        }
        if !get("scope").ends_with("/.default") {
            return aad(
                400,
                "invalid_scope",
                1002012,
                &format!(
                    "The provided value for scope {} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).",
                    get("scope")
                ),
            );
        }
        if get("client_id") != o.client_id {
            return aad(
                400,
                "unauthorized_client",
                700016,
                &format!(
                    "Application with identifier '{}' was not found in the directory '{tenant}'.",
                    get("client_id")
                ),
            );
        }
        if let Some(secret) = form.get("client_secret") {
            if *secret != o.client_secret {
                return aad(
                    401,
                    "invalid_client",
                    7000215,
                    "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app.",
                );
            }
        } else if let Some(assertion) = form.get("client_assertion") {
            if let Err(why) = self.verify_assertion(tenant, assertion) {
                return aad(401, "invalid_client", 700027, &why);
            }
        } else {
            return aad(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            );
        }
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let token = format!("sim.{n}.{}", Instant::now().elapsed().as_nanos());
        self.lock().tokens.insert(
            token.clone(),
            Instant::now() + Duration::from_secs(o.token_lifetime),
        );
        Resp::json(
            200,
            json!({"token_type": "Bearer", "expires_in": o.token_lifetime, "ext_expires_in": o.token_lifetime, "access_token": token}),
        )
    }

    fn verify_assertion(&self, tenant: &str, jwt: &str) -> Result<(), String> {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let Some(key) = &self.opts.public_key_der else {
            return Err("No certificate credential is registered on the application.".into());
        };
        let parts: Vec<&str> = jwt.split('.').collect();
        let [h, c, s] = parts[..] else {
            return Err("The client assertion is not a JWT.".into());
        };
        let header: Value = b64
            .decode(h)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or("The client assertion header is not valid.")?;
        let claims: Value = b64
            .decode(c)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or("The client assertion claims are not valid.")?;
        if header["alg"] != "PS256" || header["x5t#S256"].as_str().is_none() {
            return Err("The client assertion must be PS256 with an x5t#S256 header.".into());
        }
        let sig = b64.decode(s).map_err(|_| "bad signature encoding")?;
        ring::signature::UnparsedPublicKey::new(&ring::signature::RSA_PSS_2048_8192_SHA256, key)
            .verify(format!("{h}.{c}").as_bytes(), &sig)
            .map_err(|_| "Client assertion failed signature validation.".to_string())?;
        let aud_ok = claims["aud"]
            .as_str()
            .is_some_and(|a| a.ends_with(&format!("/{tenant}/oauth2/v2.0/token")));
        let who_ok = claims["iss"] == self.opts.client_id.as_str()
            && claims["sub"] == self.opts.client_id.as_str();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let time_ok = claims["exp"].as_i64().is_some_and(|e| e > now)
            && claims["nbf"].as_i64().is_some_and(|n| n <= now + 60);
        if !aud_ok || !who_ok {
            return Err("The client assertion's audience, issuer or subject is wrong.".into());
        }
        if !time_ok {
            return Err("The client assertion is not within its valid time range.".into());
        }
        Ok(())
    }

    /// The `401` for a bearer token that was not issued or has expired; `None` when it is valid.
    fn expired(&self, token: &str) -> Option<Resp> {
        let ok = self
            .lock()
            .tokens
            .get(token)
            .is_some_and(|until| Instant::now() < *until);
        (!ok).then(|| {
            Resp::error(
                401,
                "InvalidAuthenticationToken",
                "Lifetime validation failed, the token is expired.",
            )
        })
    }

    /// One Graph request (directly or from a `$batch`); `path` starts after `/v1.0`.
    fn graph(
        &self,
        method: &Method,
        path: &str,
        query: &str,
        auth: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        self.stats_requests.fetch_add(1, Ordering::Relaxed);
        if let Some(refused) = auth.and_then(|t| self.expired(t)) {
            return refused;
        }
        let fault = self.lock().fault;
        if fault == Some(Fault::ServerError) {
            return Resp::error(
                500,
                "generalException",
                "An internal server error occurred.",
            );
        }
        if let Some(r) = self.throttle() {
            return r;
        }
        let q = query_map(query);
        let seg: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let is_get = *method == Method::GET;
        if is_get && fault == Some(Fault::Forbidden) {
            return Resp::error(
                403,
                "Authorization_RequestDenied",
                "Insufficient privileges to complete the operation.",
            );
        }
        match (method.as_str(), seg.as_slice()) {
            ("GET", ["subscribedSkus"]) => self.guarded("Organization.Read.All", |d| {
                subscribed_skus(&self.base, d)
            }),
            ("GET", [res]) => match Res::parse(res) {
                Some(r) => self.list(r, &q, fault),
                None => Resp::error(
                    400,
                    "BadRequest",
                    &format!("Resource not found for the segment '{res}'."),
                ),
            },
            ("GET", [res, "$count"]) => match Res::parse(res) {
                Some(r) => {
                    let n = self.lock().coll_ref(r).objects.iter().flatten().count();
                    Resp {
                        raw: Some(n.to_string()),
                        ..Resp::json(200, Value::Null)
                    }
                }
                None => Resp::error(400, "BadRequest", "unknown resource"),
            },
            ("GET", [res, "delta"]) => match Res::parse(res) {
                Some(r) => self.delta(r, &q, fault),
                None => Resp::error(400, "BadRequest", "unknown resource"),
            },
            ("GET", ["groups", id, "members" | "transitiveMembers"]) => self.members(id, &q),
            ("GET", ["policies", "deviceRegistrationPolicy"]) => {
                self.guarded("Policy.Read.DeviceConfiguration", |d| {
                    registration_policy(&self.base, &d.policy)
                })
            }
            ("GET", ["deviceManagement", "deviceEnrollmentConfigurations"]) => self.guarded(
                "DeviceManagementServiceConfig.Read.All",
                |d| enrollment_configurations(&d.policy),
            ),
            ("GET", ["users", id, "ownedDevices"]) => self.guarded("User.Read.All", |d| {
                let ids = d.owned.get(*id).cloned().unwrap_or_default();
                Resp::json(
                    200,
                    json!({"@odata.context": format!("{}/v1.0/$metadata#directoryObjects", self.base),
                        "value": ids.iter().map(|i| json!({"@odata.type": "#microsoft.graph.device", "id": i})).collect::<Vec<_>>()}),
                )
            }),
            ("GET", ["users", id]) if q.get("$select").is_some_and(|s| s.contains("assignedLicenses")) => {
                self.guarded("User.Read.All", |d| match d.users.get(id) {
                    Some(o) => {
                        let mut v = selected(o, q.get("$select").map_or("", String::as_str));
                        if o.get("assignedLicenses").is_none() {
                            v["assignedLicenses"] = assigned_licenses(&d.policy, id);
                        }
                        Resp::json(200, v)
                    }
                    None => Resp::error(
                        404,
                        "Request_ResourceNotFound",
                        &format!("Resource '{id}' does not exist or one of its queried reference-property objects are not present."),
                    ),
                })
            }
            ("GET", [res, id]) => match Res::parse(res) {
                Some(r) => match self.lock().coll_ref(r).get(id) {
                    Some(o) => Resp::json(
                        200,
                        selected(o, q.get("$select").map_or("", String::as_str)),
                    ),
                    None => Resp::error(
                        404,
                        "Request_ResourceNotFound",
                        &format!(
                            "Resource '{id}' does not exist or one of its queried reference-property objects are not present."
                        ),
                    ),
                },
                None => Resp::error(400, "BadRequest", "unknown resource"),
            },
            ("POST", [res]) => match (Res::parse(res), body) {
                (Some(r @ (Res::Users | Res::Groups)), Some(Value::Object(b))) => self.create(r, b),
                _ => Resp::error(400, "Request_BadRequest", "A JSON object body is required."),
            },
            ("PATCH", [res, id]) => match (Res::parse(res), body) {
                (Some(r), Some(Value::Object(b))) => self.patch(r, id, b),
                _ => Resp::error(400, "Request_BadRequest", "A JSON object body is required."),
            },
            ("POST", ["groups", id, "members", "$ref"]) => {
                let m = body
                    .as_ref()
                    .and_then(|b| b["@odata.id"].as_str())
                    .and_then(|s| s.rsplit('/').next())
                    .unwrap_or_default()
                    .to_string();
                self.add_member_checked(id, &m)
            }
            ("DELETE", ["groups", id, "members", m, "$ref"]) => {
                let mut d = self.lock();
                let removed = d.members.get_mut(*id).map(|v| {
                    let before = v.len();
                    v.retain(|x| x != m);
                    before != v.len()
                });
                if removed == Some(true) {
                    d.record(Res::Groups, id, Change::Upsert);
                    Resp::json(204, Value::Null)
                } else {
                    Resp::error(
                        404,
                        "Request_ResourceNotFound",
                        "The member is not in the group.",
                    )
                }
            }
            _ => Resp::error(
                400,
                "BadRequest",
                &format!("Unsupported request: {method} /v1.0{path}"),
            ),
        }
    }

    /// Answers with `f` unless the app lacks `permission` (403, as Graph words it).
    fn guarded(&self, permission: &str, f: impl FnOnce(&Data) -> Resp) -> Resp {
        let d = self.lock();
        if d.policy.denied.iter().any(|p| p == permission) {
            return Resp::error(
                403,
                "Authorization_RequestDenied",
                "Insufficient privileges to complete the operation.",
            );
        }
        f(&d)
    }
    fn list(&self, r: Res, q: &HashMap<String, String>, fault: Option<Fault>) -> Resp {
        let top = match q.get("$top") {
            None => 100,
            Some(t) => match t.parse::<usize>() {
                Ok(n @ 1..=999) => n,
                _ => {
                    return Resp::error(
                        400,
                        "Request_UnsupportedQuery",
                        &format!(
                            "Invalid page size specified: '{t}'. Must be between 1 and 999 inclusive."
                        ),
                    );
                }
            },
        };
        let select = q.get("$select").cloned().unwrap_or_default();
        let skip: usize = q
            .get("$skiptoken")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let d = self.lock();
        let c = d.coll_ref(r);
        let mut value = Vec::with_capacity(top);
        let mut i = skip;
        while i < c.objects.len() && value.len() < top {
            if let Some(o) = &c.objects[i] {
                value.push(selected(o, &select));
            }
            i += 1;
        }
        drop(d);
        let mut page = json!({"@odata.context": format!("{}/v1.0/$metadata#{}", self.base, r.name()), "value": value});
        let next_skip = if fault == Some(Fault::EndlessPaging) {
            Some(skip)
        } else {
            (i < self.lock().coll_ref(r).objects.len()).then_some(i)
        };
        if let Some(n) = next_skip {
            page["@odata.nextLink"] = Value::String(format!(
                "{}/v1.0/{}?$select={select}&$top={top}&$skiptoken={n}",
                self.base,
                r.name()
            ));
        }
        if fault == Some(Fault::MalformedJson) {
            let s = page.to_string();
            return Resp {
                raw: Some(s[..s.len() / 2].to_string()),
                ..Resp::json(200, Value::Null)
            };
        }
        Resp::json(200, page)
    }

    fn delta(&self, r: Res, q: &HashMap<String, String>, fault: Option<Fault>) -> Resp {
        let mut d = self.lock();
        let gone = |base: &str| {
            let mut resp = Resp::error(
                410,
                "resyncRequired",
                "The delta token has expired; restart with a full synchronization.",
            );
            resp.headers.push((
                "Location",
                format!("{base}/v1.0/{}/delta?$deltatoken=", r.name()),
            ));
            resp
        };
        // Tokens: deltatoken "seq.select"; skiptoken "from.upto.select.offset".
        let (from, upto, sel, offset) = if let Some(t) = q.get("$deltatoken") {
            if fault == Some(Fault::ExpireDeltas) {
                return gone(&self.base);
            }
            if t.eq_ignore_ascii_case("latest") {
                let s = d.select_index(q.get("$select").map_or("", String::as_str));
                return Resp::json(
                    200,
                    json!({
                        "@odata.context": format!("{}/v1.0/$metadata#{}", self.base, r.name()),
                        "@odata.deltaLink": format!("{}/v1.0/{}/delta?$deltatoken={}.{s}", self.base, r.name(), d.seq),
                        "value": []
                    }),
                );
            }
            let mut p = t.split('.');
            let (Some(Ok(from)), Some(Ok(sel))) = (
                p.next().map(str::parse::<u64>),
                p.next().map(str::parse::<usize>),
            ) else {
                return gone(&self.base);
            };
            (Some(from), d.seq, sel, 0)
        } else if let Some(t) = q.get("$skiptoken") {
            let p: Vec<&str> = t.split('.').collect();
            let n = |i: usize| p.get(i).and_then(|x| x.parse::<u64>().ok());
            match (n(0), n(1), n(2), n(3)) {
                (Some(f), Some(u), Some(s), Some(o)) => {
                    ((f != u64::MAX).then_some(f), u, s as usize, o as usize)
                }
                _ => return Resp::error(400, "BadRequest", "The skip token is not valid."),
            }
        } else {
            let s = d.select_index(q.get("$select").map_or("", String::as_str));
            (None, d.seq, s, 0)
        };
        let select = d.selects.get(sel).cloned().unwrap_or_default();
        // The items of this round: everything (initial round) or the changes in (from, upto].
        let items: Vec<(String, Option<&'static str>)> = match from {
            None => d
                .coll_ref(r)
                .objects
                .iter()
                .flatten()
                .filter_map(|o| o["id"].as_str().map(|i| (i.to_string(), None)))
                .collect(),
            Some(f) => {
                let mut last: HashMap<&str, (u64, Option<&'static str>)> = HashMap::new();
                for (seq, res, id, c) in &d.log {
                    if *res == r && *seq > f && *seq <= upto {
                        last.insert(
                            id,
                            (
                                *seq,
                                match c {
                                    Change::Upsert => None,
                                    Change::Removed(why) => Some(*why),
                                },
                            ),
                        );
                    }
                }
                let mut v: Vec<(u64, String, Option<&'static str>)> = last
                    .into_iter()
                    .map(|(id, (s, c))| (s, id.to_string(), c))
                    .collect();
                v.sort();
                v.into_iter().map(|(_, id, c)| (id, c)).collect()
            }
        };
        let page = self.opts.delta_page.max(1);
        let end = (offset + page).min(items.len());
        let with_members = select.split(',').any(|s| s.trim() == "members");
        let mut value = Vec::new();
        for (id, removed) in &items[offset.min(items.len())..end] {
            match (removed, d.coll_ref(r).get(id)) {
                (Some(why), _) => value.push(json!({"id": id, "@removed": {"reason": why}})),
                (None, Some(o)) => {
                    let mut v = selected(o, &select);
                    if r == Res::Groups && with_members {
                        let m: Vec<Value> = d.members.get(id).map(|ms| ms.iter().map(|m| json!({"@odata.type": "#microsoft.graph.user", "id": m})).collect()).unwrap_or_default();
                        v["members@delta"] = Value::Array(m);
                    }
                    value.push(v);
                }
                (None, None) => value.push(json!({"id": id, "@removed": {"reason": "deleted"}})),
            }
        }
        let mut body = json!({"@odata.context": format!("{}/v1.0/$metadata#{}", self.base, r.name()), "value": value});
        if end < items.len() {
            body["@odata.nextLink"] = Value::String(format!(
                "{}/v1.0/{}/delta?$skiptoken={}.{upto}.{sel}.{end}",
                self.base,
                r.name(),
                from.unwrap_or(u64::MAX)
            ));
        } else {
            body["@odata.deltaLink"] = Value::String(format!(
                "{}/v1.0/{}/delta?$deltatoken={upto}.{sel}",
                self.base,
                r.name()
            ));
        }
        Resp::json(200, body)
    }

    fn members(&self, group: &str, q: &HashMap<String, String>) -> Resp {
        let d = self.lock();
        if d.groups.get(group).is_none() {
            return Resp::error(
                404,
                "Request_ResourceNotFound",
                &format!(
                    "Resource '{group}' does not exist or one of its queried reference-property objects are not present."
                ),
            );
        }
        let top: usize = q
            .get("$top")
            .and_then(|t| t.parse().ok())
            .unwrap_or(100)
            .clamp(1, 999);
        let skip: usize = q
            .get("$skiptoken")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let all = d.members.get(group).cloned().unwrap_or_default();
        let end = (skip + top).min(all.len());
        let value: Vec<Value> = all[skip.min(end)..end]
            .iter()
            .map(|m| {
                let t = if d.users.get(m).is_some() {
                    "#microsoft.graph.user"
                } else if d.groups.get(m).is_some() {
                    "#microsoft.graph.group"
                } else {
                    "#microsoft.graph.device"
                };
                json!({"@odata.type": t, "id": m})
            })
            .collect();
        let mut body = json!({"@odata.context": format!("{}/v1.0/$metadata#directoryObjects", self.base), "value": value});
        if end < all.len() {
            body["@odata.nextLink"] = Value::String(format!(
                "{}/v1.0/groups/{group}/members?$select=id&$top={top}&$skiptoken={end}",
                self.base
            ));
        }
        Resp::json(200, body)
    }

    fn create(&self, r: Res, mut b: Map<String, Value>) -> Resp {
        let required: &[&str] = match r {
            Res::Users => &[
                "accountEnabled",
                "displayName",
                "mailNickname",
                "userPrincipalName",
                "passwordProfile",
            ],
            _ => &[
                "displayName",
                "mailEnabled",
                "mailNickname",
                "securityEnabled",
            ],
        };
        for k in required {
            if b.get(*k).is_none_or(Value::is_null) {
                return Resp::error(
                    400,
                    "Request_BadRequest",
                    &format!(
                        "Invalid value specified for property '{k}' of resource '{}'.",
                        if r == Res::Users { "User" } else { "Group" }
                    ),
                );
            }
        }
        if r == Res::Users {
            let pw = b["passwordProfile"]["password"]
                .as_str()
                .unwrap_or_default();
            if pw.len() < 8 {
                return Resp::error(
                    400,
                    "Request_BadRequest",
                    "The specified password does not comply with password complexity requirements. Please provide a different password.",
                );
            }
            let upn = b["userPrincipalName"]
                .as_str()
                .unwrap_or_default()
                .to_ascii_lowercase();
            let d = self.lock();
            if d.users.objects.iter().flatten().any(|o| {
                o["userPrincipalName"]
                    .as_str()
                    .is_some_and(|u| u.eq_ignore_ascii_case(&upn))
            }) {
                return Resp::error(
                    400,
                    "Request_BadRequest",
                    "Another object with the same value for property userPrincipalName already exists.",
                );
            }
            drop(d);
            b.remove("passwordProfile");
        }
        let mut d = self.lock();
        d.next_id += 1;
        let id = sim_guid(0xfe00_0000, if r == Res::Users { 1 } else { 2 }, d.next_id);
        b.insert("id".into(), Value::String(id.clone()));
        if let Ok(sid) = entra_sid_from_object_id(&id) {
            b.insert("securityIdentifier".into(), Value::String(sid));
        }
        let c = d.coll(r);
        c.at.insert(id.clone(), c.objects.len());
        c.objects.push(Some(b.clone()));
        d.record(r, &id, Change::Upsert);
        Resp::json(201, Value::Object(b))
    }

    fn patch(&self, r: Res, id: &str, b: Map<String, Value>) -> Resp {
        let mut d = self.lock();
        let Some(&i) = d.coll_ref(r).at.get(id) else {
            return Resp::error(
                404,
                "Request_ResourceNotFound",
                &format!(
                    "Resource '{id}' does not exist or one of its queried reference-property objects are not present."
                ),
            );
        };
        for k in ["id", "securityIdentifier", "deviceId", "proxyAddresses"] {
            if b.contains_key(k) {
                return Resp::error(
                    400,
                    "Request_BadRequest",
                    &format!("Property '{k}' is read-only and cannot be set."),
                );
            }
        }
        if let Some(Some(o)) = d.coll(r).objects.get_mut(i) {
            o.extend(b);
        }
        d.record(r, id, Change::Upsert);
        Resp::json(204, Value::Null)
    }

    fn add_member_checked(&self, group: &str, member: &str) -> Resp {
        let mut d = self.lock();
        if d.groups.get(group).is_none() {
            return Resp::error(
                404,
                "Request_ResourceNotFound",
                &format!("Resource '{group}' does not exist."),
            );
        }
        if d.users.get(member).is_none()
            && d.groups.get(member).is_none()
            && d.devices.get(member).is_none()
        {
            return Resp::error(
                404,
                "Request_ResourceNotFound",
                &format!(
                    "Resource '{member}' does not exist or one of its queried reference-property objects are not present."
                ),
            );
        }
        let m = d.members.entry(group.to_string()).or_default();
        if m.iter().any(|x| x == member) {
            return Resp::error(
                400,
                "Request_BadRequest",
                "One or more added object references already exist for the following modified properties: 'members'.",
            );
        }
        m.push(member.to_string());
        d.record(Res::Groups, group, Change::Upsert);
        Resp::json(204, Value::Null)
    }

    fn batch(&self, auth: Option<&str>, body: &[u8]) -> Resp {
        self.stats_batches.fetch_add(1, Ordering::Relaxed);
        let Ok(v) = serde_json::from_slice::<Value>(body) else {
            return Resp::error(400, "BadRequest", "Invalid batch payload format.");
        };
        let Some(reqs) = v["requests"].as_array() else {
            return Resp::error(400, "BadRequest", "Invalid batch payload format.");
        };
        if reqs.len() > 20 {
            return Resp::error(
                400,
                "BadRequest",
                "Number of requests in batch exceeds the limit of 20.",
            );
        }
        let mut ids = std::collections::HashSet::new();
        let mut out = Vec::new();
        for rq in reqs {
            let id = rq["id"].as_str().unwrap_or_default().to_string();
            if !ids.insert(id.clone()) {
                return Resp::error(400, "BadRequest", "Batch request ids must be unique.");
            }
            let method = rq["method"]
                .as_str()
                .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
                .unwrap_or(Method::GET);
            let url = rq["url"].as_str().unwrap_or_default();
            let url = if url.starts_with('/') {
                url.to_string()
            } else {
                format!("/{url}")
            };
            let (path, query) = url.split_once('?').unwrap_or((&url, ""));
            let r = self.graph(&method, path, query, auth, rq.get("body").cloned());
            let mut headers = Map::new();
            headers.insert("Content-Type".into(), "application/json".into());
            for (k, v) in r.headers {
                headers.insert(k.to_string(), Value::String(v));
            }
            out.push(json!({"id": id, "status": r.status, "headers": headers, "body": r.raw.map(Value::String).unwrap_or(r.body)}));
        }
        // Graph may answer in any order.
        out.reverse();
        Resp::json(200, json!({"responses": out}))
    }
}

impl Inner {
    /// `/beta`: only the MDM user scope, which has no v1.0 endpoint and no application
    /// permission (Graph documents `Policy.Read.All`, delegated only): the simulator answers it
    /// unless `Policy.Read.All` is denied, so that both ferry's reading and its refusal path are
    /// tested.
    fn beta(&self, method: &Method, path: &str) -> Resp {
        if *method != Method::GET
            || path.trim_end_matches('/') != "/policies/mobileDeviceManagementPolicies"
        {
            return Resp::error(
                400,
                "BadRequest",
                &format!("Unsupported request: {method} /beta{path}"),
            );
        }
        self.guarded("Policy.Read.All", |d| {
            let (applies, groups) = match &d.policy.mdm_scope {
                MdmScope::NoIntune => {
                    return Resp::json(200, json!({"@odata.context": format!("{}/beta/$metadata#policies/mobileDeviceManagementPolicies", self.base), "value": []}));
                }
                MdmScope::All => ("all", Vec::new()),
                MdmScope::None => ("none", Vec::new()),
                MdmScope::Selected(g) => ("selected", g.clone()),
            };
            let included: Vec<Value> = groups
                .iter()
                .map(|g| {
                    let name = d.groups.get(g).and_then(|o| o.get("displayName").cloned()).unwrap_or(Value::Null);
                    json!({"id": g, "displayName": name})
                })
                .collect();
            Resp::json(200, json!({
                "@odata.context": format!("{}/beta/$metadata#policies/mobileDeviceManagementPolicies", self.base),
                "value": [{
                    "@odata.type": "#microsoft.graph.mobilityManagementPolicy",
                    "id": "0000000a-0000-0000-c000-000000000000",
                    "appliesTo": applies,
                    "complianceUrl": "https://portal.manage.microsoft.com/?portalAction=Compliance",
                    "description": null,
                    "discoveryUrl": "https://enrollment.manage.microsoft.com/enrollmentserver/discovery.svc",
                    "displayName": "Microsoft Intune",
                    "termsOfUseUrl": "https://portal.manage.microsoft.com/TermsofUse.aspx",
                    "isValid": true,
                    "includedGroups": included
                }]
            }))
        })
    }
}

/// `GET /policies/deviceRegistrationPolicy`, shaped as Graph's v1.0 example.
fn registration_policy(base: &str, p: &TenantPolicy) -> Resp {
    let allowed = match &p.allowed_to_join {
        JoinScope::All => {
            json!({"@odata.type": "#microsoft.graph.allDeviceRegistrationMembership"})
        }
        JoinScope::None => {
            json!({"@odata.type": "#microsoft.graph.noDeviceRegistrationMembership"})
        }
        JoinScope::Selected { users, groups } => json!({
            "@odata.type": "#microsoft.graph.enumeratedDeviceRegistrationMembership",
            "users": users, "groups": groups
        }),
    };
    Resp::json(
        200,
        json!({
            "@odata.context": format!("{base}/v1.0/$metadata#deviceRegistrationPolicy"),
            "id": "deviceRegistrationPolicy",
            "displayName": "Device Registration Policy",
            "description": "Tenant-wide policy that manages intial provisioning controls using quota restrictions, additional authentication and authorization checks",
            "userDeviceQuota": p.user_device_quota,
            "multiFactorAuthConfiguration": if p.mfa_to_join { "required" } else { "notRequired" },
            "azureADRegistration": {
                "isAdminConfigurable": false,
                "allowedToRegister": {"@odata.type": "#microsoft.graph.allDeviceRegistrationMembership"}
            },
            "azureADJoin": {
                "isAdminConfigurable": true,
                "allowedToJoin": allowed,
                "localAdmins": {
                    "enableGlobalAdmins": true,
                    "registeringUsers": {"@odata.type": "#microsoft.graph.allDeviceRegistrationMembership"}
                }
            },
            "localAdminPassword": {"isEnabled": false}
        }),
    )
}

/// `GET /deviceManagement/deviceEnrollmentConfigurations`: the tenant's two defaults (priority
/// 0), a device limit and a platform restriction, as their v1.0 resource types document them.
fn enrollment_configurations(p: &TenantPolicy) -> Resp {
    let restriction = |blocked: bool| {
        json!({"@odata.type": "microsoft.graph.deviceEnrollmentPlatformRestriction",
            "platformBlocked": blocked, "personalDeviceEnrollmentBlocked": false,
            "osMinimumVersion": null, "osMaximumVersion": null})
    };
    Resp::json(
        200,
        json!({"value": [
            {
                "@odata.type": "#microsoft.graph.deviceEnrollmentLimitConfiguration",
                "id": "00000000-0000-0000-0000-000000000001_DefaultLimit",
                "displayName": "All users and all devices",
                "description": "This is the default Device Limit Restriction applied with the lowest priority to all users regardless of group membership.",
                "priority": 0,
                "createdDateTime": "2026-01-01T00:00:00Z",
                "lastModifiedDateTime": "2026-01-01T00:00:00Z",
                "version": 1,
                "limit": p.enrolment_limit
            },
            {
                "@odata.type": "#microsoft.graph.deviceEnrollmentPlatformRestrictionsConfiguration",
                "id": "00000000-0000-0000-0000-000000000001_DefaultPlatformRestrictions",
                "displayName": "All users and all devices",
                "description": "This is the default Device Type Restriction applied with the lowest priority to all users regardless of group membership.",
                "priority": 0,
                "createdDateTime": "2026-01-01T00:00:00Z",
                "lastModifiedDateTime": "2026-01-01T00:00:00Z",
                "version": 1,
                "iosRestriction": restriction(false),
                "windowsRestriction": restriction(p.windows_enrolment_blocked),
                "windowsMobileRestriction": restriction(false),
                "androidRestriction": restriction(false),
                "macOSRestriction": restriction(false)
            }
        ]}),
    )
}

fn tenant_sku(p: &TenantPolicy) -> &'static str {
    if p.sku_has_intune {
        SKU_SPE_E3
    } else {
        SKU_EXCHANGE_STANDARD
    }
}

fn assigned_licenses(p: &TenantPolicy, user: &str) -> Value {
    if p.unlicensed.iter().any(|u| u == user) {
        json!([])
    } else {
        json!([{"disabledPlans": [], "skuId": tenant_sku(p)}])
    }
}

/// `GET /subscribedSkus`: the tenant's one SKU, its units counted from the users.
fn subscribed_skus(base: &str, d: &Data) -> Resp {
    let p = &d.policy;
    let consumed = d
        .users
        .objects
        .iter()
        .flatten()
        .filter(|o| {
            o["id"]
                .as_str()
                .is_some_and(|id| !p.unlicensed.iter().any(|u| u == id))
        })
        .count() as i64;
    let enabled = p.prepaid_units.unwrap_or(consumed + 100);
    let (part, plans) = if p.sku_has_intune {
        (
            "SPE_E3",
            json!([
                {"servicePlanId": PLAN_INTUNE_A, "servicePlanName": "INTUNE_A", "provisioningStatus": "Success", "appliesTo": "User"},
                {"servicePlanId": "efb87545-963c-4e0d-99df-69c6916d9eb0", "servicePlanName": "EXCHANGE_S_ENTERPRISE", "provisioningStatus": "Success", "appliesTo": "User"}
            ]),
        )
    } else {
        (
            "EXCHANGESTANDARD",
            json!([{"servicePlanId": "9aaf7827-d63c-4b61-89c3-182f06f82e5c", "servicePlanName": "EXCHANGE_S_STANDARD", "provisioningStatus": "Success", "appliesTo": "User"}]),
        )
    };
    let sku = tenant_sku(p);
    Resp::json(
        200,
        json!({
            "@odata.context": format!("{base}/v1.0/$metadata#subscribedSkus"),
            "value": [{
                "accountName": "Fabrikam",
                "accountId": "f97aeefc-af85-414d-8ae4-b457f90efc40",
                "appliesTo": "User",
                "capabilityStatus": "Enabled",
                "consumedUnits": consumed,
                "id": format!("f97aeefc-af85-414d-8ae4-b457f90efc40_{sku}"),
                "prepaidUnits": {"enabled": enabled, "lockedOut": 0, "suspended": 0, "warning": 0},
                "servicePlans": plans,
                "skuId": sku,
                "skuPartNumber": part,
                "subscriptionIds": ["43d26afe-cb98-48b9-acc4-ae3ef2ac6c51"]
            }]
        }),
    )
}

async fn handle(
    State(inner): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let query = uri.query().unwrap_or_default().to_string();
    let inner2 = Arc::clone(&inner);
    // The simulator's work runs off the async threads, as a server's would.
    let r = tokio::task::spawn_blocking(move || {
        let inner = inner2;
        if let Some(tenant) = path
            .strip_prefix('/')
            .and_then(|p| p.strip_suffix("/oauth2/v2.0/token"))
        {
            if method != Method::POST {
                return Resp::error(405, "MethodNotAllowed", "POST only");
            }
            let form = query_map(&String::from_utf8_lossy(&body));
            return inner.token(tenant, &form);
        }
        let beta = path.starts_with("/beta/");
        let Some(rest) = path
            .strip_prefix("/v1.0")
            .or_else(|| path.strip_prefix("/beta"))
        else {
            return Resp::error(404, "NotFound", "Only /v1.0 and /beta are served.");
        };
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let Some(auth) = auth else {
            return Resp::error(401, "InvalidAuthenticationToken", "Access token is empty.");
        };
        if rest == "/$batch" && method == Method::POST {
            if let Some(refused) = inner.expired(auth) {
                return refused;
            }
            return inner.batch(Some(auth), &body);
        }
        let json_body = if body.is_empty() {
            None
        } else {
            serde_json::from_slice(&body).ok()
        };
        if !body.is_empty() && json_body.is_none() {
            return Resp::error(400, "BadRequest", "Unable to read JSON request payload.");
        }
        if beta {
            if let Some(refused) = inner.expired(auth) {
                return refused;
            }
            return inner.beta(&method, rest);
        }
        inner.graph(&method, rest, &query, Some(auth), json_body)
    })
    .await
    .unwrap_or_else(|_| Resp::error(500, "generalException", "the simulator panicked"));
    let mut resp = match r.raw {
        Some(raw) => (
            StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK),
            raw,
        )
            .into_response(),
        None if r.status == 204 => StatusCode::NO_CONTENT.into_response(),
        None => (
            StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK),
            [("content-type", "application/json")],
            serde_json::to_vec(&r.body).unwrap_or_default(),
        )
            .into_response(),
    };
    for (k, v) in r.headers {
        if let Ok(v) = v.parse() {
            resp.headers_mut().insert(k, v);
        }
    }
    resp
}

impl GraphSim {
    /// Starts a simulator on `listen` (e.g. `127.0.0.1:0`).
    pub async fn start(opts: SimOptions, listen: &str) -> std::io::Result<GraphSim> {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let inner = Arc::new(Inner {
            opts,
            data: Mutex::new(Data {
                users: Collection::default(),
                groups: Collection::default(),
                devices: Collection::default(),
                members: HashMap::new(),
                log: Vec::new(),
                seq: 0,
                selects: Vec::new(),
                tokens: HashMap::new(),
                next_id: 0,
                fault: None,
                policy: TenantPolicy::default(),
                owned: HashMap::new(),
            }),
            counter: AtomicU64::new(0),
            stats_tokens: AtomicU64::new(0),
            stats_requests: AtomicU64::new(0),
            stats_throttled: AtomicU64::new(0),
            stats_batches: AtomicU64::new(0),
            base: format!("http://{addr}"),
        });
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&inner));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(GraphSim {
            inner,
            addr,
            stop: Some(tx),
        })
    }

    /// `http://127.0.0.1:PORT`: both the `login_url` and the `graph_url` of a directory.
    pub fn url(&self) -> String {
        self.inner.base.clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn options(&self) -> &SimOptions {
        &self.inner.opts
    }

    pub fn stats(&self) -> Stats {
        Stats {
            token_requests: self.inner.stats_tokens.load(Ordering::Relaxed),
            graph_requests: self.inner.stats_requests.load(Ordering::Relaxed),
            throttled: self.inner.stats_throttled.load(Ordering::Relaxed),
            batches: self.inner.stats_batches.load(Ordering::Relaxed),
        }
    }

    /// Replaces the tenant's device and licensing settings (the pre-flight's knobs).
    pub fn set_policy(&self, p: TenantPolicy) {
        self.inner.lock().policy = p;
    }

    pub fn policy(&self) -> TenantPolicy {
        self.inner.lock().policy.clone()
    }

    /// Registers `n` devices owned by `user` (Entra devices, listed by `ownedDevices`).
    pub fn give_devices(&self, user: &str, n: usize) {
        let tag = {
            let mut d = self.inner.lock();
            d.next_id += 1;
            d.next_id
        };
        let ids: Vec<String> = (0..n as u64)
            .map(|i| sim_guid(0xfd00_0000, 3, (tag << 16) + i))
            .collect();
        for (i, id) in ids.iter().enumerate() {
            self.put(
                Res::Devices,
                json!({"id": id, "deviceId": id, "displayName": format!("OWNED-{tag}-{i}"),
                    "operatingSystem": "Windows", "trustType": "AzureAd", "accountEnabled": true}),
            );
        }
        self.inner
            .lock()
            .owned
            .entry(user.to_string())
            .or_default()
            .extend(ids);
    }

    pub fn set_fault(&self, f: Option<Fault>) {
        self.inner.lock().fault = f;
    }

    /// Adds (or replaces) an object; `id` is required. Users and groups get their
    /// `securityIdentifier` from the id unless given.
    pub fn put(&self, r: Res, mut o: Value) {
        let Some(id) = o["id"].as_str().map(str::to_string) else {
            return;
        };
        if r != Res::Devices
            && o.get("securityIdentifier").is_none()
            && let Ok(sid) = entra_sid_from_object_id(&id)
        {
            o["securityIdentifier"] = Value::String(sid);
        }
        let Value::Object(m) = o else { return };
        let mut d = self.inner.lock();
        let c = d.coll(r);
        match c.at.get(&id) {
            Some(&i) => c.objects[i] = Some(m),
            None => {
                c.at.insert(id.clone(), c.objects.len());
                c.objects.push(Some(m));
            }
        }
        d.record(r, &id, Change::Upsert);
    }

    /// Deletes an object: soft (`@removed: changed`, restorable) or for good (`deleted`).
    pub fn delete(&self, r: Res, id: &str, soft: bool) {
        let mut d = self.inner.lock();
        let c = d.coll(r);
        if let Some(i) = c.at.remove(id) {
            c.objects[i] = None;
        }
        for m in d.members.values_mut() {
            m.retain(|x| x != id);
        }
        d.record(
            r,
            id,
            Change::Removed(if soft { "changed" } else { "deleted" }),
        );
    }

    pub fn set_members(&self, group: &str, members: Vec<String>) {
        let mut d = self.inner.lock();
        d.members.insert(group.to_string(), members);
        d.record(Res::Groups, group, Change::Upsert);
    }

    pub fn object(&self, r: Res, id: &str) -> Option<Value> {
        self.inner
            .lock()
            .coll_ref(r)
            .get(id)
            .cloned()
            .map(Value::Object)
    }

    /// Every live object of a kind.
    pub fn objects(&self, r: Res) -> Vec<Value> {
        self.inner
            .lock()
            .coll_ref(r)
            .objects
            .iter()
            .flatten()
            .cloned()
            .map(Value::Object)
            .collect()
    }

    pub fn members(&self, group: &str) -> Vec<String> {
        self.inner
            .lock()
            .members
            .get(group)
            .cloned()
            .unwrap_or_default()
    }

    /// Fills the tenant with `users` users (`user{i}@{domain}`), `groups` groups of up to 50
    /// members and `devices` devices, deterministically; `tag` tells tenants' ids apart.
    pub fn populate(&self, tag: u32, users: u64, groups: u64, devices: u64) {
        let domain = self.inner.opts.domain.clone();
        let mut guard = self.inner.lock();
        let d = &mut *guard;
        let mut user_ids = Vec::with_capacity(users as usize);
        for i in 0..users {
            let id = sim_guid(tag, 1, i);
            let upn = format!("user{i}@{domain}");
            let mut o = Map::new();
            o.insert("id".into(), json!(id));
            o.insert("displayName".into(), json!(format!("User {i}")));
            o.insert("givenName".into(), json!("User"));
            o.insert("surname".into(), json!(i.to_string()));
            o.insert("userPrincipalName".into(), json!(upn));
            o.insert("mail".into(), json!(upn));
            o.insert("mailNickname".into(), json!(format!("user{i}")));
            o.insert("employeeId".into(), json!(format!("E{i:07}")));
            o.insert("accountEnabled".into(), json!(true));
            o.insert("proxyAddresses".into(), json!([format!("SMTP:{upn}")]));
            o.insert("onPremisesSecurityIdentifier".into(), Value::Null);
            o.insert("onPremisesImmutableId".into(), Value::Null);
            o.insert(
                "securityIdentifier".into(),
                json!(entra_sid_from_object_id(&id).unwrap_or_default()),
            );
            d.users.at.insert(id.clone(), d.users.objects.len());
            d.users.objects.push(Some(o));
            user_ids.push(id);
        }
        for g in 0..groups {
            let id = sim_guid(tag, 2, g);
            let mut o = Map::new();
            o.insert("id".into(), json!(id));
            o.insert("displayName".into(), json!(format!("Group {g}")));
            o.insert("mailNickname".into(), json!(format!("group{g}")));
            o.insert("securityEnabled".into(), json!(true));
            o.insert("mailEnabled".into(), json!(false));
            o.insert(
                "securityIdentifier".into(),
                json!(entra_sid_from_object_id(&id).unwrap_or_default()),
            );
            d.groups.at.insert(id.clone(), d.groups.objects.len());
            d.groups.objects.push(Some(o));
            let n = user_ids.len() as u64;
            if n > 0 {
                let m: Vec<String> = (0..50.min(n))
                    .map(|k| user_ids[((g * 37 + k * 101) % n) as usize].clone())
                    .collect();
                let mut m2 = m.clone();
                m2.sort();
                m2.dedup();
                d.members.insert(id.clone(), m2);
            }
        }
        for i in 0..devices {
            let id = sim_guid(tag, 3, i);
            let mut o = Map::new();
            o.insert("id".into(), json!(id));
            o.insert("deviceId".into(), json!(sim_guid(tag, 4, i)));
            o.insert("displayName".into(), json!(format!("PC-{i:05}")));
            o.insert("operatingSystem".into(), json!("Windows"));
            o.insert("operatingSystemVersion".into(), json!("10.0.22631.4460"));
            o.insert("trustType".into(), json!("AzureAd"));
            o.insert("accountEnabled".into(), json!(true));
            d.devices.at.insert(id.clone(), d.devices.objects.len());
            d.devices.objects.push(Some(o));
        }
    }
}

impl Drop for GraphSim {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}
