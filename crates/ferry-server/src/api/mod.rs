//! The REST API under `/api/v1`. Each resource module exposes `router()`; [`router`] composes them.
//! Errors are one type, [`ApiError`], answered as `{"error": "...", "status": N}`; details of 5xx
//! errors go to the log, never to the client.

use crate::state::AppState;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
pub use ferry_core::wire::ErrorBody;
use utoipa::OpenApi;

pub mod devices;
pub mod directories;
pub mod enrolment;
pub mod environments;
pub mod logs;
pub mod operators;
pub mod overrides;
pub mod preflight;
pub mod report;
pub mod sessions;
pub mod setup;
pub mod sync;
pub mod translation;

tokio::task_local! {
    /// The id of the request being answered (set by the server's request layer).
    static REQUEST_ID: String;
}

/// A request's id: the client's `x-request-id` when it is a sane token (1–64 of `A–Z a–z 0–9 . _
/// : -`, as a proxy in front would set), otherwise 16 random hex digits. In the request's
/// extensions, its answer's `x-request-id` header, its error body and its log lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestId(pub String);

impl RequestId {
    pub fn of(headers: &axum::http::HeaderMap) -> RequestId {
        let given = headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| {
                (1..=64).contains(&v.len())
                    && v.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b".:_-".contains(&b))
            });
        RequestId(given.map_or_else(
            || {
                let mut b = [0u8; 8];
                let _ = getrandom::fill(&mut b);
                b.iter().map(|x| format!("{x:02x}")).collect()
            },
            str::to_string,
        ))
    }

    /// Runs `f` (the request's handling) with this id as the current request's.
    pub async fn scope<F: std::future::Future>(self, f: F) -> F::Output {
        REQUEST_ID.scope(self.0, f).await
    }
}

/// The id of the request being answered, inside its handling.
pub fn request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Internal(String),
    /// 429 with `Retry-After` (seconds): a sign-in lockout.
    #[error("{0}")]
    TooManyRequests(String, u64),
    /// 503 with `Retry-After` (seconds): the server is too busy to answer this now.
    #[error("{0}")]
    Unavailable(String, u64),
}

impl From<ferry_store::StoreError> for ApiError {
    fn from(e: ferry_store::StoreError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl From<crate::engine::EngineError> for ApiError {
    fn from(e: crate::engine::EngineError) -> Self {
        use crate::engine::EngineError::*;
        match e {
            UnknownProfile(_) => ApiError::NotFound(e.to_string()),
            Busy(_) => ApiError::Conflict(e.to_string()),
            Store(s) => s.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut retry_after = None;
        let (status, msg) = match self {
            ApiError::TooManyRequests(m, s) => {
                retry_after = Some(s.max(1));
                (StatusCode::TOO_MANY_REQUESTS, m)
            }
            ApiError::Unavailable(m, s) => {
                retry_after = Some(s.max(1));
                (StatusCode::SERVICE_UNAVAILABLE, m)
            }
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            ApiError::Unauthorized(m) => (StatusCode::UNAUTHORIZED, m),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, m),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, m),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, m),
            ApiError::Internal(m) => {
                tracing::error!(error = %m, "internal error answering a request");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error; see the server log".to_string(),
                )
            }
        };
        let mut r = (
            status,
            Json(ErrorBody {
                error: msg,
                status: status.as_u16(),
                request_id: request_id(),
            }),
        )
            .into_response();
        if let Some(s) = retry_after {
            r.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(s),
            );
        }
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        r
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// Refuses a body whose `name` is not the one in the URL.
pub fn same_name(body: &str, path: &str) -> ApiResult<()> {
    if body == path {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "name: `{body}` differs from the URL's `{path}`"
        )))
    }
}

/// The id the request layer (`observe`) gave this request; one of its own when the request
/// did not pass that layer.
pub fn request_id_of(parts: &axum::http::request::Parts) -> String {
    parts
        .extensions
        .get::<RequestId>()
        .cloned()
        .unwrap_or_else(|| RequestId::of(&parts.headers))
        .0
}

/// A query parameter that failed to parse, as a 400 naming the parameter.
pub fn bad_param(name: &str, value: &str, expected: &str) -> ApiError {
    ApiError::BadRequest(format!(
        "query parameter `{name}`: `{value}` is not valid; expected {expected}"
    ))
}

/// Rows an `offset` query parameter (the old paging) may skip at most. An `OFFSET` reads every
/// row it skips (1.4 s for a page in the middle of a million entries on PostgreSQL); deeper pages
/// are read with `after` (keyset paging), which the console uses everywhere.
pub const MAX_OFFSET: i64 = 10_000;

/// An `offset` query parameter `name`: a negative one as 0, one past [`MAX_OFFSET`] a 400 naming
/// it and saying how to page on.
pub fn offset_param(name: &str, v: i64) -> ApiResult<i64> {
    if v > MAX_OFFSET {
        return Err(bad_param(
            name,
            &v.to_string(),
            &format!("at most {MAX_OFFSET}; read deeper pages with `after` (keyset paging)"),
        ));
    }
    Ok(v.max(0))
}

/// A text query parameter that holds a NUL refused with a 400 naming it, on both backends alike:
/// PostgreSQL takes no NUL in a text parameter (the filter failed there with a 500), and no value
/// ferry stores holds one, so SQLite would only have found nothing.
pub fn text_param<'a>(name: &str, v: &'a Option<String>) -> ApiResult<Option<&'a str>> {
    match v.as_deref() {
        Some(t) if t.contains('\0') => Err(bad_param(
            name,
            &t.escape_debug().to_string(),
            "text without a NUL character",
        )),
        v => Ok(v),
    }
}

/// A list's `sort` parameter: one of `allowed` (the API's name of a column, and the store's), the
/// first when none is given; any other value is a 400 naming the parameter and the columns.
pub fn sort_param<T: Copy>(v: Option<&str>, allowed: &[(&str, T)]) -> ApiResult<T> {
    let Some(v) = v.filter(|v| !v.is_empty()) else {
        return Ok(allowed[0].1);
    };
    allowed
        .iter()
        .find(|(name, _)| *name == v)
        .map(|(_, c)| *c)
        .ok_or_else(|| {
            let names: Vec<&str> = allowed.iter().map(|(n, _)| *n).collect();
            bad_param("sort", v, &format!("one of {}", names.join(", ")))
        })
}

/// A list's `order` parameter: `asc` or `desc`, `default` when none is given.
pub fn order_param(
    v: Option<&str>,
    default: ferry_store::Direction,
) -> ApiResult<ferry_store::Direction> {
    match v.filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(v) => {
            ferry_store::Direction::parse(v).ok_or_else(|| bad_param("order", v, "asc or desc"))
        }
    }
}

/// What a list keyed by id sorts on before the id, and so what its `after=` carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortedBy {
    /// Nothing: the list is in id order, the token is the id alone.
    Id,
    /// A number (a time).
    Int,
    /// A text (a name, an address, a state).
    Text,
}

/// The `after=` of a list keyed by id: the id alone when the list is in id order, else the token
/// [`id_token`] wrote: the sort value of the previous page's last row and its id. A sort value of
/// another type than the list sorts on (a number for a host name, a text for a time: another
/// sort's token, or a forged one) is refused like any other token the server did not write;
/// PostgreSQL would refuse it as the parameter of the comparison.
pub fn id_cursor(
    token: Option<&str>,
    by: SortedBy,
) -> ApiResult<(Option<ferry_store::SortValue>, Option<i64>)> {
    use ferry_store::SortValue;
    let Some(t) = token.filter(|t| !t.is_empty()) else {
        return Ok((None, None));
    };
    let bad = || {
        bad_param(
            "after",
            t,
            "the `X-Next-After` of a previous page of the same sort, as the server gave it",
        )
    };
    if by == SortedBy::Id {
        return t
            .parse::<i64>()
            .map(|id| (None, Some(id)))
            .map_err(|_| bad());
    }
    let parts: Vec<serde_json::Value> = serde_json::from_str(t).map_err(|_| bad())?;
    let [v, id] = parts.as_slice() else {
        return Err(bad());
    };
    // A NUL is in no value the server wrote (PostgreSQL refuses one as a parameter).
    let value = match (by, SortValue::from_json(v)) {
        (SortedBy::Int, Some(v @ SortValue::Int(_))) => v,
        (SortedBy::Text, Some(SortValue::Text(t))) if !t.contains('\0') => SortValue::Text(t),
        _ => return Err(bad()),
    };
    Ok((Some(value), Some(id.as_i64().ok_or_else(bad)?)))
}

/// The `after=` of the page following a full page whose last row is `id` with the sort value
/// `value` (none: the list is in id order).
pub fn id_token(value: Option<ferry_store::SortValue>, id: i64) -> String {
    match value {
        None => id.to_string(),
        Some(v) => ascii_json(&serde_json::json!([v.json(), id])),
    }
}

/// JSON with every character past ASCII escaped (`\u00d8`; pairs past the BMP), and DEL, the one
/// ASCII control character serde_json leaves as it is, so that a token holding any name is a
/// valid HTTP header value (a host name a device chose included); JSON parsers read it back as
/// written.
fn ascii_json(v: &serde_json::Value) -> String {
    let mut out = String::new();
    for c in v.to_string().chars() {
        if c.is_ascii() && c != '\x7f' {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
}

/// A CSV file of a filtered list: `header`, then `rows`, with `X-Total-Count` (what the filters
/// find in all). Cells a spreadsheet would take for a formula (starting with `=`, `+`, `-`, `@`,
/// a tab or a carriage return) are written with a `'` before them, so that opening an export of
/// names or messages someone else chose runs nothing (OWASP's CSV injection advice).
pub fn csv_response(
    file_name: &str,
    total: i64,
    header: &[&str],
    rows: impl Iterator<Item = Vec<String>>,
) -> ApiResult<axum::response::Response> {
    use axum::http::header as h;
    use axum::response::IntoResponse;
    let err = |e: String| ApiError::Internal(format!("{file_name} export: {e}"));
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(header).map_err(|e| err(e.to_string()))?;
    for row in rows {
        w.write_record(row.iter().map(|c| csv_cell(c).into_owned()))
            .map_err(|e| err(e.to_string()))?;
    }
    let body = w.into_inner().map_err(|e| err(e.to_string()))?;
    Ok((
        [
            (h::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                h::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file_name}\""),
            ),
            (
                h::HeaderName::from_static("x-total-count"),
                total.to_string(),
            ),
        ],
        body,
    )
        .into_response())
}

/// A CSV cell that no spreadsheet reads as a formula ([`csv_response`]).
pub fn csv_cell(c: &str) -> std::borrow::Cow<'_, str> {
    if c.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{c}").into()
    } else {
        c.into()
    }
}

/// A list's headers: `X-Total-Count` (what the filters find in all) and, on a full page,
/// `X-Next-After` (the `after=` of the next page).
pub fn list_headers(total: i64, next: Option<String>) -> axum::http::HeaderMap {
    let mut h = axum::http::HeaderMap::new();
    h.insert("x-total-count", total.into());
    // Tokens are ASCII JSON (`id_token`), valid header values; were one not, the header is left
    // out and the list ends there rather than failing.
    if let Some(v) = next.and_then(|n| axum::http::HeaderValue::from_str(&n).ok()) {
        h.insert("x-next-after", v);
    }
    h
}

#[derive(OpenApi)]
#[openapi(
    info(title = "ferry", description = "ferry's admin API: directories, sync profiles and cycles, the What-If, the translation table, message logs, the single object report, bulk enrolment tokens, devices (pre-shared keys, agents, runbooks, batches, reports). Agents call the separate TLS agent endpoint (docs/agent-protocol.md)."),
    paths(
        directories::list, directories::test, setup::put_directory, setup::delete_directory,
        enrolment::upload, enrolment::list, enrolment::revoke,
        devices::create_psk, devices::list_psks, devices::retire_psk, devices::agent_endpoint,
        devices::enrollment_requests, devices::approve_enrollment, devices::refuse_enrollment,
        devices::agents, devices::agents_export, devices::agent, devices::agent_log, devices::failed, devices::failed_export,
        devices::runbooks, devices::put_runbook, devices::delete_runbook,
        devices::batches, devices::put_batch, devices::delete_batch, devices::computers, devices::computers_export,
        devices::whatif, devices::progress, devices::resume_batch,
        preflight::directory, preflight::batch,
        sync::profiles, setup::put_profile, setup::delete_profile, overrides::list, overrides::add, overrides::remove, overrides::import, sync::run, sync::whatif, sync::whatif_export, sync::approve, sync::cycles, sync::cycle,
        translation::list, translation::export,
        logs::list, logs::export,
        report::object,
        sessions::create_operator, operators::list, operators::remove, operators::rotate, sessions::me, sessions::sign_in, sessions::sign_out, environments::tenants, environments::put_tenant,
        environments::environments, environments::get_environment, environments::put_environment,
        environments::records, environments::add_records,
        environments::submit, environments::moves, environments::approvals, environments::approve,
        environments::reject, environments::upload_mapping, environments::prepare, environments::status,
        environments::errors, environments::migrate, environments::cancel, environments::delete_move, environments::audit_trail, environments::audit_export,
    ),
    components(schemas(ErrorBody)),
    modifiers(&BearerAuth, &CommonResponses, &ViewsOfStrictTypes),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The answers an operation gives before its handler runs (the token and the role are checked,
/// the path, query and body parsed), added to each operation that does not list them itself, so
/// that the document gives every status a client can see (the API fuzzer, tests/api_fuzz.rs,
/// holds every answer to it).
struct CommonResponses;

/// Operations that any operator may call (`Operator`, a GET or signing out): no role is refused.
const ANY_ROLE: &[&str] = &[
    "me",
    "sign_out",
    "tenants",
    "environments",
    "get_environment",
    "records",
    "moves",
    "approvals",
    "status",
    "audit_trail",
];

/// Operations that read their body as bytes and parse it themselves (a 400 saying what is wrong):
/// no 415 or 422.
const RAW_BODY: &[&str] = &["put_directory", "put_profile", "upload_mapping", "import"];

impl utoipa::Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let secured_by_default = openapi.security.as_ref().is_some_and(|s| !s.is_empty());
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        for item in openapi.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                let id = op.operation_id.clone().unwrap_or_default();
                // `security: [{}]`: no token needed.
                let secured = match &op.security {
                    Some(reqs) => reqs.iter().any(|r| {
                        serde_json::to_value(r)
                            .is_ok_and(|v| v.as_object().is_some_and(|o| !o.is_empty()))
                    }),
                    None => secured_by_default,
                };
                let json_body = matches!(&op.request_body, Some(utoipa::openapi::RefOr::T(b))
                    if b.content.keys().any(|c| c == "application/json"));
                let mut add = |status: &str, description: &str| {
                    op.responses
                        .responses
                        .entry(status.to_string())
                        .or_insert_with(|| error(description).into());
                };
                if secured {
                    add(
                        "401",
                        "no token, or one that is not valid (`WWW-Authenticate: Bearer`)",
                    );
                    if !ANY_ROLE.contains(&id.as_str()) {
                        add(
                            "403",
                            "the caller's role may not do this: a tenant admin outside their tenant's environments and moves, a viewer changing anything",
                        );
                    }
                }
                if op.parameters.as_ref().is_some_and(|p| !p.is_empty())
                    || op.request_body.is_some()
                {
                    add(
                        "400",
                        "a path or query parameter, or the body, that does not parse",
                    );
                }
                if op.request_body.is_some() {
                    add("413", "a body over the size limit");
                    if json_body && !RAW_BODY.contains(&id.as_str()) {
                        add("415", "a body without `Content-Type: application/json`");
                        add(
                            "422",
                            "JSON that is not the body's schema: the field, and why",
                        );
                    }
                }
            }
        }
    }
}

/// A view that flattens a type the API also takes as a body (`#[serde(flatten)]` of a type with
/// `deny_unknown_fields`) is written by utoipa as `allOf: [that type, the view's own fields]`,
/// and that type's `additionalProperties: false` then forbids the view's own fields: no answer
/// could conform (the API fuzzer caught it on every BatchView). The part is inlined here without
/// `additionalProperties`; the type's own schema, for the request body, stays strict.
struct ViewsOfStrictTypes;

impl utoipa::Modify for ViewsOfStrictTypes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::RefOr;
        use utoipa::openapi::schema::{AdditionalProperties, Schema};
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        let strict: std::collections::BTreeMap<String, Schema> = components
            .schemas
            .iter()
            .filter_map(|(name, s)| match s {
                RefOr::T(Schema::Object(o))
                    if matches!(
                        o.additional_properties.as_deref(),
                        Some(AdditionalProperties::FreeForm(false))
                    ) =>
                {
                    let mut o = o.clone();
                    o.additional_properties = None;
                    Some((format!("#/components/schemas/{name}"), Schema::Object(o)))
                }
                _ => None,
            })
            .collect();
        for s in components.schemas.values_mut() {
            if let RefOr::T(Schema::AllOf(all)) = s {
                for part in &mut all.items {
                    if let RefOr::Ref(r) = part
                        && let Some(open) = strict.get(&r.ref_location)
                    {
                        *part = RefOr::T(open.clone());
                    }
                }
            }
        }
    }
}

/// The OpenAPI document as pretty JSON (committed as docs/openapi.json).
pub fn openapi_json() -> String {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc.servers = Some(vec![utoipa::openapi::Server::new("/api/v1")]);
    doc.to_pretty_json().unwrap_or_default() + "\n"
}

/// Axum's own refusals of a request (a body that is not JSON, or not the JSON a handler takes;
/// a missing content type; a path or query that does not parse) come as plain text: they are
/// answered with the documented error body instead, keeping their message (serde's says the
/// line and column).
async fn json_refusals(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    let plain = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"));
    if !(status.is_client_error() && plain) {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = match axum::body::to_bytes(body, 64 * 1024).await {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(_) => String::new(),
    };
    let mut r = (
        status,
        Json(ErrorBody {
            error: if text.is_empty() {
                status.canonical_reason().unwrap_or("refused").to_string()
            } else {
                text
            },
            status: status.as_u16(),
            request_id: request_id(),
        }),
    )
        .into_response();
    for (k, v) in parts.headers.iter() {
        if k != axum::http::header::CONTENT_TYPE && k != axum::http::header::CONTENT_LENGTH {
            r.headers_mut().insert(k, v.clone());
        }
    }
    r
}

pub fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .merge(directories::router())
        .merge(setup::router())
        .merge(enrolment::router())
        .merge(devices::router())
        .merge(environments::router())
        .merge(sessions::router())
        .merge(operators::router())
        .merge(sync::router())
        .merge(overrides::router())
        .merge(translation::router())
        .merge(logs::router())
        .merge(report::router())
        .merge(preflight::router())
        .route(
            "/openapi.json",
            axum::routing::get(|| async {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    openapi_json(),
                )
            }),
        )
        .layer(axum::middleware::from_fn(json_refusals))
}

/// A JSON request body that must be an object: axum's `Json` (content type, size limit, serde's
/// message with line and column), but a body that is not a JSON object is refused with 422 —
/// serde would read a struct from an array of its fields in order, so `[]` was taken as a body
/// of defaults (found by the API fuzzer).
pub struct Object<T>(pub T);

fn not_an_object(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b != b'{')
}

impl<S, T> axum::extract::FromRequest<S> for Object<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned,
{
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Response> {
        let json = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .is_some_and(|m| {
                m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
            });
        if !json {
            return Err((
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Expected request with `Content-Type: application/json`",
            )
                .into_response());
        }
        let bytes = <axum::body::Bytes as axum::extract::FromRequest<S>>::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        if not_an_object(&bytes) {
            return Err((
                StatusCode::UNPROCESSABLE_ENTITY,
                "Failed to deserialize the JSON body: the body must be a JSON object",
            )
                .into_response());
        }
        Json::<T>::from_bytes(&bytes)
            .map(|Json(t)| Object(t))
            .map_err(IntoResponse::into_response)
    }
}

impl<S, T> axum::extract::OptionalFromRequest<S> for Object<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned,
{
    type Rejection = Response;

    /// No content type: no body (as axum's `Option<Json<T>>`).
    async fn from_request(
        req: axum::extract::Request,
        state: &S,
    ) -> Result<Option<Self>, Response> {
        if req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .is_none()
        {
            return Ok(None);
        }
        <Object<T> as axum::extract::FromRequest<S>>::from_request(req, state)
            .await
            .map(Some)
    }
}

#[cfg(test)]
mod tests {
    /// Catches: an export cell a spreadsheet would run (`=HYPERLINK(…)`, `+1`, `-2+3`, `@SUM`, a
    /// leading tab or carriage return) written as it came, or a plain value changed.
    #[test]
    fn csv_cells_that_read_as_formulas_are_neutralised() {
        for (cell, want) in [
            ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
            ("+1", "'+1"),
            ("-2+3", "'-2+3"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("\rx", "'\rx"),
            ("Smith, Ann", "Smith, Ann"),
            ("Ødegård = 1", "Ødegård = 1"),
            ("", ""),
        ] {
            assert_eq!(super::csv_cell(cell), want, "{cell:?}");
        }
    }

    /// Catches: a cursor with a name past ASCII that is not a valid header value (the next page
    /// lost), or one the API cannot read back.
    #[test]
    fn id_tokens_are_ascii_and_read_back() {
        use ferry_store::SortValue;
        for v in [
            "Ødegård, Åse",
            "山田 \"太郎\"",
            "😀=cmd",
            "plain",
            "pc\u{7f}\r\n\u{1b}",
        ] {
            let t = super::id_token(Some(SortValue::Text(v.into())), 42);
            assert!(t.is_ascii(), "{t}");
            assert!(axum::http::HeaderValue::from_str(&t).is_ok(), "{t}");
            let (value, id) = super::id_cursor(Some(&t), super::SortedBy::Text).unwrap();
            assert_eq!((value, id), (Some(SortValue::Text(v.into())), Some(42)));
        }
        assert_eq!(super::id_token(None, 7), "7");
        assert!(super::id_cursor(Some("7"), super::SortedBy::Text).is_err());
        assert!(super::id_cursor(Some("[\"x\", 7]"), super::SortedBy::Id).is_err());
        // A value of the other type: another sort's token, or a forged one.
        assert!(super::id_cursor(Some("[\"x\", 7]"), super::SortedBy::Int).is_err());
        assert!(super::id_cursor(Some("[5, 7]"), super::SortedBy::Text).is_err());
        assert!(super::id_cursor(Some("[5, 7]"), super::SortedBy::Int).is_ok());
    }
}
