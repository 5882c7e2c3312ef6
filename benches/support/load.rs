//! Scenario `load`: the application server's request path under concurrency.
//!
//! On a database of `ACCOUNTCTL_BENCH_LOAD_USERS` users (default 1M × `ACCOUNTCTL_BENCH_SCALE`;
//! the figure is 10M), built with the engine's bulk load, it runs the example server
//! (`examples/server.rs`) and the bare baseline (`examples/load_baseline.rs`: the same
//! SELECTs on a pool of the same size, nothing else) side by side, and drives each with 64
//! concurrent HTTP clients (64 users, one session each) alternating `GET /me` and
//! `GET /workspaces/Acme/capabilities`. The two servers take turns in windows of
//! `ACCOUNTCTL_BENCH_LOAD_WINDOW` seconds (default 5), `ACCOUNTCTL_BENCH_LOAD_ROUNDS` rounds
//! each (default 6), so a machine that gets busier slows both alike.
//!
//! Then, with the same 64 clients still loading the example server, 100 trials each of: a
//! `accountctl user disable` process, after whose exit the user's `/me` is polled until it
//! answers 401; and a `accountctl role revoke` process, after whose exit the user's
//! capabilities (cached by the server beforehand) are polled until they are empty. The
//! latency is from the command's exit (its commit is done) to the first answer showing the
//! change.
//!
//! Targets (issue "proof under load", item 4): throughput ≥ 0.9× the baseline's, p99 ≤ 1.5×
//! the baseline's, both invalidations ≤ 200 ms at p99.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use accountctl::db::Backend;
use accountctl::domain::UserRef;
use accountctl::password::{self, Secret};

use super::{Fresh, Row, bench_workspace, engine_bulk_load, pg_admin, scale, secs};

const CLIENTS: usize = 64;
const TRIALS: usize = 100;
const PASSWORD: &str = "bench password";

/// A count from the environment: digits (`_` allowed), or with a `k` / `m` suffix (`10m`).
fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name).ok().map(|v| {
        let text = v.trim().to_ascii_lowercase().replace('_', "");
        let (digits, factor) = match text.strip_suffix('m') {
            Some(d) => (d, 1_000_000),
            None => match text.strip_suffix('k') {
                Some(d) => (d, 1000),
                None => (text.as_str(), 1),
            },
        };
        digits
            .parse::<usize>()
            .map(|n| n * factor)
            .unwrap_or_else(|_| panic!("{name}: not a count: {v:?}"))
    })
}

/// The release builds of the example server and the baseline, built once by this bench
/// (`cargo build --release --example server --example load_baseline`) next to the bench's
/// own binary.
fn example_binaries() -> (PathBuf, PathBuf) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    // Not the variables cargo set for this bench (`CARGO_PKG_*`, `CARGO_MANIFEST_DIR`…):
    // build scripts that watch them would see a change and rebuild half the tree.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if (key.starts_with("CARGO_") && key != "CARGO_HOME" && key != "CARGO_TARGET_DIR")
            || key == "OUT_DIR"
            || key == "RUSTC"
        {
            build.env_remove(&key);
        }
    }
    let status = build
        .args([
            "build",
            "--release",
            "--example",
            "server",
            "--example",
            "load_baseline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo build --release --example server --example load_baseline");
    assert!(status.success(), "building the example servers failed");
    // target/release/deps/accountctl-HASH → target/release/examples/
    let exe = std::env::current_exe().expect("current_exe");
    let release = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the bench lives in target/PROFILE/deps");
    let examples = release.join("examples");
    (examples.join("server"), examples.join("load_baseline"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A server process, stopped (SIGINT, then waited for) when dropped.
struct Server {
    child: std::process::Child,
    base: String,
}

impl Server {
    async fn start(bin: &PathBuf, url: &str, client: &reqwest::Client) -> Self {
        let port = free_port();
        let child = Command::new(bin)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("DATABASE_URL", url)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
        let server = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(answer) = client.get(format!("{}/me", server.base)).send().await
                && answer.status() == reqwest::StatusCode::UNAUTHORIZED
            {
                return server;
            }
            assert!(Instant::now() < deadline, "{} did not start serving", bin.display());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: signalling our own child by its process id.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGINT);
        }
        let _ = self.child.wait();
    }
}

/// What one window (or several) of load measured on one server.
#[derive(Default)]
struct Load {
    requests: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Load {
    fn absorb(&mut self, other: Load) {
        self.requests += other.requests;
        self.elapsed += other.elapsed;
        self.latencies.extend(other.latencies);
    }

    fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// One client's loop: `/me` and capabilities in turn until `stop` says so; every answer
/// must be 200.
async fn client_loop(client: reqwest::Client, base: String, token: String, stop: Arc<AtomicBool>) -> Load {
    let (me, caps) = (format!("{base}/me"), format!("{base}/workspaces/Acme/capabilities"));
    let mut load = Load::default();
    let started = Instant::now();
    let mut k = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let url = if k.is_multiple_of(2) { &me } else { &caps };
        k += 1;
        let t = Instant::now();
        let answer = client.get(url).bearer_auth(&token).send().await.expect("request");
        let status = answer.status();
        let _ = answer.bytes().await.expect("body");
        assert_eq!(status, reqwest::StatusCode::OK, "{url}");
        load.latencies.push(t.elapsed());
        load.requests += 1;
    }
    load.elapsed = started.elapsed();
    load
}

/// Starts the 64 clients against `base`; they run until `stop` is set.
fn start_clients(
    client: &reqwest::Client,
    base: &str,
    tokens: &[String],
    stop: &Arc<AtomicBool>,
) -> tokio::task::JoinSet<Load> {
    let mut set = tokio::task::JoinSet::new();
    for token in tokens {
        set.spawn(client_loop(
            client.clone(),
            base.to_owned(),
            token.clone(),
            stop.clone(),
        ));
    }
    set
}

/// Runs the clients against `base` for `window`; the requests answered and the latencies.
async fn window(client: &reqwest::Client, base: &str, tokens: &[String], window: Duration) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let mut set = start_clients(client, base, tokens, &stop);
    let started = Instant::now();
    tokio::time::sleep(window).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = Load::default();
    while let Some(load) = set.join_next().await {
        let load = load.expect("client task");
        total.requests += load.requests;
        total.latencies.extend(load.latencies);
    }
    total.elapsed = started.elapsed();
    total
}

/// Runs one CLI command to completion (it must exit 0); returns when it exited.
fn cli(url: &str, args: &[&str]) -> Instant {
    let out = Command::new(env!("CARGO_BIN_EXE_accountctl"))
        .args(args)
        .env("DATABASE_URL", url)
        .stdin(Stdio::null())
        .output()
        .expect("spawn accountctl");
    let exited = Instant::now();
    assert!(
        out.status.success(),
        "accountctl {args:?}: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    exited
}

/// Polls `url` with `token` until `done` says the answer shows the change; the time from
/// `since` to that answer (at most 10 s, then the trial counts as 10 s).
async fn until_seen(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    since: Instant,
    done: impl Fn(reqwest::StatusCode, &serde_json::Value) -> bool,
) -> Duration {
    loop {
        let answer = client.get(url).bearer_auth(token).send().await.expect("poll");
        let status = answer.status();
        let body: serde_json::Value = answer.json().await.unwrap_or(serde_json::Value::Null);
        if done(status, &body) || since.elapsed() > Duration::from_secs(10) {
            return since.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn distribution(sorted: &[Duration]) -> String {
    let buckets = [10u64, 20, 50, 100, 200];
    let mut parts = Vec::new();
    let mut below = 0;
    for b in buckets {
        let n = sorted.iter().filter(|d| d.as_millis() as u64 <= b).count();
        parts.push(format!("≤{b} ms: {}", n - below));
        below = n;
    }
    parts.push(format!(">200 ms: {}", sorted.len() - below));
    parts.join(", ")
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

pub(super) async fn bench_load(f: &Fresh, rows: &mut Vec<Row>, label: &'static str) {
    let users = env_usize("ACCOUNTCTL_BENCH_LOAD_USERS").unwrap_or_else(|| scale(1_000_000));
    let rounds = env_usize("ACCOUNTCTL_BENCH_LOAD_ROUNDS").unwrap_or(6);
    let window_len = Duration::from_secs(env_usize("ACCOUNTCTL_BENCH_LOAD_WINDOW").unwrap_or(5) as u64);
    assert!(
        users >= CLIENTS + 2 * TRIALS,
        "ACCOUNTCTL_BENCH_LOAD_USERS: at least {}",
        CLIENTS + 2 * TRIALS
    );
    let (server_bin, baseline_bin) = example_binaries();

    // The directory: `users` users load0…, each with a password, an email passport, a
    // membership, a home folder and an audit row.
    let (ws, role) = bench_workspace(f).await;
    let phc = password::hash_blocking(&Secret::new(PASSWORD.into())).expect("hash");
    let built = engine_bulk_load(f, "load", 0x500, users, &phc, ws, role).await;
    if f.backend == Backend::Postgres {
        pg_admin(&f.url, "ANALYZE").await;
    }
    eprintln!("{label}: load: {users} users bulk-loaded in {}", secs(built));

    // The measured users hold a role with capabilities in Acme: the 64 clients, then 100
    // to disable, then 100 whose role is revoked.
    let app = f.app();
    let caps = accountctl::domain::parse_capabilities("docs.*").expect("caps");
    app.workspaces()
        .create_type("org", "Organisation", &caps, true)
        .await
        .expect("type");
    app.workspaces().create("Acme", "org", None, true).await.expect("Acme");
    app.workspaces()
        .create_role("Acme", "editor", &caps, true)
        .await
        .expect("role");
    let measured = CLIENTS + 2 * TRIALS;
    let mut tokens = Vec::with_capacity(measured);
    for i in 0..measured {
        let name = format!("load{i}");
        if !(CLIENTS..CLIENTS + TRIALS).contains(&i) {
            app.memberships()
                .assign(&UserRef::Username(name.clone()), "Acme", "editor")
                .await
                .expect("assign");
        }
        let session = app
            .auth()
            .login(&name, &Secret::new(PASSWORD.into()), true)
            .await
            .expect("sign in")
            .session
            .expect("session");
        tokens.push(session.access_token);
    }
    let (load_tokens, rest) = tokens.split_at(CLIENTS);
    let (disable_tokens, revoke_tokens) = rest.split_at(TRIALS);

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(2 * CLIENTS)
        .build()
        .expect("client");
    let ours = Server::start(&server_bin, &f.url, &client).await;
    let bare = Server::start(&baseline_bin, &f.url, &client).await;

    // Warm both (connections, the server's capability cache), then the measured rounds,
    // in turns.
    window(&client, &ours.base, load_tokens, Duration::from_secs(2)).await;
    window(&client, &bare.base, load_tokens, Duration::from_secs(2)).await;
    let (mut our_load, mut bare_load) = (Load::default(), Load::default());
    for round in 0..rounds {
        if round % 2 == 0 {
            our_load.absorb(window(&client, &ours.base, load_tokens, window_len).await);
            bare_load.absorb(window(&client, &bare.base, load_tokens, window_len).await);
        } else {
            bare_load.absorb(window(&client, &bare.base, load_tokens, window_len).await);
            our_load.absorb(window(&client, &ours.base, load_tokens, window_len).await);
        }
    }
    drop(bare);
    our_load.latencies.sort();
    bare_load.latencies.sort();
    let (ours_rps, bare_rps) = (our_load.per_second(), bare_load.per_second());
    let (o50, o99) = (
        percentile(&our_load.latencies, 0.50),
        percentile(&our_load.latencies, 0.99),
    );
    let (b50, b99) = (
        percentile(&bare_load.latencies, 0.50),
        percentile(&bare_load.latencies, 0.99),
    );

    // The invalidation trials, under the same load on the example server.
    let stop = Arc::new(AtomicBool::new(false));
    let mut background = start_clients(&client, &ours.base, load_tokens, &stop);
    let me_url = format!("{}/me", ours.base);
    let caps_url = format!("{}/workspaces/Acme/capabilities", ours.base);
    let mut disabled = Vec::with_capacity(TRIALS);
    let mut revoked = Vec::with_capacity(TRIALS);
    for i in 0..TRIALS {
        let token = &disable_tokens[i];
        let name = format!("load{}", CLIENTS + i);
        let exited = tokio::task::block_in_place(|| cli(&f.url, &["--yes", "user", "disable", &name]));
        disabled.push(
            until_seen(&client, &me_url, token, exited, |s, _| {
                s == reqwest::StatusCode::UNAUTHORIZED
            })
            .await,
        );

        let token = &revoke_tokens[i];
        let name = format!("load{}", CLIENTS + TRIALS + i);
        // Cached by the server before the change.
        let before = client.get(&caps_url).bearer_auth(token).send().await.expect("caps");
        let before: serde_json::Value = before.json().await.expect("caps json");
        assert_eq!(before["capabilities"], serde_json::json!(["docs.*"]), "{name}");
        let exited = tokio::task::block_in_place(|| {
            cli(
                &f.url,
                &["--yes", "role", "revoke", &name, "editor", "--workspace", "Acme"],
            )
        });
        revoked.push(
            until_seen(&client, &caps_url, token, exited, |s, body| {
                s == reqwest::StatusCode::OK && body["capabilities"] == serde_json::json!([])
            })
            .await,
        );
    }
    stop.store(true, Ordering::Relaxed);
    while let Some(load) = background.join_next().await {
        load.expect("client task");
    }
    drop(ours);
    disabled.sort();
    revoked.sort();

    eprintln!(
        "{label}: load: ours {} requests in {:.1} s, baseline {} in {:.1} s",
        our_load.requests,
        our_load.elapsed.as_secs_f64(),
        bare_load.requests,
        bare_load.elapsed.as_secs_f64()
    );
    eprintln!("{label}: load: user disable → 401: {}", distribution(&disabled));
    eprintln!("{label}: load: role revoke → capabilities: {}", distribution(&revoked));
    let at = if users >= 1_000_000 {
        format!("{}M users", users / 1_000_000)
    } else {
        format!("{}k users", users / 1000)
    };
    rows.push(Row {
        backend: label,
        scenario: "load: 64 clients, /me + capabilities: throughput",
        ours: format!("{ours_rps:.0} req/s ({at})"),
        baseline: format!("{bare_rps:.0} req/s"),
        ratio: format!("{:.2}x", ours_rps / bare_rps),
        target: ">= 0.9x",
    });
    rows.push(Row {
        backend: label,
        scenario: "load: latency p50 / p99",
        ours: format!("{} / {}", ms(o50), ms(o99)),
        baseline: format!("{} / {}", ms(b50), ms(b99)),
        ratio: format!("{:.2}x (p99)", o99.as_secs_f64() / b99.as_secs_f64()),
        target: "p99 <= 1.5x",
    });
    for (scenario, sorted) in [
        (
            "load: `user disable` exit → /me 401, 100 trials: p50 / p99 / max",
            &disabled,
        ),
        (
            "load: `role revoke` exit → capabilities, 100 trials: p50 / p99 / max",
            &revoked,
        ),
    ] {
        rows.push(Row {
            backend: label,
            scenario,
            ours: format!(
                "{} / {} / {}",
                ms(percentile(sorted, 0.5)),
                ms(percentile(sorted, 0.99)),
                ms(percentile(sorted, 1.0))
            ),
            baseline: "-".into(),
            ratio: "-".into(),
            target: "p99 <= 200 ms",
        });
    }
}
