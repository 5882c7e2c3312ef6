//! Cross-process tests: the example server (`examples/server.rs`) runs as a real process on a
//! 127.0.0.1 port, a real HTTP client talks to it, and `accountctl` changes the database
//! from other processes. A change must reach the server within a second: on PostgreSQL
//! through `pg_notify`, on SQLite through the invalidations table.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const PASSWORD: &str = "a long enough password";
/// The `User-Agent` of the tests' HTTP client.
const USER_AGENT: &str = "QzxTestClient/1.0 (accountctl tests)";

/// The server process, stopped with SIGTERM (and killed if it does not stop) when dropped.
struct Server {
    child: Option<Child>,
    base: String,
    log: std::path::PathBuf,
}

impl Server {
    async fn start(ctx: &common::Ctx) -> Self {
        Self::start_with(ctx, &[]).await
    }

    /// [`Server::start`] with more command-line options.
    async fn start_with(ctx: &common::Ctx, extra: &[&str]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log = ctx.dir.path().join("server.log");
        let child = Command::new(common::example_bin("server"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(extra)
            .env("DATABASE_URL", &ctx.url)
            .env("RUST_LOG", "info,sqlx=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start the server");
        let server = Self {
            child: Some(child),
            base: format!("http://127.0.0.1:{port}"),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(Instant::now() < deadline, "the server did not start: {}", server.logs());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Give the invalidation listener its start (it hears only what follows it).
        tokio::time::sleep(Duration::from_millis(300)).await;
        server
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then waits (bounded) for a clean exit.
    fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    fn new(server: &Server) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .user_agent(USER_AGENT)
                .build()
                .expect("client"),
            base: server.base.clone(),
        }
    }

    async fn post(&self, path: &str, body: Value, token: Option<&str>) -> (u16, Value) {
        let mut request = self.http.post(format!("{}{path}", self.base)).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Signs in and returns (access token, refresh token).
    async fn login(&self, username: &str) -> (String, String) {
        let (status, body) = self
            .post("/login", json!({ "username": username, "password": PASSWORD }), None)
            .await;
        assert_eq!(status, 200, "{username} signs in: {body}");
        assert!(body["expires_at"].is_string());
        (token(&body["access_token"]), token(&body["refresh_token"]))
    }

    async fn me(&self, token: &str) -> u16 {
        self.get("/me", token).await.0
    }

    async fn capabilities(&self, workspace: &str, token: &str) -> Vec<String> {
        let (status, body) = self.get(&format!("/workspaces/{workspace}/capabilities"), token).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["workspace"], workspace);
        body["capabilities"]
            .as_array()
            .expect("a list")
            .iter()
            .map(self::token)
            .collect()
    }
}

fn token(value: &Value) -> String {
    value.as_str().expect("a string").to_owned()
}

/// Polls `check` until it holds, for at most one second; returns how long it took.
async fn within_a_second<F, Fut>(what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < Duration::from_secs(1), "{what}: not within 1 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn cli_user(ctx: &common::Ctx, name: &str) {
    ctx.cli_create(name, PASSWORD);
}

on_both_backends! {
    async fn sessions_stop_within_a_second_of_the_cli_changes(ctx) {
        ctx.bootstrap_cli();
        for name in ["alice", "bob", "carol", "dave", "erin"] {
            cli_user(&ctx, name);
        }
        let mut server = Server::start(&ctx).await;
        let client = Client::new(&server);
        let session_id = |name: &str| {
            let out = ctx.cli().args(["session", "list", name, "-o", "json"]).output().expect("list");
            let list: Value = serde_json::from_slice(&out.stdout).expect("json");
            token(&list[0]["id"])
        };
        let cases: [(&str, Vec<String>, Option<String>); 5] = [
            ("alice", vec!["user".into(), "disable".into(), "alice".into()], None),
            ("bob", vec!["user".into(), "set-password".into(), "bob".into(), "--password-stdin".into()], Some("another long password\n".into())),
            ("carol", vec!["session".into(), "revoke".into()], None),
            ("dave", vec!["user".into(), "delete".into(), "dave".into(), "--mode".into(), "admin".into()], None),
            ("erin", vec!["user".into(), "convert".into(), "erin".into(), "--to-external".into()], None),
        ];
        for (name, mut args, stdin) in cases {
            let (access, _) = client.login(name).await;
            assert_eq!(client.me(&access).await, 200);
            if name == "carol" {
                args.push(session_id("carol"));
            }
            let mut cmd = ctx.cli();
            cmd.args(&args).arg("--yes");
            if let Some(input) = stdin {
                cmd.write_stdin(input);
            }
            cmd.assert().success();
            within_a_second(&format!("{args:?}"), || async { client.me(&access).await == 401 }).await;
        }
        assert_eq!(ctx.count("SELECT COUNT(*) FROM sessions WHERE revoked_at IS NULL").await, 0);
        for reason in ["account_disabled", "password_changed", "admin_revoked"] {
            assert!(ctx.count(&format!("SELECT COUNT(*) FROM sessions WHERE revoke_reason = '{reason}'")).await > 0, "{reason}");
        }
        let status = server.stop().expect("the server stops on SIGTERM");
        assert!(status.success(), "clean exit: {}", server.logs());
    }

    async fn capabilities_follow_role_changes_within_a_second(ctx) {
        ctx.bootstrap_cli();
        for args in [
            vec!["workspace-type", "create", "team", "--title", "Team", "--capabilities", "docs.*"],
            vec!["workspace", "create", "Acme", "--type", "team"],
            vec!["role", "create", "editor", "--workspace", "Acme", "--capabilities", "docs.*"],
            vec!["role", "create", "viewer", "--workspace", "Acme", "--capabilities", "docs.read"],
        ] {
            ctx.cli().args(&args).assert().success();
        }
        // The template binds every role of the type.
        ctx.cli()
            .args(["role", "create", "boss", "--workspace", "Acme", "--capabilities", "root.*"])
            .assert()
            .code(4)
            .stderr(predicates::str::contains("root.*"));
        cli_user(&ctx, "frank");
        ctx.cli().args(["role", "assign", "frank", "editor", "--workspace", "Acme"]).assert().success();
        let server = Server::start(&ctx).await;
        let client = Client::new(&server);
        let (access, _) = client.login("frank").await;
        assert_eq!(client.capabilities("Acme", &access).await, ["docs.*"]);
        ctx.cli().args(["role", "revoke", "frank", "editor", "--workspace", "Acme", "--yes"]).assert().success();
        within_a_second("role revoke", || async { client.capabilities("Acme", &access).await.is_empty() }).await;
        ctx.cli().args(["role", "assign", "frank", "viewer", "--workspace", "Acme"]).assert().success();
        within_a_second("role assign", || async { client.capabilities("Acme", &access).await == ["docs.read"] }).await;
        ctx.cli().args(["role", "delete", "viewer", "--workspace", "Acme", "--yes"]).assert().success();
        within_a_second("role delete", || async { client.capabilities("Acme", &access).await.is_empty() }).await;
        // A workspace the caller is not in and one that does not exist answer alike, so a
        // signed-in user cannot enumerate workspace names.
        ctx.cli().args(["workspace", "create", "Hidden", "--type", "team"]).assert().success();
        for name in ["Hidden", "Nowhere", "0123456789abcdef", "%20"] {
            let (status, body) = client.get(&format!("/workspaces/{name}/capabilities"), &access).await;
            assert_eq!(status, 200, "{name}: {body}");
            assert_eq!(body["capabilities"], json!([]), "{name}: {body}");
            assert_eq!(body.as_object().map(|o| o.len()), Some(2), "{name}: {body}");
        }
        drop(server);
    }

    async fn logout_and_refresh_reuse_are_in_the_audit_trail(ctx) {
        ctx.bootstrap_cli();
        cli_user(&ctx, "gina");
        let server = Server::start(&ctx).await;
        let client = Client::new(&server);
        let (access, refresh) = client.login("gina").await;
        let (status, rotated) = client.post("/refresh", json!({ "refresh_token": refresh }), None).await;
        assert_eq!(status, 200);
        let new_access = token(&rotated["access_token"]);
        assert_eq!(client.me(&access).await, 401, "the rotated-away access token is dead");
        assert_eq!(client.me(&new_access).await, 200);
        let (status, body) = client.post("/refresh", json!({ "refresh_token": refresh }), None).await;
        assert_eq!((status, body.clone()), (401, json!({ "error": "unauthorized" })), "reuse");
        assert_eq!(client.me(&new_access).await, 401, "reuse revoked the family");
        let (other, _) = client.login("gina").await;
        assert_eq!(client.post("/logout", json!({}), Some(&other)).await.0, 204);
        assert_eq!(client.me(&other).await, 401);
        // One message for every refusal.
        for (path, body) in [
            ("/login", json!({ "username": "gina", "password": "wrong" })),
            ("/login", json!({ "username": "nobody", "password": "wrong" })),
            ("/login", json!({ "nonsense": true })),
            ("/refresh", json!({ "refresh_token": "bogus" })),
        ] {
            assert_eq!(client.post(path, body, None).await, (401, json!({ "error": "unauthorized" })));
        }
        assert_eq!(client.get("/me", "bogus").await, (401, json!({ "error": "unauthorized" })));
        // The logout hooks run spawned in the server: allow them a moment.
        let deadline = Instant::now() + Duration::from_secs(5);
        for reason in ["user_initiated", "token_reused"] {
            let sql = format!("SELECT COUNT(*) FROM audit_events WHERE event = 'user.logout' AND fields LIKE '%{reason}%'");
            while ctx.count(&sql).await != 1 {
                assert!(Instant::now() < deadline, "no audited logout with {reason}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        assert_eq!(ctx.count("SELECT COUNT(*) FROM audit_events WHERE event = 'session.token_reused'").await, 1);
        drop(server);
    }

    async fn cli_users_sign_in_on_the_server_internal_and_external(ctx) {
        ctx.bootstrap_cli();
        cli_user(&ctx, "hana");
        ctx.exec("DELETE FROM folders").await.expect("no home folders yet");
        ctx.cli()
            .args(["user", "create", "ivo", "--external", "--provider", "idp", "--subject", "ivo-1"])
            .assert()
            .success();
        // The admin tool says what an external user expects instead of a bare refusal.
        ctx.cli()
            .args(["auth", "check", "ivo", "--password-stdin"])
            .write_stdin(format!("{PASSWORD}\n"))
            .assert()
            .code(2)
            .stderr(predicates::str::contains("external").and(predicates::str::contains("idp")));
        let server = Server::start(&ctx).await;
        let client = Client::new(&server);
        let (access, _) = client.login("hana").await;
        let (status, me) = client.get("/me", &access).await;
        assert_eq!(status, 200);
        assert_eq!((me["username"].as_str(), me["role"].as_str(), me["is_external"].as_bool()), (Some("hana"), Some("user"), Some(false)));
        assert_eq!(ctx.count("SELECT COUNT(*) FROM folders WHERE is_home AND name = 'My Folder - hana'").await, 1, "the login provisioned it");
        let external = json!({ "provider": "idp", "subject": "ivo-1", "email": null });
        let (status, body) = client.post("/login/external", external.clone(), None).await;
        assert_eq!(status, 200, "{body}");
        ctx.cli().args(["user", "convert", "ivo", "--to-internal", "--yes"]).assert().success();
        let (status, body) = client.post("/login/external", external, None).await;
        assert_eq!(status, 200, "a converted user still signs in externally: {body}");
        let (_, me) = client.get("/me", &token(&body["access_token"])).await;
        assert_eq!((me["username"].as_str(), me["is_external"].as_bool()), (Some("ivo"), Some(false)));
        // An unknown identity is provisioned just in time.
        let (status, body) = client.post("/login/external", json!({ "provider": "idp", "subject": "new-1", "email": "june@corp.example" }), None).await;
        assert_eq!(status, 200);
        let (_, me) = client.get("/me", &token(&body["access_token"])).await;
        assert_eq!((me["username"].as_str(), me["is_external"].as_bool()), (Some("june"), Some(true)));
        drop(server);
    }

    async fn sessions_record_the_peer_address_and_user_agent_and_forwarded_for_only_when_trusted(ctx) {
        ctx.bootstrap_cli();
        cli_user(&ctx, "kim");
        let sessions = |ctx: &common::Ctx| {
            let out = ctx.cli().args(["session", "list", "kim", "-o", "json"]).output().expect("list");
            let list: Value = serde_json::from_slice(&out.stdout).expect("json");
            list.as_array().expect("a list").clone()
        };
        let login_forwarded = |client: &Client| {
            client
                .http
                .post(format!("{}/login", client.base))
                .header("X-Forwarded-For", "198.51.100.1, 203.0.113.9")
                .json(&json!({ "username": "kim", "password": PASSWORD }))
                .send()
        };
        let server = Server::start(&ctx).await;
        let client = Client::new(&server);
        client.login("kim").await;
        let list = sessions(&ctx);
        assert_eq!(list[0]["ip_address"], "127.0.0.1", "the peer: {list:?}");
        assert_eq!(list[0]["user_agent"], USER_AGENT);
        assert_eq!(list[0]["last_seen_at"], list[0]["created_at"], "seen at sign-in");
        // Any client can send X-Forwarded-For: ignored unless trusted.
        assert_eq!(login_forwarded(&client).await.expect("login").status().as_u16(), 200);
        assert_eq!(sessions(&ctx)[0]["ip_address"], "127.0.0.1");
        drop(server);
        let server = Server::start_with(&ctx, &["--trust-forwarded-for"]).await;
        let client = Client::new(&server);
        assert_eq!(login_forwarded(&client).await.expect("login").status().as_u16(), 200);
        let list = sessions(&ctx);
        assert_eq!(list.len(), 3);
        assert_eq!(list[0]["ip_address"], "203.0.113.9", "the address the proxy appended");
        // A proxy that appends a header line of its own: the right-most address across all
        // lines is the proxy's, whatever the client's own line says.
        let two_lines = client
            .http
            .post(format!("{}/login", client.base))
            .header("X-Forwarded-For", "198.51.100.1, 192.0.2.50")
            .header("X-Forwarded-For", "203.0.113.77")
            .json(&json!({ "username": "kim", "password": PASSWORD }))
            .send()
            .await
            .expect("login");
        assert_eq!(two_lines.status().as_u16(), 200);
        let list = sessions(&ctx);
        assert_eq!(list.len(), 4);
        let addresses: Vec<&str> = list.iter().filter_map(|s| s["ip_address"].as_str()).collect();
        assert!(addresses.contains(&"203.0.113.77"), "the address the proxy appended: {addresses:?}");
        assert!(
            !addresses.contains(&"192.0.2.50") && !addresses.contains(&"198.51.100.1"),
            "never the client's own line: {addresses:?}"
        );
        // The terminal-less table is tab-separated with every field whole.
        let out = ctx.cli().args(["session", "list", "kim"]).output().expect("list");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(text.starts_with("id\tfamily_id\tcreated_at\texpires_at\tlast_seen_at\tip_address\tuser_agent\t"), "{text}");
        assert!(text.contains(USER_AGENT), "{text}");
        drop(server);
    }

    async fn the_invalidation_channel_is_the_databases_and_migrate_changes_it(ctx) {
        ctx.bootstrap_cli();
        for args in [
            vec!["workspace-type", "create", "team", "--title", "Team", "--capabilities", "docs.*"],
            vec!["workspace", "create", "Acme", "--type", "team"],
            vec!["role", "create", "editor", "--workspace", "Acme", "--capabilities", "docs.*"],
        ] {
            ctx.cli().args(&args).assert().success();
        }
        cli_user(&ctx, "lena");
        ctx.cli().args(["role", "assign", "lena", "editor", "--workspace", "Acme"]).assert().success();
        let lena = String::from_utf8_lossy(&ctx.cli().args(["user", "show", "lena", "-q"]).output().expect("show").stdout).trim().to_owned();
        let (recorded, other) = match ctx.backend {
            common::Backend::Sqlite => ("table", "notify"),
            _ => ("notify", "table"),
        };
        let migrate = |args: &[&str]| {
            let out = ctx.cli().args(["migrate", "-o", "json"]).args(args).output().expect("migrate");
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            serde_json::from_slice::<Value>(&out.stdout).expect("json")
        };
        assert_eq!(migrate(&[])["invalidations"], recorded, "the database records its channel");

        // A run that expects another channel is refused before it changes anything.
        let memberships = ctx.count("SELECT COUNT(*) FROM memberships").await;
        let out = ctx
            .cli()
            .env("ACCOUNTCTL_INVALIDATIONS", other)
            .args(["role", "revoke", "lena", "editor", "--workspace", "Acme", "--yes"])
            .output()
            .expect("revoke");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(&format!("`{other}`")) && err.contains(&format!("`{recorded}`")), "names both: {err}");
        assert_eq!(ctx.count("SELECT COUNT(*) FROM memberships").await, memberships, "nothing changed");
        // So is a server.
        let refused = Command::new(common::example_bin("server"))
            .args(["--listen", "127.0.0.1:0"])
            .env("DATABASE_URL", &ctx.url)
            .env("ACCOUNTCTL_INVALIDATIONS", other)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("server");
        assert_eq!(refused.code(), Some(2));
        // A flag and a variable that disagree are refused too.
        ctx.cli()
            .env("ACCOUNTCTL_INVALIDATIONS", recorded)
            .args(["migrate", "--invalidations", other])
            .assert()
            .code(2);

        if ctx.backend == common::Backend::Sqlite {
            ctx.cli().args(["migrate", "--invalidations", "notify"]).assert().code(2).stderr(predicates::str::contains("SQLite has no NOTIFY"));
            let report = migrate(&["--invalidations", "table"]);
            assert_eq!((report["invalidations"].as_str(), report["invalidations_changed"].as_bool()), (Some("table"), Some(false)));
        } else {
            // A server listening on NOTIFY follows the change to the table at once.
            let server = Server::start(&ctx).await;
            let client = Client::new(&server);
            let (access, _) = client.login("lena").await;
            assert_eq!(client.capabilities("Acme", &access).await, ["docs.*"]);
            let report = migrate(&["--invalidations", "table"]);
            assert_eq!((report["invalidations"].as_str(), report["invalidations_changed"].as_bool()), (Some("table"), Some(true)));
            assert_eq!(
                ctx.count("SELECT COUNT(*) FROM audit_events WHERE event = 'registry.invalidations' AND fields LIKE '%notify%' AND fields LIKE '%table%'").await,
                1,
                "the change is audited"
            );
            assert_eq!(migrate(&["--invalidations", "table"])["invalidations_changed"], false, "idempotent");
            // The old setting is refused now.
            ctx.cli().env("ACCOUNTCTL_INVALIDATIONS", "notify").args(["user", "list"]).assert().code(2);
            ctx.cli().args(["role", "revoke", "lena", "editor", "--workspace", "Acme", "--yes"]).assert().success();
            within_a_second("role revoke through the table", || async { client.capabilities("Acme", &access).await.is_empty() }).await;
            assert!(ctx.count("SELECT COUNT(*) FROM cache_invalidations").await > 0, "published through the table");
            ctx.cli().args(["role", "assign", "lena", "editor", "--workspace", "Acme"]).assert().success();
            within_a_second("role assign through the table", || async { client.capabilities("Acme", &access).await == ["docs.*"] }).await;
            drop(server);
        }

        // A listener started now polls the table and hears a revoke made by the CLI.
        let mut listener = InvalidationListener::start(&ctx.db).await.expect("listener");
        assert_eq!(listener.channel(), InvalidationChannel::Table);
        ctx.cli().args(["role", "revoke", "lena", "editor", "--workspace", "Acme", "--yes"]).assert().success();
        let heard = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match listener.recv().await.expect("event") {
                    ListenerEvent::Invalidated(inv) if inv.user_id.to_string() == lena => return,
                    _ => {}
                }
            }
        })
        .await;
        assert!(heard.is_ok(), "the revoke reached the table listener");
        listener.close().await;
    }
}

use accountctl::db::InvalidationChannel;
use accountctl::services::authz::{InvalidationListener, ListenerEvent};

use predicates::prelude::*;

/// The upgrade path: a PostgreSQL database migrated before the channel was recorded, whose
/// processes set `ACCOUNTCTL_INVALIDATIONS=table`, records the table at its next `migrate`
/// (run with that setting), so nothing changes for it; from then on the record decides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_migrated_before_the_record_keeps_the_channel_its_processes_used() {
    common::run_on(common::Backend::Postgres, |ctx| async move {
        ctx.exec("ALTER TABLE accountctl_registry DROP COLUMN invalidations")
            .await
            .expect("as before the record");
        ctx.exec("DELETE FROM _sqlx_migrations WHERE version = 20261205090000")
            .await
            .expect("as before the record");
        let out = ctx
            .cli()
            .env("ACCOUNTCTL_INVALIDATIONS", "table")
            .args(["migrate", "-o", "json"])
            .output()
            .expect("migrate");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let report: Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(report["applied"], json!([20261205090000_i64]), "{report}");
        assert_eq!(
            (
                report["invalidations"].as_str(),
                report["invalidations_changed"].as_bool()
            ),
            (Some("table"), Some(true))
        );
        assert_eq!(
            ctx.count("SELECT COUNT(*) FROM audit_events WHERE event = 'registry.invalidations'")
                .await,
            1
        );
        ctx.cli().args(["user", "list"]).assert().success();
        ctx.cli()
            .env("ACCOUNTCTL_INVALIDATIONS", "table")
            .args(["user", "list"])
            .assert()
            .success();
        ctx.cli()
            .env("ACCOUNTCTL_INVALIDATIONS", "notify")
            .args(["user", "list"])
            .assert()
            .code(2);
    })
    .await;
}
