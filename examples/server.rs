//! A small application server over accountctl's server paths: password and external sign-in,
//! session validation, refresh-token rotation, logout and per-workspace capabilities, as JSON
//! over HTTP. It builds the same `App` as the admin command line (so the same hooks fire),
//! and runs the invalidation listener, so a change made with `accountctl` (a disabled user, a
//! revoked role) takes effect here at once.
//!
//! ```text
//! DATABASE_URL=sqlite://accountctl.db cargo run --example server -- --listen 127.0.0.1:8080
//! curl -s -X POST localhost:8080/login -d '{"username":"alice","password":"…"}'
//! curl -s localhost:8080/me -H "Authorization: Bearer $ACCESS_TOKEN"
//! ```
//!
//! | request | answer |
//! |---|---|
//! | `POST /login` `{"username","password"}` | 200 `{"access_token","refresh_token","expires_at"}` |
//! | `POST /login/external` `{"provider","subject","email"}` | 200, the same body |
//! | `GET /me` (Bearer) | 200 `{"id","username","role","is_external"}` |
//! | `GET /workspaces/{name}/capabilities` (Bearer) | 200 `{"workspace","capabilities":[…]}`, `[]` when not a member or no such workspace |
//! | `POST /refresh` `{"refresh_token"}` | 200 a new pair; on reuse 401 and the family revoked |
//! | `POST /logout` (Bearer) | 204 |
//!
//! Each session records the client it was issued to (shown by `accountctl session list`): the
//! `User-Agent` header and the client's IP address, which is the TCP peer's address, or, with
//! `--trust-forwarded-for` (for a server behind a reverse proxy of one's own), the last
//! address of the `X-Forwarded-For` header, across all its lines: the one that proxy appended. Without the flag the
//! header is ignored, since any client can send it.
//!
//! Every refusal is 401 with the one body `{"error":"unauthorized"}`; a failed password
//! sign-in costs the same argon2 work whether or not the user exists. `/login/external`
//! trusts its caller: in a real deployment it sits behind the code that verified the
//! identity provider's assertion (an OpenID Connect ID token), never open to clients.
//!
//! Logs go to stderr through `tracing` (`RUST_LOG`, default `info`). SIGTERM or Ctrl-C stops
//! accepting connections, lets requests in flight finish, and waits (up to 10 s) for the
//! spawned logout hooks before exiting.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use accountctl::db::DatabaseUrl;
use accountctl::services::auth::ClientInfo;
use accountctl::services::authz::{InvalidationListener, ListenerEvent};
use accountctl::services::sessions::{Tokens, ValidSession};
use accountctl::{App, Error};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Extension, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

/// Command line: `--listen ADDR`; the database comes from `DATABASE_URL`, as for the CLI.
#[derive(Debug, clap::Parser)]
#[command(about = "accountctl's reference application server")]
struct Args {
    /// Address to listen on (127.0.0.1:8080 by default).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The database (default: the CLI's, sqlite://accountctl.db).
    #[arg(long, env = "DATABASE_URL", default_value = accountctl::db::DatabaseUrl::DEFAULT, hide_env_values = true)]
    database_url: String,
    /// A direct (or session-mode pooler) URL for the invalidation listener's `LISTEN`, when
    /// `DATABASE_URL` goes through a transaction-mode pooler (default: `DATABASE_URL`).
    #[arg(long, env = "ACCOUNTCTL_LISTEN_URL", hide_env_values = true)]
    listen_database_url: Option<String>,
    /// The invalidation channel this server expects: `notify` or `table`. The database
    /// records its channel (`accountctl migrate --invalidations`) and the server follows the
    /// record; when this is given and disagrees, the server refuses to start (exit 2).
    #[arg(long, env = "ACCOUNTCTL_INVALIDATIONS")]
    invalidations: Option<accountctl::db::InvalidationChannel>,
    /// Take the client's IP address from the last entry of `X-Forwarded-For` (set by a
    /// reverse proxy in front of this server) instead of the TCP peer's. Only behind a proxy
    /// that sets the header: a client can send any value.
    #[arg(long)]
    trust_forwarded_for: bool,
    /// Serve the example application of `examples/app_admin`: wire its calendar hook, merge
    /// handler and migrations, as that application's own server would (a database its admin
    /// binary migrated refuses writes from a binary without them).
    #[arg(long)]
    calendar_app: bool,
}

/// The example application's wiring (`examples/app_admin`), for `--calendar-app`.
#[path = "app_admin/calendar.rs"]
#[allow(dead_code)]
mod calendar;

/// Whether `X-Forwarded-For` names the client (`--trust-forwarded-for`).
#[derive(Debug, Clone, Copy)]
struct ForwardedFor(bool);

/// The client of a request as the session records it: IP address (the peer's, or the proxy's
/// `X-Forwarded-For` when trusted) and `User-Agent`.
///
/// The forwarded address is the right-most one across *all* `X-Forwarded-For` header lines
/// (RFC 7230 §3.2.2: several lines of one field are one comma-separated list, in order): a
/// proxy that appends a line of its own, rather than extending the client's, puts the address
/// it saw last. The first line is the client's to write. When that last entry is not an IP
/// address (or the last line is not text) the peer's address is recorded instead.
fn client_info(peer: SocketAddr, headers: &HeaderMap, forwarded: ForwardedFor) -> ClientInfo {
    let forwarded_ip = forwarded
        .0
        .then(|| headers.get_all("x-forwarded-for").iter().next_back()?.to_str().ok())
        .flatten()
        .and_then(|list| list.rsplit(',').next())
        .and_then(|last| last.trim().parse::<IpAddr>().ok());
    ClientInfo {
        ip: Some(forwarded_ip.unwrap_or_else(|| peer.ip())),
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    }
}

/// Why a request failed, as the client sees it.
enum Failure {
    /// Any refusal: one status and one message, so nothing is learned from which.
    Unauthorized,
    /// The database is unreachable or refuses writes.
    Unavailable,
    /// Anything else (logged with its cause).
    Internal,
}

impl From<Error> for Failure {
    fn from(err: Error) -> Self {
        match err {
            Error::AuthenticationFailed | Error::Invalid(_) | Error::NotFound { .. } | Error::Refused(_) => {
                Self::Unauthorized
            }
            Error::Unavailable(_) | Error::MissingHooks(_) | Error::Schema(_) => {
                tracing::error!(error = %err, "database unavailable");
                Self::Unavailable
            }
            other => {
                tracing::error!(error = %other, "request failed");
                Self::Internal
            }
        }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "service unavailable"),
            Self::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
        };
        let mut response = (status, axum::Json(json!({ "error": message }))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        response
    }
}

type Answer = Result<Response, Failure>;

/// A JSON body, or 401 (a malformed request is refused like any other).
fn body<T: for<'de> Deserialize<'de>>(bytes: &Bytes) -> Result<T, Failure> {
    serde_json::from_slice(bytes).map_err(|_| Failure::Unauthorized)
}

/// The bearer token of `Authorization: Bearer …` (RFC 6750 §2.1).
fn bearer(headers: &HeaderMap) -> Result<&str, Failure> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(Failure::Unauthorized)
}

async fn session(app: &App, headers: &HeaderMap) -> Result<ValidSession, Failure> {
    Ok(app.sessions().validate(bearer(headers)?).await?)
}

fn token_pair(tokens: &Tokens) -> Response {
    axum::Json(json!({
        "access_token": tokens.access_token,
        "refresh_token": tokens.refresh_token,
        "expires_at": tokens.session.expires_at,
    }))
    .into_response()
}

#[derive(Deserialize)]
struct PasswordLogin {
    username: String,
    password: String,
}

async fn login(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Extension(forwarded): Extension<ForwardedFor>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Answer {
    let request: PasswordLogin = body(&bytes)?;
    let password = accountctl::password::Secret::new(request.password);
    let outcome = app
        .auth()
        .with_client(client_info(peer, &headers, forwarded))
        .login(&request.username, &password, true)
        .await?;
    let tokens = outcome.session.ok_or(Failure::Internal)?;
    tracing::info!(user_id = %outcome.user.id, session_id = %tokens.session.id, "signed in");
    Ok(token_pair(&tokens))
}

#[derive(Deserialize)]
struct ExternalLogin {
    provider: String,
    subject: String,
    email: Option<String>,
}

async fn login_external(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Extension(forwarded): Extension<ForwardedFor>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Answer {
    let request: ExternalLogin = body(&bytes)?;
    let outcome = app
        .auth()
        .with_client(client_info(peer, &headers, forwarded))
        .login_external(&request.provider, &request.subject, request.email.as_deref())
        .await?;
    let tokens = outcome.session.ok_or(Failure::Internal)?;
    tracing::info!(user_id = %outcome.user.id, provisioned = outcome.provisioned, "signed in externally");
    Ok(token_pair(&tokens))
}

async fn me(State(app): State<App>, headers: HeaderMap) -> Answer {
    let valid = session(&app, &headers).await?;
    let user = valid.user;
    Ok(axum::Json(json!({
        "id": user.id,
        "username": user.username,
        "role": user.role,
        "is_external": user.is_external,
    }))
    .into_response())
}

/// The caller's capabilities in a workspace. A workspace that does not exist (or a name that
/// cannot be one) answers like one the caller is not in, 200 with no capability: a signed-in
/// user learns nothing about which workspaces exist.
async fn capabilities(State(app): State<App>, Path(name): Path<String>, headers: HeaderMap) -> Answer {
    let valid = session(&app, &headers).await?;
    let list: Vec<String> = match app.workspace_id(&name).await {
        Ok(workspace_id) => app
            .authz()
            .capabilities(app.db(), valid.user.id, workspace_id)
            .await?
            .iter()
            .map(|c| c.as_str().to_owned())
            .collect(),
        Err(Error::NotFound { .. } | Error::Invalid(_)) => Vec::new(),
        Err(other) => return Err(other.into()),
    };
    Ok(axum::Json(json!({ "workspace": name, "capabilities": list })).into_response())
}

#[derive(Deserialize)]
struct Refresh {
    refresh_token: String,
}

async fn refresh(State(app): State<App>, bytes: Bytes) -> Answer {
    let request: Refresh = body(&bytes)?;
    let tokens = app.sessions().refresh(&request.refresh_token).await?;
    Ok(token_pair(&tokens))
}

async fn logout(State(app): State<App>, headers: HeaderMap) -> Answer {
    let ended = app.sessions().logout(bearer(&headers)?).await?;
    tracing::info!(user_id = %ended.user_id, "signed out");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Applies the invalidations every process publishes (the CLI's included) to this server's
/// capability cache until `stop` is cancelled, then ends the listener's connection cleanly
/// (an aborted task would drop it, and the server would log a connection reset). The
/// listener rides out lost connections itself (reconnecting, then dropping the whole cache);
/// should it still stop, it may have missed some, so the whole cache is dropped before
/// listening again.
async fn listen_for_invalidations(
    app: App,
    listen_url: DatabaseUrl,
    mut listener: InvalidationListener,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        let event = tokio::select! {
            event = listener.recv() => event,
            () = stop.cancelled() => {
                listener.close().await;
                return;
            }
        };
        match event {
            Ok(ListenerEvent::Invalidated(inv)) => app.authz().invalidate_user(inv.user_id),
            // A resync (the listener reconnected and may have missed some), or an event
            // this server does not know: drop the whole cache, the safe answer to both.
            Ok(_) => app.authz().invalidate_all(),
            Err(err) => {
                tracing::warn!(error = %err, "invalidation listener stopped; restarting");
                app.authz().invalidate_all();
                loop {
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        () = stop.cancelled() => return,
                    }
                    match InvalidationListener::start_at(app.db(), &listen_url).await {
                        Ok(fresh) => {
                            listener = fresh;
                            break;
                        }
                        Err(err) => tracing::warn!(error = %err, "invalidation listener cannot start yet"),
                    }
                }
            }
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}

fn router(app: App, forwarded: ForwardedFor) -> Router {
    Router::new()
        .route("/login", post(login))
        .route("/login/external", post(login_external))
        .route("/me", get(me))
        .route("/workspaces/{name}/capabilities", get(capabilities))
        .route("/refresh", post(refresh))
        .route("/logout", post(logout))
        .layer(Extension(forwarded))
        .with_state(app)
}

async fn serve(args: Args) -> accountctl::Result<()> {
    let mut builder = App::builder()
        .database_url(&args.database_url)
        .program_name("accountctl");
    if let Some(channel) = args.invalidations {
        builder = builder.invalidation_channel(channel);
    }
    if args.calendar_app {
        builder = calendar::wire(builder);
    }
    let app = builder.build().await?;
    app.ensure_schema_current().await?;
    // Started before serving: the server never answers from a cache nobody invalidates.
    let listen_url = match &args.listen_database_url {
        Some(url) => DatabaseUrl::parse(url)?,
        None => app.db().url().clone(),
    };
    let listener = InvalidationListener::start_at(app.db(), &listen_url).await?;
    let stop_listening = tokio_util::sync::CancellationToken::new();
    let listener_task = tokio::spawn(listen_for_invalidations(
        app.clone(),
        listen_url,
        listener,
        stop_listening.clone(),
    ));
    let socket = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| Error::Unavailable(format!("cannot listen on {}: {e}", args.listen)))?;
    tracing::info!(listen = %args.listen, database = %app.db().url(), "serving");
    let service =
        router(app.clone(), ForwardedFor(args.trust_forwarded_for)).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(socket, service)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| Error::Internal(format!("server failed: {e}")))?;
    stop_listening.cancel();
    if tokio::time::timeout(Duration::from_secs(5), listener_task)
        .await
        .is_err()
    {
        tracing::warn!("the invalidation listener did not stop within 5 s");
    }
    let left = app.lifecycle().drain(Duration::from_secs(10)).await;
    if left > 0 {
        tracing::warn!(left, "spawned logout hooks still running at exit");
    }
    app.db().close().await;
    tracing::info!("stopped");
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = <Args as clap::Parser>::parse();
    match serve(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "server failed");
            std::process::ExitCode::from(err.exit_code())
        }
    }
}
