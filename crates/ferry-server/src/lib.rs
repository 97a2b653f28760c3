//! `ferry server`: the control plane. REST API under `/api/v1` (OpenAPI at `/api/v1/openapi.json`),
//! `GET /healthz`, the scheduler, and the sync cycle engine.
//!
//! [`Server::start`] takes an already bound listener and returns a handle with a shutdown, so that
//! tests, the quickstart and benchmarks run the real server in-process on port 0.

pub mod api;
pub mod audit;
pub mod auth;
pub mod clock;
pub mod config;
pub mod console;
pub mod devices;
pub mod metrics;
pub mod moves;
pub mod signin;
pub mod state;
pub mod sync;

// Each module also at the crate's root, where callers have always found it.
pub use config::{settings, vault};
pub use devices::{agent_api, agent_tls, enrolment};
pub use sync::{engine, scheduler};

/// Aborts a task when dropped: on the normal path, when its owner returns early (a request's
/// count beside a page that failed, a client gone) and when a panic unwinds past its owner. A
/// blocking statement the task is inside finishes first.
pub(crate) struct AbortOnDrop<T>(pub(crate) tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

use axum::Router;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use engine::Engine;
use settings::Settings;
use state::AppState;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// How to start a server.
pub struct ServerOptions {
    pub settings: Settings,
    /// Holds the SQLite database (unless `database_url`) and `admin-token`.
    pub data_dir: PathBuf,
    /// `postgres://…`: use PostgreSQL.
    pub database_url: Option<String>,
    /// `FERRY_ADMIN_TOKEN`, if set.
    pub admin_token: Option<String>,
    /// `FERRY_SECRET_KEY`, if set: the key sealing stored credentials (else `DATA_DIR/secret.key`).
    pub secret_key: Option<String>,
    /// Run scheduled cycles (on by default; benchmarks and some tests turn it off).
    pub scheduler: bool,
    /// Serve the agent endpoint (TLS) on this listener.
    pub agent: Option<AgentEndpoint>,
}

/// The agent endpoint's listener and certificate.
pub struct AgentEndpoint {
    pub listener: tokio::net::TcpListener,
    /// A configured certificate and key (PEM); none: generated in `DATA_DIR/agent-tls/`.
    pub cert: Option<(PathBuf, PathBuf)>,
    /// Host names and addresses agents reach the server by (put in a generated certificate).
    pub names: Vec<String>,
    /// The URL agents are given (shown to the operator), e.g. `https://ferry.contoso.com/agent`.
    pub public_url: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("data directory {path}: {detail}")]
    DataDir { path: PathBuf, detail: String },
    #[error(
        "another ferry server is using {0} (it holds ferry.lock); stop it, or give this one another --data-dir"
    )]
    Locked(PathBuf),
    #[error(transparent)]
    Store(#[from] ferry_store::StoreError),
    #[error("secret key: {0}")]
    SecretKey(String),
    #[error(transparent)]
    Config(#[from] ferry_core::config::ConfigError),
    #[error("agent endpoint certificate: {0}")]
    AgentTls(String),
    #[error("server.audit_log {0}: {1}")]
    AuditLog(PathBuf, String),
    #[error("cannot serve: {0}")]
    Io(#[from] std::io::Error),
}

/// A running server.
pub struct Server {
    pub addr: SocketAddr,
    /// The agent endpoint's address and certificate fingerprint, when served.
    pub agent_addr: Option<SocketAddr>,
    pub agent_fingerprint: Option<String>,
    pub state: AppState,
    /// Where the admin token came from (a file path or `FERRY_ADMIN_TOKEN`).
    pub admin_token_source: String,
    pub admin_token: String,
    shutdown: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    _lock: Option<std::fs::File>,
}

/// `ok` when the database answers (a cheap read, 2 s at most); else 503 saying why, so that a
/// load balancer stops sending work to a server that cannot do it.
async fn healthz(axum::extract::State(st): axum::extract::State<AppState>) -> Response {
    let probe = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        st.store.documents(ferry_store::DocKind::Tenant),
    )
    .await;
    match probe {
        Ok(Ok(_)) => "ok\n".into_response(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "health check: the database does not answer");
            api::ApiError::Unavailable("the database does not answer".into(), 5).into_response()
        }
        Err(_) => api::ApiError::Unavailable("the database did not answer within 2 s".into(), 5)
            .into_response(),
    }
}

async fn not_found() -> Response {
    api::ApiError::NotFound(
        "no such endpoint; the API is under /api/v1 (see /api/v1/openapi.json)".into(),
    )
    .into_response()
}

/// `ok` while the process answers; checks nothing else (a liveness probe restarts a process
/// that stopped answering, never one whose database is away).
async fn livez() -> &'static str {
    "ok\n"
}

/// Whether this server can do its work: the database answers (within 2 s), has every migration
/// this build knows, and the configuration is in force. 503 with each failing check otherwise.
async fn readyz(axum::extract::State(st): axum::extract::State<AppState>) -> Response {
    let mut failing = Vec::new();
    match tokio::time::timeout(std::time::Duration::from_secs(2), st.store.schema_version()).await {
        Ok(Ok((applied, known))) if applied >= known => {}
        Ok(Ok((applied, known))) => failing.push(format!(
            "the database has migrations up to {applied}, this build needs {known}"
        )),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: the database does not answer");
            failing.push("the database does not answer".to_string());
        }
        Err(_) => failing.push("the database did not answer within 2 s".to_string()),
    }
    if !st.config_loaded.load(std::sync::atomic::Ordering::Relaxed) {
        failing.push(
            "the console's directories and profiles could not be read at the last attempt".into(),
        );
    }
    if failing.is_empty() {
        "ready\n".into_response()
    } else {
        api::ApiError::Unavailable(format!("not ready: {}", failing.join("; ")), 5).into_response()
    }
}

/// Prometheus' scrape (`docs/operations.md`): a ferry admin's or viewer's token.
async fn metrics(
    _: auth::AdminAuth,
    axum::extract::State(st): axum::extract::State<AppState>,
) -> Result<Response, api::ApiError> {
    let body = metrics::render(&st).await?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response())
}

/// Every request: its id (see [`api::RequestId`]) in its extensions, its answer's header and its
/// log lines; its route, status class and time in `/metrics`.
pub async fn observe(
    axum::extract::State((m, listener)): axum::extract::State<(
        Arc<metrics::Metrics>,
        metrics::Listener,
    )>,
    mut req: Request,
    next: Next,
) -> Response {
    let id = api::RequestId::of(req.headers());
    req.extensions_mut().insert(id.clone());
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_string());
    let span = tracing::info_span!("request", id = %id.0);
    let started = std::time::Instant::now();
    let header = axum::http::HeaderValue::from_str(&id.0).ok();
    let mut resp = tracing::Instrument::instrument(id.scope(next.run(req)), span.clone()).await;
    let elapsed = started.elapsed();
    let status = resp.status().as_u16();
    span.in_scope(|| {
        tracing::debug!(%method, route = route.as_deref().unwrap_or("unmatched"), status, elapsed_us = elapsed.as_micros() as u64, "request")
    });
    m.request(
        listener,
        &method,
        route.as_deref(),
        status,
        elapsed.as_secs_f64(),
    );
    if let Some(h) = header {
        resp.headers_mut().insert("x-request-id", h);
    }
    resp
}

/// The whole HTTP application.
pub fn app(state: AppState) -> Router {
    let observed = (Arc::clone(&state.metrics), metrics::Listener::Admin);
    Router::new()
        .route("/healthz", get(healthz))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(console::router())
        .nest("/api/v1", api::router())
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(observed, observe))
        .with_state(state)
}

/// Creates the data directory readable by its owner only, and tightens an existing one: every
/// directory in it to 0700 and every file to 0600 (its database, tokens, keys and logs), saying
/// what it changed.
fn private_data_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mut tightened = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let m = std::fs::symlink_metadata(&d)?;
        if m.permissions().mode() & 0o077 != 0 {
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700))?;
            tightened.push(d.display().to_string());
        }
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            let t = e.file_type()?;
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                let mode = e.metadata()?.permissions().mode();
                if mode & 0o077 != 0 {
                    std::fs::set_permissions(
                        e.path(),
                        std::fs::Permissions::from_mode(mode & 0o700),
                    )?;
                    tightened.push(e.path().display().to_string());
                }
            }
        }
    }
    if !tightened.is_empty() {
        tracing::warn!(
            count = tightened.len(),
            paths = %tightened.join(", "),
            "the data directory was readable by others: made it and its files private to the server's user (0700/0600)"
        );
    }
    Ok(())
}

/// Checks that the database's secrets are sealed with this server's key (the first server to
/// start on a database records its key id), and seals what an earlier version stored in the clear.
async fn seal_stored_secrets(
    store: &dyn ferry_store::Store,
    vault: &vault::Vault,
) -> Result<(), StartError> {
    let ours = vault.key_id();
    let recorded = store.claim_meta(vault::META_KEY, &ours).await?;
    if recorded != ours {
        return Err(StartError::SecretKey(format!(
            "this database's credentials are sealed with key {recorded}, and this server's key ({}) is {ours}: \
             give it the key the other servers use (copy their DATA_DIR/secret.key, or set FERRY_SECRET_KEY)",
            vault.source
        )));
    }
    let mut sealed = 0;
    for (name, body) in store.documents(ferry_store::DocKind::Directory).await? {
        let Ok(doc) = serde_json::from_str::<settings::StoredDirectory>(&body) else {
            continue; // reported when the settings are loaded
        };
        if !doc.needs_sealing() {
            continue;
        }
        let d = doc
            .directory(vault)
            .map_err(|e| StartError::SecretKey(format!("directory `{name}`: {e}")))?;
        let doc = settings::StoredDirectory::new(d, vault)
            .and_then(|d| serde_json::to_string(&d))
            .map_err(|e| StartError::SecretKey(format!("directory `{name}`: {e}")))?;
        store
            .put_document(
                ferry_store::DocKind::Directory,
                &name,
                &doc,
                ferry_store::now_ms(),
            )
            .await?;
        sealed += 1;
    }
    for t in store.enrolment_tokens(None).await? {
        if let Some((t, content)) = store.enrolment_token_content(t.id).await?
            && !vault::Vault::is_sealed(&content)
        {
            let context = vault::enrolment_context(&t.directory, &t.sha256);
            store
                .set_enrolment_token_content(t.id, &vault.seal(&content, &context))
                .await?;
            sealed += 1;
        }
    }
    if sealed > 0 {
        tracing::warn!(
            sealed,
            "credentials and tokens stored in the clear by an earlier version are now sealed"
        );
    }
    Ok(())
}

impl Server {
    /// Opens the store, installs the admin token, and serves on `listener` until [`Server::stop`].
    pub async fn start(
        opts: ServerOptions,
        listener: tokio::net::TcpListener,
    ) -> Result<Server, StartError> {
        let dir = &opts.data_dir;
        private_data_dir(dir).map_err(|e| StartError::DataDir {
            path: dir.clone(),
            detail: e.to_string(),
        })?;
        // One live server per data directory: it holds the SQLite database, the admin token and this
        // server's identity (so that a restarted server can recover what its previous run left).
        let f = {
            use std::os::unix::fs::OpenOptionsExt as _;
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(dir.join("ferry.lock"))
        }
        .map_err(|e| StartError::DataDir {
            path: dir.clone(),
            detail: e.to_string(),
        })?;
        f.try_lock().map_err(|_| StartError::Locked(dir.clone()))?;
        let lock = Some(f);
        let store = ferry_store::open(opts.database_url.as_deref(), dir).await?;
        let vault = Arc::new(
            vault::Vault::load(dir, opts.secret_key.as_deref())
                .map_err(|e| StartError::SecretKey(e.to_string()))?,
        );
        seal_stored_secrets(&*store, &vault).await?;
        let (token, source) =
            auth::admin_token(dir, opts.admin_token).map_err(|e| StartError::DataDir {
                path: dir.clone(),
                detail: format!("admin token: {e}"),
            })?;
        store
            .put_token(
                "admin",
                &auth::hash_token(&token),
                "admin",
                ferry_store::now_ms(),
            )
            .await?;
        // Tenants of the configuration are put as written; its environments only when not
        // registered yet (a move may have handed one to another tenant since).
        for t in &opts.settings.config.tenants {
            let body = serde_json::to_string(t).map_err(|e| StartError::DataDir {
                path: dir.clone(),
                detail: e.to_string(),
            })?;
            store
                .put_document(
                    ferry_store::DocKind::Tenant,
                    &t.id,
                    &body,
                    ferry_store::now_ms(),
                )
                .await?;
        }
        let registered = if opts.settings.config.environments.is_empty() {
            Vec::new()
        } else {
            store.documents(ferry_store::DocKind::Environment).await?
        };
        for e in &opts.settings.config.environments {
            if registered.iter().any(|(n, _)| n == &e.id) {
                continue;
            }
            let body = serde_json::to_string(e).map_err(|e| StartError::DataDir {
                path: dir.clone(),
                detail: e.to_string(),
            })?;
            store
                .put_document(
                    ferry_store::DocKind::Environment,
                    &e.id,
                    &body,
                    ferry_store::now_ms(),
                )
                .await?;
            tracing::info!(environment = %e.id, tenant = %e.tenant, "registered from the configuration");
        }
        // Runbooks and batches of the configuration, where check-ins and other servers read them.
        match devices::configured::put_into_store(&*store, &opts.settings).await {
            Ok(changed) => {
                for c in changed {
                    tracing::info!("{c} put from the configuration");
                }
            }
            Err(devices::configured::LoadError::Config(e)) => return Err(e.into()),
            Err(devices::configured::LoadError::Store(e)) => return Err(e.into()),
        }
        let settings = settings::Live::new(opts.settings, vault);
        for w in settings.load(&*store).await? {
            tracing::warn!("{w}");
        }
        let server_id = server_id(dir).map_err(|e| StartError::DataDir {
            path: dir.clone(),
            detail: format!("server-id: {e}"),
        })?;
        let aborted = store
            .recover_server(&server_id, ferry_store::now_ms())
            .await?;
        if aborted > 0 {
            tracing::warn!(
                aborted,
                "cycles left running by this server's previous run were marked aborted"
            );
        }
        let engine = Arc::new(Engine::new(
            Arc::clone(&store),
            Arc::clone(&settings),
            server_id,
            opts.data_dir.clone(),
        ));
        let sink = match &settings.file().config.server.audit_log {
            None => None,
            Some(p) => {
                let path = settings.file().base.join(p);
                Some(
                    audit::Sink::open(&path)
                        .map_err(|e| StartError::AuditLog(path.clone(), e.to_string()))?,
                )
            }
        };
        let audit = audit::Trail::new(Arc::clone(&store), sink);
        let devices = devices::Devices::start(Arc::clone(&store), Arc::clone(&audit));
        devices.reload(&*store).await?;
        let sign_in = Arc::new(signin::SignInLimits::new(
            settings.file().config.server.auth.clone(),
        ));
        let state = AppState {
            store,
            settings,
            engine: Arc::clone(&engine),
            devices: Arc::clone(&devices),
            sign_in,
            moves: Arc::default(),
            clock: Arc::default(),
            metrics: Arc::clone(&engine.metrics),
            started_at_ms: ferry_store::now_ms(),
            config_loaded: Arc::new(std::sync::atomic::AtomicBool::new(true)),
            audit,
            admin_token_source: Arc::from(source.as_str()),
        };
        devices::preflight::start(state.clone());
        // Moves whose hand-over no server holds (this server's previous run's claims were
        // released above): nothing of them was handed over (one transaction), so they go back to
        // validated.
        match moves::recover::recover_moves(&state).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                moves = n,
                "rolled back the environment moves this server was handing over when it stopped"
            ),
            Err(e) => {
                tracing::error!(error = %e, "could not recover interrupted environment moves")
            }
        }
        let addr = listener.local_addr()?;
        let (tx, rx) = tokio::sync::watch::channel(false);
        let (mut agent_addr, mut agent_fingerprint) = (None, None);
        if let Some(ep) = opts.agent {
            let tls = agent_tls::load_or_generate(
                &opts.data_dir,
                ep.cert.as_ref().map(|(c, k)| (c.as_path(), k.as_path())),
                &ep.names,
            )
            .map_err(StartError::AgentTls)?;
            let a = ep.listener.local_addr()?;
            let url = ep
                .public_url
                .clone()
                .unwrap_or_else(|| format!("https://{a}/agent"));
            if let Ok(mut e) = devices.endpoint.write() {
                *e = Some((url, tls.fingerprint.clone()));
            }
            let listener = agent_tls::TlsListener::new(ep.listener, Arc::clone(&tls.config))?;
            let mut rx3 = rx.clone();
            let app = agent_api::app(state.clone())
                .into_make_service_with_connect_info::<agent_tls::AgentPeer>();
            tokio::spawn(
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = rx3.changed().await;
                    })
                    .into_future(),
            );
            agent_addr = Some(a);
            agent_fingerprint = Some(tls.fingerprint);
        }
        if opts.scheduler {
            tokio::spawn(scheduler::run(Arc::clone(&engine), rx.clone()));
        }
        // SQLite's translation search index is filled after cycles commit, outside them.
        tokio::spawn(sync::search_index::run(
            Arc::clone(&state.store),
            rx.clone(),
        ));
        tokio::spawn(scheduler::prune_history(
            Arc::clone(&state.store),
            state.settings.file().config.server.agents.clone(),
            rx.clone(),
        ));
        // Batches, runbooks and memberships changed by another server on the same database
        // (this server's changes reload at once): the agent endpoint and the console's pages
        // read the snapshot. A stamp is compared every CONFIG_POLL; all is loaded again when it
        // changed, and each minute regardless.
        {
            let (d, s, mut stop) = (Arc::clone(&devices), Arc::clone(&state.store), rx.clone());
            tokio::spawn(async move {
                for n in 1u32.. {
                    tokio::select! {
                        _ = tokio::time::sleep(devices::CONFIG_POLL) => {
                            let anyway = n.is_multiple_of(30);
                            if let Err(e) = d.reload_if_changed(&*s, anyway).await {
                                tracing::warn!(error = %e, "could not reload batches and runbooks");
                            }
                        }
                        _ = stop.changed() => break,
                    }
                }
            });
        }
        // Hand-overs of environment moves whose server died are rolled back by whichever server
        // sees their claim lapse first.
        {
            let (st, mut stop) = (state.clone(), rx.clone());
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(moves::recover::SWEEP_EVERY) => {}
                        _ = stop.changed() => return,
                    }
                    match moves::recover::recover_moves(&st).await {
                        Ok(0) => {}
                        Ok(n) => tracing::warn!(
                            moves = n,
                            "rolled back environment moves whose server stopped during the hand-over"
                        ),
                        Err(e) => {
                            tracing::warn!(error = %e, "could not look for interrupted environment moves")
                        }
                    }
                }
            });
        }
        // Servers sharing a database see each other's console changes within five seconds.
        {
            let (live, store, loaded, mut stop) = (
                Arc::clone(&state.settings),
                Arc::clone(&state.store),
                Arc::clone(&state.config_loaded),
                rx.clone(),
            );
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = stop.changed() => return,
                    }
                    let refreshed = live.refresh(&*store).await;
                    loaded.store(refreshed.is_ok(), std::sync::atomic::Ordering::Relaxed);
                    match refreshed {
                        Ok(warnings) => warnings.iter().for_each(|w| tracing::warn!("{w}")),
                        Err(e) => {
                            tracing::warn!(error = %e, "could not reread the console's directories and profiles")
                        }
                    }
                }
            });
        }
        let mut rx2 = rx;
        let task = tokio::spawn(
            axum::serve(
                listener,
                app(state.clone()).into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .with_graceful_shutdown(async move {
                let _ = rx2.changed().await;
            })
            .into_future(),
        );
        Ok(Server {
            addr,
            agent_addr,
            agent_fingerprint,
            state,
            admin_token_source: source,
            admin_token: token,
            shutdown: tx,
            task,
            _lock: lock,
        })
    }

    /// Stops serving, waits for in-flight requests, then writes the agents' last contacts (kept
    /// for up to 200 ms to be written in bulk).
    pub async fn stop(self) -> std::io::Result<()> {
        let _ = self.shutdown.send(true);
        let served = self.task.await.map_err(std::io::Error::other);
        self.state.devices.flush_contacts().await;
        served?
    }

    /// Serves until the task ends (it ends only on stop or a fatal error).
    pub async fn wait(&mut self) -> std::io::Result<()> {
        (&mut self.task).await.map_err(std::io::Error::other)?
    }
}

/// This server's identity, kept in `DIR/server-id`: the host name and a random suffix, made once.
fn server_id(dir: &std::path::Path) -> std::io::Result<String> {
    let path = dir.join("server-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let id = format!("{}-{}", hostname(), &ferry_directory::new_guid()[..8]);
    auth::write_private(&path, format!("{id}\n").as_bytes())?;
    Ok(id)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "ferry".into())
}

use std::future::IntoFuture as _;
