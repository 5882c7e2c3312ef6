//! The load bench's baseline: a bare axum server answering the example server's two read
//! routes with the same SELECTs run directly on a pool, and nothing else (no library, no
//! capability cache, no hook, no `last_seen_at`). `cargo bench` (scenario `load`) runs it
//! beside `examples/server.rs` on the same database, so the difference between the two is
//! what the library costs an application's request path.
//!
//! ```text
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/db \
//!     cargo run --release --example load_baseline -- --listen 127.0.0.1:8081
//! ```
//!
//! | route | answer |
//! |---|---|
//! | `GET /me` (Bearer) | 200 `{"id","username","role","is_external"}`, 401 for an unknown, revoked or disabled session |
//! | `GET /workspaces/{name}/capabilities` (Bearer) | 200 `{"workspace","capabilities":[…]}`: the union of the role capabilities the user holds in the workspace or the root workspace |
//!
//! The pool is the example server's: 8 connections, each checked before reuse (sqlx's
//! default, which the library keeps for a long-running process).

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use sqlx::Row as _;

/// Command line: `--listen ADDR`; the database comes from `DATABASE_URL`.
#[derive(clap::Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    /// `sqlite://PATH` or `postgres://…`.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
}

#[derive(Clone)]
enum Pool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

/// The session and its user by the token's hash: the library's own joined SELECT, with the
/// revoked / disabled / trashed checks in SQL.
const SESSION: &str = "SELECT s.id, s.family_id, s.created_at, s.expires_at, s.last_seen_at, s.revoked_at, \
     s.revoke_reason, u.id AS user_id, u.person_id, u.username, u.role, u.is_external, u.active, \
     (u.password_hash IS NOT NULL) AS has_password, u.storage_quota_bytes, u.storage_used_bytes, \
     u.created_at, u.updated_at, u.last_login_at, u.deleted_at, u.purge_after \
     FROM sessions s JOIN users u ON u.id = s.user_id \
     WHERE s.token_hash = $1 AND s.revoked_at IS NULL AND u.active AND u.deleted_at IS NULL";

/// The capability lists of the roles a user holds in a workspace (by folded name) or in the
/// root workspace.
const CAPABILITIES: &str = "SELECT r.capabilities FROM memberships m \
     JOIN roles r ON r.id = m.role_id JOIN workspaces w ON w.id = m.workspace_id \
     WHERE m.user_id = $1 AND (w.name_folded = $2 OR w.is_root)";

/// The signed-in user: (id as text, username, role, is_external), or `None` for 401.
struct Caller {
    id: String,
    username: String,
    role: String,
    is_external: bool,
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    value.strip_prefix("Bearer ").map(accountctl::tokens::hash_token)
}

fn unauthorized() -> Response {
    (StatusCode::UNAUTHORIZED, axum::Json(json!({ "error": "unauthorized" }))).into_response()
}

fn failed(err: sqlx::Error) -> Response {
    eprintln!("load_baseline: {err}");
    StatusCode::INTERNAL_SERVER_ERROR.into_response()
}

async fn caller(pool: &Pool, hash: &str) -> Result<Option<Caller>, sqlx::Error> {
    let row = match pool {
        Pool::Sqlite(p) => {
            sqlx::query(SESSION)
                .bind(hash)
                .fetch_optional(p)
                .await?
                .map(|r| -> Result<Caller, sqlx::Error> {
                    Ok(Caller {
                        id: r.try_get("user_id")?,
                        username: r.try_get("username")?,
                        role: r.try_get("role")?,
                        is_external: r.try_get("is_external")?,
                    })
                })
        }
        Pool::Postgres(p) => {
            sqlx::query(SESSION)
                .bind(hash)
                .fetch_optional(p)
                .await?
                .map(|r| -> Result<Caller, sqlx::Error> {
                    Ok(Caller {
                        id: r.try_get::<uuid::Uuid, _>("user_id")?.to_string(),
                        username: r.try_get("username")?,
                        role: r.try_get("role")?,
                        is_external: r.try_get("is_external")?,
                    })
                })
        }
    };
    row.transpose()
}

async fn me(State(pool): State<Pool>, headers: HeaderMap) -> Response {
    let Some(hash) = bearer(&headers) else {
        return unauthorized();
    };
    match caller(&pool, &hash).await {
        Ok(Some(c)) => axum::Json(json!({
            "id": c.id,
            "username": c.username,
            "role": c.role,
            "is_external": c.is_external,
        }))
        .into_response(),
        Ok(None) => unauthorized(),
        Err(err) => failed(err),
    }
}

async fn capabilities(State(pool): State<Pool>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    let Some(hash) = bearer(&headers) else {
        return unauthorized();
    };
    let user = match caller(&pool, &hash).await {
        Ok(Some(c)) => c,
        Ok(None) => return unauthorized(),
        Err(err) => return failed(err),
    };
    let folded = name.to_lowercase();
    let lists: Result<Vec<String>, sqlx::Error> = match &pool {
        Pool::Sqlite(p) => {
            sqlx::query_scalar(CAPABILITIES)
                .bind(&user.id)
                .bind(&folded)
                .fetch_all(p)
                .await
        }
        Pool::Postgres(p) => match uuid::Uuid::parse_str(&user.id) {
            Ok(id) => {
                sqlx::query_scalar(CAPABILITIES)
                    .bind(id)
                    .bind(&folded)
                    .fetch_all(p)
                    .await
            }
            Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        },
    };
    let lists = match lists {
        Ok(lists) => lists,
        Err(err) => return failed(err),
    };
    let mut caps: Vec<String> = Vec::new();
    for list in lists {
        for cap in serde_json::from_str::<Vec<String>>(&list).unwrap_or_default() {
            if !caps.contains(&cap) {
                caps.push(cap);
            }
        }
    }
    axum::Json(json!({ "workspace": name, "capabilities": caps })).into_response()
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = <Args as clap::Parser>::parse();
    let pool = if args.database_url.starts_with("sqlite:") {
        let options = match <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(&args.database_url) {
            Ok(o) => o.busy_timeout(Duration::from_secs(5)),
            Err(err) => {
                eprintln!("load_baseline: bad DATABASE_URL: {err}");
                return std::process::ExitCode::from(2);
            }
        };
        sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .map(Pool::Sqlite)
    } else {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(8)
            .connect(&args.database_url)
            .await
            .map(Pool::Postgres)
    };
    let pool = match pool {
        Ok(pool) => pool,
        Err(err) => {
            eprintln!("load_baseline: cannot connect: {err}");
            return std::process::ExitCode::from(6);
        }
    };
    let app = Router::new()
        .route("/me", get(me))
        .route("/workspaces/{name}/capabilities", get(capabilities))
        .with_state(pool.clone());
    let socket = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(s) => s,
        Err(err) => {
            eprintln!("load_baseline: cannot listen on {}: {err}", args.listen);
            return std::process::ExitCode::from(6);
        }
    };
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let served = axum::serve(socket, app).with_graceful_shutdown(shutdown).await;
    match pool {
        Pool::Sqlite(p) => p.close().await,
        Pool::Postgres(p) => p.close().await,
    }
    match served {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("load_baseline: {err}");
            std::process::ExitCode::from(1)
        }
    }
}
