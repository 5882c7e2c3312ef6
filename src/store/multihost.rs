//! libpq's multi-host connection URLs, which sqlx's own parser refuses:
//! `postgres://USER@HOST1[:PORT1],HOST2[:PORT2]/DB?target_session_attrs=read-write` (or the
//! lists in `?host=a,b&port=5432,5433`). Hosts are tried in the order given; with
//! `target_session_attrs` other than `any`, each reachable host is asked whether it is what
//! the caller wants, as libpq does (PostgreSQL manual, "Connection Strings", 34.1.1.3).

use std::str::FromStr;
use std::time::Duration;

use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgConnection};

use super::DatabaseUrl;
use crate::error::{Error, Result};

/// libpq's `target_session_attrs`: which kind of server a connection may settle on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SessionAttrs {
    Any,
    ReadWrite,
    ReadOnly,
    Primary,
    Standby,
    PreferStandby,
}

impl SessionAttrs {
    fn parse(text: &str) -> Result<Self, String> {
        Ok(match text {
            "any" => Self::Any,
            "read-write" => Self::ReadWrite,
            "read-only" => Self::ReadOnly,
            "primary" => Self::Primary,
            "standby" => Self::Standby,
            "prefer-standby" => Self::PreferStandby,
            other => {
                return Err(format!(
                    "unknown target_session_attrs {other:?}: use any, read-write, read-only, primary, standby or prefer-standby"
                ));
            }
        })
    }

    /// What a host that does not qualify is, for the error message.
    fn refusal(self) -> &'static str {
        match self {
            Self::ReadWrite | Self::Primary => "read-only or a standby",
            Self::ReadOnly => "writable",
            Self::Standby | Self::PreferStandby => "not a standby",
            Self::Any => "",
        }
    }
}

/// The hosts of one URL, in order, and what the caller asked of them.
pub(super) struct Targets {
    hosts: Vec<(String, PgConnectOptions)>,
    attrs: SessionAttrs,
    /// libpq's `connect_timeout` (which sqlx's parser ignores): how long one host gets to
    /// answer. `None` when the URL sets none (or 0, libpq's "wait indefinitely").
    pub(super) connect_timeout: Option<Duration>,
}

impl Targets {
    /// The `application_name` the URL sets, if any.
    pub(super) fn application_name(&self) -> Option<&str> {
        self.hosts.first().and_then(|(_, o)| o.get_application_name())
    }

    /// Whether a long-running pool should follow the primary ([`PrimaryFollower`]): several
    /// hosts, of which the caller wants the writable one.
    pub(super) fn follows_primary(&self) -> bool {
        self.hosts.len() > 1 && matches!(self.attrs, SessionAttrs::ReadWrite | SessionAttrs::Primary)
    }

    /// Sets `application_name` on every host's options, so the probes of [`choose`] carry
    /// the same name as the connections that follow.
    pub(super) fn set_application_name(&mut self, name: &str) {
        for (_, options) in &mut self.hosts {
            *options = options.clone().application_name(name);
        }
    }
}

/// libpq's reading of `connect_timeout`: whole seconds, 0 or less waits indefinitely, and
/// values 1 and 2 mean 2 (PostgreSQL manual, 34.1.2 "Parameter Key Words").
fn parse_connect_timeout(value: &str) -> Result<Option<Duration>, String> {
    let secs: i64 = value
        .trim()
        .parse()
        .map_err(|_| format!("invalid connect_timeout {value:?}: expected whole seconds"))?;
    Ok((secs > 0).then(|| Duration::from_secs(secs.max(2).unsigned_abs())))
}

/// Splits a PostgreSQL URL into one sqlx option set per host. Every set has
/// `extra_float_digits` turned off: sqlx sends it as a startup parameter by default, a stock
/// PgBouncer rejects the connection for it, and the schema has no floating-point column.
pub(super) fn parse(text: &str) -> Result<Targets, String> {
    let (base, query) = text.split_once('?').unwrap_or((text, ""));
    let mut attrs = SessionAttrs::Any;
    let mut query_hosts: Option<String> = None;
    let mut query_ports: Option<String> = None;
    let mut connect_timeout = None;
    let mut rest = url::form_urlencoded::Serializer::new(String::new());
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match &*key {
            "target_session_attrs" => attrs = SessionAttrs::parse(&value)?,
            "host" => query_hosts = Some(value.into_owned()),
            "port" => query_ports = Some(value.into_owned()),
            "connect_timeout" => connect_timeout = parse_connect_timeout(&value)?,
            _ => {
                rest.append_pair(&key, &value);
            }
        }
    }
    let rest = rest.finish();
    let (scheme, after_scheme) = base
        .split_once("://")
        .ok_or_else(|| "expected postgres://USER@HOST/DB".to_owned())?;
    let authority_end = after_scheme.find('/').unwrap_or(after_scheme.len());
    let (authority, path) = after_scheme.split_at(authority_end);
    let (userinfo, host_list) = match authority.rsplit_once('@') {
        Some((user, hosts)) => (Some(user), hosts),
        None => (None, authority),
    };

    let multi = host_list.contains(',')
        || query_hosts.as_deref().is_some_and(|h| h.contains(','))
        || query_ports.as_deref().is_some_and(|p| p.contains(','));
    let with_query = |url: String| if rest.is_empty() { url } else { format!("{url}?{rest}") };
    if !multi {
        // One host: sqlx parses it (host and port query parameters included) as it always did.
        let mut single = url::form_urlencoded::Serializer::new(String::new());
        if let Some(h) = &query_hosts {
            single.append_pair("host", h);
        }
        if let Some(p) = &query_ports {
            single.append_pair("port", p);
        }
        let extra = single.finish();
        let url = match (rest.is_empty(), extra.is_empty()) {
            (true, true) => base.to_owned(),
            (false, true) => format!("{base}?{rest}"),
            (true, false) => format!("{base}?{extra}"),
            (false, false) => format!("{base}?{rest}&{extra}"),
        };
        let options = PgConnectOptions::from_str(&url)
            .map_err(|e| e.to_string())?
            .extra_float_digits(None);
        let shown = if host_list.is_empty() {
            query_hosts.unwrap_or_else(|| "localhost".into())
        } else {
            host_list.to_owned()
        };
        return Ok(Targets {
            hosts: vec![(shown, options)],
            attrs,
            connect_timeout,
        });
    }

    // Several hosts: parse everything but the hosts once, then set each host and port.
    let user = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
    let template = PgConnectOptions::from_str(&with_query(format!("{scheme}://{user}localhost{path}")))
        .map_err(|e| e.to_string())?
        .extra_float_digits(None);
    let mut pairs: Vec<(String, Option<String>)> = Vec::new();
    if !host_list.is_empty() {
        for item in host_list.split(',') {
            pairs.push(split_host_port(item)?);
        }
    } else if let Some(hosts) = &query_hosts {
        pairs = hosts.split(',').map(|h| (h.trim().to_owned(), None)).collect();
    }
    if let Some(ports) = &query_ports {
        let ports: Vec<&str> = ports.split(',').map(str::trim).collect();
        if pairs.is_empty() {
            pairs = ports.iter().map(|_| ("localhost".to_owned(), None)).collect();
        }
        if ports.len() != 1 && ports.len() != pairs.len() {
            return Err(format!("{} hosts but {} ports", pairs.len(), ports.len()));
        }
        for (i, pair) in pairs.iter_mut().enumerate() {
            if pair.1.is_none() {
                pair.1 = Some(ports[if ports.len() == 1 { 0 } else { i }].to_owned());
            }
        }
    }
    let mut hosts = Vec::new();
    for (host, port) in pairs {
        if host.is_empty() {
            return Err("an empty host in the host list".into());
        }
        let mut options = if host.starts_with('/') {
            template.clone().socket(&host)
        } else {
            template.clone().host(&host)
        };
        if let Some(port) = &port {
            options = options.port(port.parse().map_err(|_| format!("invalid port {port:?}"))?);
        }
        let shown = match &port {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        hosts.push((shown, options));
    }
    Ok(Targets {
        hosts,
        attrs,
        connect_timeout,
    })
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_host_port(item: &str) -> Result<(String, Option<String>), String> {
    let item = item.trim();
    if let Some(v6) = item.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("unclosed [ in host {item:?}"))?;
        let port = after.strip_prefix(':').map(str::to_owned);
        return Ok((host.to_owned(), port));
    }
    Ok(match item.rsplit_once(':') {
        Some((host, port)) => (host.to_owned(), Some(port.to_owned())),
        None => (item.to_owned(), None),
    })
}

/// How long one host gets to answer when the URL sets no `connect_timeout`.
pub(super) const HOST_TIMEOUT: Duration = Duration::from_secs(5);

/// The options of the first host, in URL order, that is reachable and has the requested
/// attributes. With one host and `target_session_attrs=any` nothing is probed: the pool's
/// own connection is the only one. Otherwise each candidate gets one short probe
/// connection, ended cleanly, before the pool connects to the host chosen.
///
/// Errors: [`Error::Unavailable`] naming each host and what was wrong with it.
pub(super) async fn choose(url: &DatabaseUrl, targets: &Targets) -> Result<PgConnectOptions> {
    if targets.attrs == SessionAttrs::Any
        && let [(_, only)] = targets.hosts.as_slice()
    {
        return Ok(only.clone());
    }
    let mut problems = Vec::new();
    let passes: &[SessionAttrs] = match targets.attrs {
        SessionAttrs::PreferStandby => &[SessionAttrs::Standby, SessionAttrs::Any],
        other => &[other],
    };
    for &wanted in passes {
        for (shown, options) in &targets.hosts {
            match probe(options, wanted, targets.connect_timeout.unwrap_or(HOST_TIMEOUT)).await {
                Ok(true) => return Ok(options.clone()),
                Ok(false) => problems.push(format!("{shown} is {}", wanted.refusal())),
                Err(e) => problems.push(format!("{shown}: {e}")),
            }
        }
    }
    let advice = match targets.attrs {
        SessionAttrs::ReadWrite | SessionAttrs::Primary => {
            "no listed host accepts writes: check that the primary is up and listed"
        }
        _ => "no listed host could be used",
    };
    Err(Error::Unavailable(format!("{url}: {advice} ({})", problems.join("; "))))
}

/// Keeps a long-running pool (an application server's) on the primary of a multi-host URL
/// across failovers. libpq applies `target_session_attrs` at every connection attempt; a
/// pool chooses its host once, so after a failover its new connections would go to the old
/// primary, now a standby (or down), and every write would fail until a restart. The
/// follower is told when a pooled connection turns out read-only or broken (the pool's
/// acquire and connect checks, and failed `BEGIN`s), then runs [`choose`] again and points
/// the pool's future connections at the host that now accepts writes. One choice runs at a
/// time; a report while one runs is dropped (the running one answers it).
pub(crate) struct PrimaryFollower {
    url: DatabaseUrl,
    targets: Targets,
    pool: std::sync::Mutex<Option<sqlx::PgPool>>,
    choosing: tokio::sync::Mutex<()>,
}

impl PrimaryFollower {
    pub(super) fn new(url: DatabaseUrl, targets: Targets) -> Self {
        Self {
            url,
            targets,
            pool: std::sync::Mutex::new(None),
            choosing: tokio::sync::Mutex::new(()),
        }
    }

    /// The pool to steer (set once it exists; [`PrimaryFollower::detach`] at close).
    pub(super) fn attach(&self, pool: sqlx::PgPool) {
        *self.pool.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(pool);
    }

    /// Forgets the pool (which holds this follower in its hooks: the cycle ends here).
    pub(super) fn detach(&self) {
        self.pool
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
    }

    /// Whether the server behind `conn` refuses writes (`SHOW transaction_read_only`, as
    /// libpq asks). One round trip: it replaces the pool's ping before reuse.
    pub(super) async fn read_only(conn: &mut PgConnection) -> std::result::Result<bool, sqlx::Error> {
        let row = sqlx::Executor::fetch_one(&mut *conn, sqlx::raw_sql("SHOW transaction_read_only")).await?;
        let value: String = sqlx::Row::try_get(&row, 0)?;
        Ok(value == "on")
    }

    /// Chooses the host again and points the pool's new connections at it. Does nothing
    /// while another choice runs. Never fails: a formation with no writable host yet (mid
    /// failover) is logged, and the next report tries again.
    pub(super) async fn follow(&self) {
        let Ok(_choosing) = self.choosing.try_lock() else {
            return;
        };
        let Some(pool) = self
            .pool
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
        else {
            return;
        };
        let current = pool.connect_options();
        match choose(&self.url, &self.targets).await {
            Ok(options) => {
                let moved = (options.get_host(), options.get_port()) != (current.get_host(), current.get_port());
                if moved {
                    tracing::warn!(
                        from = %format!("{}:{}", current.get_host(), current.get_port()),
                        to = %format!("{}:{}", options.get_host(), options.get_port()),
                        "the primary moved (a failover): new connections go to the new primary"
                    );
                    pool.set_connect_options(sqlx::ConnectOptions::log_slow_statements(
                        options,
                        log::LevelFilter::Debug,
                        super::SLOW_STATEMENT,
                    ));
                }
            }
            Err(err) => tracing::warn!(error = %err, "looking for the primary after a failed connection"),
        }
    }

    /// [`PrimaryFollower::follow`] in the background.
    pub(super) fn follow_later(self: &std::sync::Arc<Self>) {
        let me = self.clone();
        tokio::spawn(async move { me.follow().await });
    }
}

/// Connects to one host and tells whether it has the attributes; the connection is ended
/// cleanly either way.
async fn probe(options: &PgConnectOptions, wanted: SessionAttrs, within: Duration) -> Result<bool, String> {
    let mut conn = tokio::time::timeout(within, PgConnection::connect_with(options))
        .await
        .map_err(|_| format!("no answer within {}s", within.as_secs()))?
        .map_err(|e| Error::from(e).to_string())?;
    let verdict = async {
        Ok::<bool, sqlx::Error>(match wanted {
            SessionAttrs::Any | SessionAttrs::PreferStandby => true,
            SessionAttrs::ReadWrite | SessionAttrs::ReadOnly => {
                let read_only: String = sqlx::query_scalar("SHOW transaction_read_only")
                    .fetch_one(&mut conn)
                    .await?;
                (read_only == "on") == (wanted == SessionAttrs::ReadOnly)
            }
            SessionAttrs::Primary | SessionAttrs::Standby => {
                let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
                    .fetch_one(&mut conn)
                    .await?;
                in_recovery == (wanted == SessionAttrs::Standby)
            }
        })
    }
    .await;
    let _ = conn.close().await;
    verdict.map_err(|e| Error::from(e).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(t: &Targets) -> Vec<String> {
        t.hosts.iter().map(|(s, _)| s.clone()).collect()
    }

    #[test]
    fn host_lists_in_the_authority_are_tried_in_order() {
        let t =
            parse("postgres://app:pw@db1:5433,db2,[::1]:5434/accounts?target_session_attrs=read-write&sslmode=disable")
                .expect("parses");
        assert_eq!(shown(&t), ["db1:5433", "db2", "::1:5434"]);
        assert_eq!(t.attrs, SessionAttrs::ReadWrite);
        assert_eq!(t.hosts[0].1.get_port(), 5433);
        assert_eq!(t.hosts[1].1.get_host(), "db2");
        assert_eq!(t.hosts[0].1.get_database(), Some("accounts"));
        assert_eq!(t.hosts[0].1.get_username(), "app");
    }

    #[test]
    fn host_lists_in_the_query_pair_with_port_lists() {
        let t = parse("postgresql:///accounts?host=a,b&port=5432,5433&target_session_attrs=any").expect("parses");
        assert_eq!(shown(&t), ["a:5432", "b:5433"]);
        assert!(parse("postgres:///x?host=a,b,c&port=1,2").is_err());
    }

    #[test]
    fn a_single_host_url_parses_as_before() {
        let t = parse("postgres://postgres@127.0.0.1:5432/postgres").expect("parses");
        assert_eq!(shown(&t), ["127.0.0.1:5432"]);
        assert_eq!(t.attrs, SessionAttrs::Any);
        assert!(parse("postgres://h/db?target_session_attrs=fastest").is_err());
    }
}
