//! `kind = "graph"`: Microsoft Entra ID tenants through Microsoft Graph v1.0. One file per concern:
//! `signin.rs`, `http.rs` (requests, throttling, pages), `batch.rs`, `import.rs`, `export.rs`,
//! `preflight.rs` (the tenant pre-flight's reads).
//!
//! * **Sign-in**: OAuth 2.0 client credentials at `{login}/{tenant}/oauth2/v2.0/token`, scope
//!   `{graph}/.default`, with a client secret or a PS256 client assertion signed by the app's
//!   certificate key. The token is cached until a minute before `expires_in`; a 401 drops it.
//!   AADSTS errors are shown with their code and what to do about them.
//! * **Full import**: per object type, first the current deltaLink (`/delta?$deltaToken=latest`,
//!   "sync from now"), then the list (`$select` of the attributes ferry uses, `$top=999`),
//!   following `@odata.nextLink` verbatim. Group members are read with `$batch` (20 groups per
//!   round trip). Taking the deltaLink first means a change made during the listing is replayed by
//!   the next delta rather than lost (replays are harmless).
//! * **Delta import**: the stored deltaLinks; `@removed` objects (soft-deleted or gone) leave the
//!   translation table; groups that changed have their members read again. `410 Gone` or an
//!   expired token (`syncStateNotFound`) falls back to a full import.
//! * **Throttling**: 429 and 503 wait `Retry-After` (decimal seconds or an HTTP date), otherwise an
//!   exponential backoff with jitter; at most `max_attempts` tries. Every throttle is a warning in
//!   the cycle's message log; `$batch` items answered 429 are retried in a later batch.
//! * **Export**: creates users (with a generated initial password that must be changed at first
//!   sign-in, handed back to the engine, never logged) and security groups, updates attributes,
//!   and adds or removes group members, all through `$batch`.

use crate::*;
use ferry_core::config::GraphDirectory;
use ferry_core::model::AttrRef;
use ferry_core::plan::AttrChange;
use ferry_core::sid::entra_sid_from_object_id;
use reqwest::{Method, StatusCode, header::HeaderMap};
use rustc_hash::{FxHashMap, FxHashSet};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

mod batch;
mod export;
mod http;
mod import;
mod preflight;
mod signin;

use batch::*;
use http::*;

pub use http::{GraphCounts, STATS, parse_retry_after};

/// Properties read per object type ("returned only on `$select`" ones included).
const USER_SELECT: &str = "id,displayName,userPrincipalName,mail,securityIdentifier,onPremisesSecurityIdentifier,onPremisesImmutableId,employeeId,proxyAddresses,accountEnabled,givenName,surname,mailNickname";
const GROUP_SELECT: &str = "id,displayName,mail,mailNickname,securityEnabled,mailEnabled,securityIdentifier,onPremisesSecurityIdentifier";
const DEVICE_SELECT: &str =
    "id,deviceId,displayName,operatingSystem,operatingSystemVersion,trustType,accountEnabled";
/// A page chain longer than this is treated as a server that never ends.
const MAX_PAGES: usize = 200_000;
/// Graph's `$batch` limit.
const BATCH: usize = 20;

pub struct GraphConnector {
    cfg: GraphDirectory,
    base: PathBuf,
    secret: Option<Secret>,
    http: reqwest::Client,
    token: tokio::sync::Mutex<Option<(Secret, Instant)>>,
    /// Throttle warnings not yet handed to a cycle.
    throttles: Mutex<Vec<LogEntry>>,
    retries: AtomicU64,
}

impl std::fmt::Debug for GraphConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphConnector")
            .field("name", &self.cfg.name)
            .field("tenant_id", &self.cfg.tenant_id)
            .field("client_id", &self.cfg.client_id)
            .finish_non_exhaustive()
    }
}

/// One directory object as Graph sends it (users, groups, devices, delta items, members).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct GObject {
    id: String,
    #[serde(rename = "@odata.type")]
    odata_type: Option<String>,
    #[serde(rename = "@removed")]
    removed: Option<Removed>,
    display_name: Option<String>,
    user_principal_name: Option<String>,
    mail: Option<String>,
    security_identifier: Option<String>,
    on_premises_security_identifier: Option<String>,
    on_premises_immutable_id: Option<String>,
    employee_id: Option<String>,
    proxy_addresses: Option<Vec<String>>,
    account_enabled: Option<bool>,
    given_name: Option<String>,
    surname: Option<String>,
    mail_nickname: Option<String>,
    security_enabled: Option<bool>,
    mail_enabled: Option<bool>,
    device_id: Option<String>,
    operating_system: Option<String>,
    operating_system_version: Option<String>,
    trust_type: Option<String>,
    #[serde(rename = "members@delta")]
    members_delta: Option<Vec<GObject>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Removed {
    reason: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Page {
    #[serde(rename = "@odata.nextLink")]
    next_link: Option<String>,
    #[serde(rename = "@odata.deltaLink")]
    delta_link: Option<String>,
    value: Vec<GObject>,
}

impl GraphConnector {
    /// `base` resolves `certificate_file` / `private_key_file`; `secret` is the resolved client
    /// secret (none with a certificate).
    pub fn new(cfg: GraphDirectory, base: &Path, secret: Option<Secret>) -> GraphConnector {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
            .timeout(cfg.timeout.0)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        GraphConnector {
            cfg,
            base: base.to_path_buf(),
            secret,
            http,
            token: tokio::sync::Mutex::new(None),
            throttles: Mutex::new(Vec::new()),
            retries: AtomicU64::new(0),
        }
    }

    /// Retries made so far (throttled or failed requests sent again), for reports and benchmarks.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    fn url(&self, rel: &str) -> String {
        format!("{}/v1.0{rel}", self.cfg.graph_url())
    }
}

/// A URL without the host, for messages (`/v1.0/users?...`).
fn short(url: &str) -> &str {
    url.find("/v1.0").map_or(url, |i| &url[i..])
}

#[async_trait]
impl Connector for GraphConnector {
    async fn import(
        &self,
        kinds: &[ObjectKind],
        since: Option<&str>,
    ) -> Result<Imported, DirectoryError> {
        let links = since.and_then(|s| {
            serde_json::from_str::<std::collections::BTreeMap<String, String>>(s).ok()
        });
        let mut result = match links {
            Some(links) => match self.delta_import(kinds, links).await {
                Err(DirectoryError::DeltaReset { url }) => {
                    let mut full = self.full_import(kinds).await?;
                    full.logs.push(LogEntry::warning(
                        "delta-reset",
                        format!(
                            "the delta token of `{}` expired or was reset ({url}): a full import ran instead",
                            self.cfg.name
                        ),
                    ));
                    full
                }
                r => r?,
            },
            None => self.full_import(kinds).await?,
        };
        result.logs.extend(self.take_throttle_logs());
        Ok(result)
    }

    async fn export(
        &self,
        writes: &[Write],
        targets: &[DirObject],
    ) -> Result<ExportReport, DirectoryError> {
        self.export_writes(writes, targets).await
    }

    async fn test(&self) -> Result<TestReport, DirectoryError> {
        let mut checks = Vec::new();
        self.access_token().await?;
        checks.push(format!(
            "signed in to tenant {} as application {} at {}",
            self.cfg.tenant_id,
            self.cfg.client_id,
            self.cfg.login_url()
        ));
        let mut counts = Vec::new();
        for &kind in &self.cfg.object_types {
            let (res, _) = Self::resource(kind);
            let url = self.url(&format!("/{res}/$count"));
            let a = self
                .send(Method::GET, &url, None, &[("ConsistencyLevel", "eventual")])
                .await?;
            if !a.status.is_success() {
                return Err(self.fail(&url, &a));
            }
            let n = String::from_utf8_lossy(&a.body)
                .trim()
                .trim_start_matches('\u{feff}')
                .parse::<u64>()
                .unwrap_or(0);
            checks.push(format!("can read {res} ({n})"));
            counts.push((kind, n));
        }
        Ok(TestReport {
            ok: true,
            checks,
            counts,
        })
    }

    fn supports_delta(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::export::*;
    use super::signin::*;
    use super::*;

    #[test]
    fn retry_after_decimal_and_http_date() {
        assert_eq!(
            parse_retry_after("2.128"),
            Some(Duration::from_millis(2128))
        );
        assert_eq!(parse_retry_after("0.1"), Some(Duration::from_millis(100)));
        assert_eq!(parse_retry_after(" 3 "), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after("soon"), None);
        // A date in the past means "now".
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        let later = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(30);
        let s = jiff::fmt::rfc2822::to_string(&later.to_zoned(jiff::tz::TimeZone::UTC)).unwrap();
        let d = parse_retry_after(&s).unwrap();
        assert!(
            d > Duration::from_secs(25) && d <= Duration::from_secs(30),
            "{d:?}"
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        for a in 1..20 {
            let d = backoff(a);
            assert!(d <= Duration::from_secs(30), "{a}: {d:?}");
        }
        assert!(backoff(1) <= Duration::from_secs(1));
        assert!(backoff(6) >= Duration::from_secs(15));
    }

    #[test]
    fn initial_passwords_are_complex_and_different() {
        let a = initial_password();
        let b = initial_password();
        assert_ne!(a.expose(), b.expose());
        let p = a.expose();
        assert_eq!(p.len(), 20);
        assert!(p.chars().any(|c| c.is_ascii_uppercase()));
        assert!(p.chars().any(|c| c.is_ascii_lowercase()));
        assert!(p.chars().any(|c| c.is_ascii_digit()));
        assert!(p.chars().any(|c| !c.is_ascii_alphanumeric()));
        assert!(!format!("{a:?}").contains(p));
    }

    #[test]
    fn documented_bodies_parse() {
        // The paged users example of Microsoft's paging walkthrough.
        let page: Page = serde_json::from_str(r#"{
          "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users",
          "@odata.nextLink": "https://graph.microsoft.com/v1.0/users?$top=3&$skiptoken=X%2744537074020001000000223A416C657857404D333635783939353035322E4F6E4D6963726F736F66742E636F6D29557365725F33613166623664392D373666342D346233352D623139332D333764643136373530396233B900000000000000000000%27",
          "value": [ { "id": "c25b1eaf-eb49-4f66-90a1-aa41be4d993a", "displayName": "Adele Vance", "...": "..." } ]
        }"#).unwrap();
        assert!(page.next_link.as_deref().unwrap().ends_with("%27"));
        let o = GraphConnector::to_object(ObjectKind::User, page.value.into_iter().next().unwrap());
        assert_eq!(o.name, "Adele Vance");
        assert_eq!(
            o.sid.as_deref(),
            entra_sid_from_object_id("c25b1eaf-eb49-4f66-90a1-aa41be4d993a")
                .ok()
                .as_deref()
        );
        // Devices (device-list).
        let page: Page = serde_json::from_str(r#"{"value": [{"accountEnabled": false, "deviceId": "4c299165-6e8f-4b45-a5ba-c5d250a707ff",
            "displayName": "Test device", "id": "id-value", "operatingSystem": "linux", "operatingSystemVersion": "1"}]}"#).unwrap();
        let d =
            GraphConnector::to_object(ObjectKind::Device, page.value.into_iter().next().unwrap());
        assert_eq!(
            d.attr("deviceId"),
            Some("4c299165-6e8f-4b45-a5ba-c5d250a707ff")
        );
        assert_eq!(d.attr("accountEnabled"), Some("false"));
        assert_eq!(d.sid, None);
        // Users delta, first page: a removed item among changed ones.
        let page: Page = serde_json::from_str(r#"{
          "@odata.context":"https://graph.microsoft.com/v1.0/$metadata#users(displayName,givenName,surname)",
          "@odata.nextLink":"https://graph.microsoft.com/v1.0/users/delta?$skiptoken=oEBwdSP6uehIAxQOWq_3Ksh_TLol6KIm3stvdc6hGhZRi1hQ7Spe__dpvm3U4zReE4CYXC2zOtaKdi7KHlUtC2CbRiBIUwOxPKLa",
          "value": [
            { "displayName":"Cameron White", "givenName":"Cameron", "surname":"White", "id":"ffff7b1a-13b6-477b-8c0c-380905cd99f7" },
            { "id": "86462606-fde0-4fc4-9e0c-a20eb73e54c6", "@removed": { "reason": "deleted" } },
            { "displayName": "Conf Room Adams", "id": "6ea91a8d-e32e-41a1-b7bd-d2d185eed0e0" }
          ]
        }"#).unwrap();
        assert_eq!(page.value.len(), 3);
        assert_eq!(page.value[1].removed.as_ref().unwrap().reason, "deleted");
        assert!(page.delta_link.is_none());
        // Users delta, final page.
        let page: Page = serde_json::from_str(r#"{
          "@odata.context":"https://graph.microsoft.com/v1.0/$metadata#users",
          "@odata.deltaLink":"https://graph.microsoft.com/v1.0/users/delta?$deltatoken=oEcOySpF_hWYmTIUZBOIfPzcwisr_rPe8o9M54L45qEXQGmvQC6T2dbL-9O7nSU-njKhFiGlAZqewNAThmCVnNxqPu5gOBegrm1CaVZ-ZtFZ2tPOAO98OD9y0ao460",
          "value": [ { "displayName":"Lidia Holloway", "givenName":"Lidia", "surname":"Holloway", "id":"25dcffff-959e-4ece-9973-e5d9b800e8cc" } ]
        }"#).unwrap();
        assert!(page.delta_link.unwrap().contains("$deltatoken="));
        // Groups delta with members@delta.
        let page: Page = serde_json::from_str(r##"{
          "@odata.context":"https://graph.microsoft.com/v1.0/$metadata#groups",
          "@odata.deltaLink":"https://graph.microsoft.com/v1.0/groups/delta?$deltatoken=sZwAFZibx-LQOdZIo1hHhmmDhHzCY0Hs6snoIHJCSIfCHdqKdWNZ2VX3kErpyna9GygROwBk-rqWWMFxJC3pw",
          "value": [ { "displayName": "TestGroup3", "description": "A test group for change tracking", "id": "2e5807ce-58f3-4a94-9b37-ffff2e085957",
              "members@delta": [
                { "@odata.type": "#microsoft.graph.user", "id": "632f6bb2-3ec8-4c1f-9073-0027a8c6859", "@removed": { "reason": "deleted" } },
                { "@odata.type": "#microsoft.graph.user", "id": "37de1ae3-408f-4702-8636-20824abda004" } ] } ]
        }"##).unwrap();
        let m = page.value[0].members_delta.as_ref().unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].odata_type.as_deref(), Some("#microsoft.graph.user"));
        assert!(m[0].removed.is_some() && m[1].removed.is_none());
        // The throttling sample body and the batch error body give their code and message.
        let (code, msg) = graph_error_parts(br#"{"error": {"code": "TooManyRequests", "innerError": {"code": "429", "date": "2020-08-18T12:51:51",
            "message": "Please retry after", "request-id": "94fb3b52-452a-4535-a601-69e0a90e3aa2", "status": "429"}, "message": "Please retry again later."}}"#);
        assert_eq!(
            (code.as_str(), msg.as_str()),
            ("TooManyRequests", "Please retry again later.")
        );
        let body: Value = serde_json::from_str(r#"{ "error": { "code": "Authorization_RequestDenied",
            "message": "Insufficient privileges to complete the operation.",
            "innerError": { "date": "2025-02-13T10:17:06", "request-id": "93b6f17e-c05d-4f45-ad2a-6665c708d8a0" } } }"#).unwrap();
        assert_eq!(
            batch_error(403, &body),
            "HTTP 403 Authorization_RequestDenied: Insufficient privileges to complete the operation."
        );
    }

    #[test]
    fn documented_token_answers() {
        // Success (any credential type), verbatim from the Entra doc.
        let (t, life) = read_token_answer(
            StatusCode::OK,
            br#"{"token_type": "Bearer", "expires_in": 3599, "access_token": "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiIsIng1dCI6Ik1uQ19WWmNBVGZNNXBP..."}"#,
        )
        .unwrap();
        assert_eq!(life, 3599);
        assert!(t.expose().starts_with("eyJ0eXAi"));
        assert!(!format!("{t:?}").contains("eyJ0eXAi"), "a token in Debug");
        // The documented 400.
        let (code, detail) = read_token_answer(
            StatusCode::BAD_REQUEST,
            br#"{
  "error": "invalid_scope",
  "error_description": "AADSTS70011: The provided value for the input parameter 'scope' is not valid. The scope https://foo.microsoft.com/.default is not valid.\r\nTrace ID: 255d1aef-8c98-452f-ac51-23d051240864\r\nCorrelation ID: fb3d2015-bc17-4bb9-bb85-30c5cf1aaaa7\r\nTimestamp: 2016-01-09 02:02:12Z",
  "error_codes": [70011],
  "timestamp": "YYYY-MM-DD HH:MM:SSZ",
  "trace_id": "255d1aef-8c98-452f-ac51-23d051240864",
  "correlation_id": "fb3d2015-bc17-4bb9-bb85-30c5cf1aaaa7"
}"#,
        )
        .unwrap_err();
        assert_eq!(code, "AADSTS70011");
        assert!(detail.starts_with("the scope is not valid"), "{detail}");
        assert!(detail.contains("The scope https://foo.microsoft.com/.default is not valid."));
        assert!(
            !detail.contains("Trace ID"),
            "only the first line: {detail}"
        );
        // Not JSON (a proxy's error page).
        let (code, detail) =
            read_token_answer(StatusCode::BAD_GATEWAY, b"<html>bad gateway</html>").unwrap_err();
        assert_eq!(code, "HTTP 502");
        assert!(detail.contains("did not answer JSON: <html>"), "{detail}");
    }

    #[test]
    fn documented_batch_answer() {
        // The batching page's response example (abridged there too), plus a throttled item.
        let v: Value = serde_json::from_str(r#"{
  "responses": [
    { "id": "3", "status": 403,
      "headers": { "Cache-Control": "no-cache", "x-ms-resource-unit": "1", "Content-Type": "application/json" },
      "body": { "error": { "code": "Authorization_RequestDenied",
                           "message": "Insufficient privileges to complete the operation.",
                           "innerError": { "date": "2025-02-13T10:17:06", "request-id": "93b6f17e-c05d-4f45-ad2a-6665c708d8a0",
                                           "client-request-id": "e70c5c1b-8b47-68c0-3171-3d22f5e0bd54" } } } },
    { "id": "5", "status": 200,
      "headers": { "Cache-Control": "no-cache", "x-ms-resource-unit": "1", "OData-Version": "4.0",
                   "Content-Type": "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8" },
      "body": { "@odata.context": "https://graph.microsoft.com/beta/$metadata#users(id,displayName,userPrincipalName)",
                "@odata.count": 36,
                "value": [ { "id": "10a1d484-cd1a-4162-a5a4-832370bac356", "displayName": "Lynne Robbins", "userPrincipalName": "LynneR@contoso.com" } ] } },
    { "id": "7", "status": 429, "headers": { "Retry-After": "2.128" }, "body": {} },
    { "id": "not-ours", "status": 200, "body": {} }
  ]
}"#).unwrap();
        let items = batch_items(v);
        assert_eq!(items.len(), 3);
        assert_eq!((items[0].index, items[0].status), (3, 403));
        assert_eq!(
            batch_error(items[0].status, &items[0].body),
            "HTTP 403 Authorization_RequestDenied: Insufficient privileges to complete the operation."
        );
        let page: Page = serde_json::from_value(items[1].body.clone()).unwrap();
        assert_eq!(
            page.value[0].user_principal_name.as_deref(),
            Some("LynneR@contoso.com")
        );
        assert_eq!(items[2].retry_after, Some(Duration::from_millis(2128)));
        assert!(items[0].retry_after.is_none());
        assert!(batch_items(json!({"error": "x"})).is_empty());
    }

    #[test]
    fn aadsts_codes_have_meanings() {
        assert!(aadsts_meaning(7000215).contains("client secret"));
        assert!(aadsts_meaning(90002).contains("tenant"));
        assert!(aadsts_meaning(700016).contains("client_id"));
        assert!(aadsts_meaning(1).contains("description"));
    }

    #[test]
    fn writes_use_graph_names() {
        assert_eq!(graph_attr("name").as_deref(), Some("displayName"));
        assert_eq!(graph_attr("upn").as_deref(), Some("userPrincipalName"));
        assert_eq!(graph_attr("employeeId").as_deref(), Some("employeeId"));
        assert_eq!(graph_attr("proxyAddresses"), None);
        assert_eq!(graph_attr("sid"), None);
        assert_eq!(
            graph_value("accountEnabled", &["TRUE".into()]),
            Value::Bool(true)
        );
        assert_eq!(nickname("Ann O'Neil@x"), "AnnONeil");
    }
}
