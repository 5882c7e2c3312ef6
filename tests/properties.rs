//! Property tests for every parser (proptest): import rows (CSV and JSON Lines), password
//! hashes (argon2 PHC strings with random parameters, bcrypt, and the scrypt and PBKDF2
//! forms that are refused), GDPR durations and due dates, database URLs (single and
//! multi-host, libpq `key=value`), the config file, user, workspace and role names, emails,
//! phone numbers, and `<user>` arguments.
//!
//! Three properties throughout: no input makes a parser panic; every refusal is an error
//! with the documented exit code (2 for a malformed value, `src/error.rs`); what is accepted
//! round-trips (a name that is accepted is found by the same string; import → export →
//! import gives the same rows, on SQLite and on PostgreSQL).
//!
//! A failing case is shrunk to a small one and its seed saved in
//! `tests/properties.proptest-regressions`, which every later run replays first.
//! `PROPTEST_CASES=N` runs N cases of every property instead of the counts below (kept small
//! so the file runs in seconds); docs/reliability.md ("Property tests") says more.

mod common;

use std::io::Cursor;

use accountctl::Error;
use accountctl::db::{Backend as DbBackend, DatabaseUrl};
use accountctl::domain::{
    Capability, Email, MAX_DURATION, Phone, Timestamp, UserRef, Username, clean_text, format_time, parse_capabilities,
    parse_duration, parse_erasure_due, validate_role_name, validate_slug, validate_workspace_name,
};
use accountctl::password::{self, Secret};
use accountctl::services::accounts::NewUser;
use accountctl::services::import::{self, Format, ImportRow};
use proptest::prelude::*;
use proptest::test_runner::{FileFailurePersistence, TestCaseError, TestRunner};

// ---------------------------------------------------------------------------------------
// Configuration and shared checks

/// `cases` cases (or `PROPTEST_CASES`), failures saved beside this file.
fn config(cases: u32) -> ProptestConfig {
    config_saving_to(cases, "proptest-regressions")
}

/// [`config`] with failures saved in `tests/properties.EXTENSION`. Every property of a file
/// replays every seed saved in it, so the costly ones (a database per case) keep their own.
fn config_saving_to(cases: u32, extension: &'static str) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(extension))),
        source_file: Some(file!()),
        max_shrink_iters: 512,
        ..ProptestConfig::default()
    }
}

/// A refusal of malformed input: [`Error::Invalid`], exit code 2.
fn refused_as_invalid(err: &Error) -> Result<(), TestCaseError> {
    prop_assert!(matches!(err, Error::Invalid(_)), "not Error::Invalid: {err:?}");
    prop_assert_eq!(err.exit_code(), 2, "{}", err);
    Ok(())
}

/// Runs a property whose cases are async (they use a database) from inside a multi-threaded
/// tokio test: the runner is synchronous, each case is driven to completion on the runtime.
fn run_async<S, F, Fut>(cases: u32, extension: &'static str, strategy: S, test: F)
where
    S: Strategy,
    S::Value: Clone + 'static,
    F: Fn(S::Value) -> Fut,
    Fut: std::future::Future<Output = Result<(), TestCaseError>>,
{
    tokio::task::block_in_place(|| {
        let handle = tokio::runtime::Handle::current();
        // A case costs databases and processes: shrink a failure in fewer steps.
        let mut runner = TestRunner::new(ProptestConfig {
            max_shrink_iters: 48,
            ..config_saving_to(cases, extension)
        });
        if let Err(failure) = runner.run(&strategy, |value| handle.block_on(test(value))) {
            panic!("{failure}");
        }
    });
}

// ---------------------------------------------------------------------------------------
// Strategies

/// Any text, weighted towards the characters parsers care about.
fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => any::<String>(),
        2 => "[ -~]{0,40}",
        2 => "[\\x00-\\x1f\\x7f\\u{85}\\u{a0}\\u{ad}\\u{200b}-\\u{200f}\\u{2028}-\\u{202e}\\u{feff} a-fA-F0-9@+().:;,'\"=\\\\/?#%&$_-]{0,40}",
        1 => "\\PC{0,80}",
    ]
}

fn username_like() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[A-Za-z0-9._-]{2,24}",
        1 => "[a-fA-F0-9-]{6,40}",
        1 => "[A-Za-z0-9._-]{60,70}",
        2 => any_text(),
    ]
}

fn email_like() -> impl Strategy<Value = String> {
    let label = "[A-Za-z0-9]([A-Za-z0-9-]{0,8}[A-Za-z0-9])?";
    prop_oneof![
        4 => (
            "[ ]{0,2}",
            "[A-Za-z0-9._%+'=&*/?^{|}~!#$-]{1,24}",
            prop::collection::vec(label, 2..4),
            "[ ]{0,2}"
        )
            .prop_map(|(lead, local, labels, tail)| format!("{lead}{local}@{}{tail}", labels.join("."))),
        1 => "[^\\s]{0,10}@[^\\s]{0,20}",
        1 => (prop::sample::select(vec!["\n", "\t", "\r\n", "\u{85}", " "]), any::<bool>())
            .prop_map(|(c, before)| if before { format!("{c}alice@example.com") } else { format!("alice@example.com{c}") }),
        1 => any_text().prop_map(|t| format!("{t}@example.com")),
        1 => any_text(),
    ]
}

/// Phone numbers as people type them: digits, and separators anywhere, before the `+` too.
fn phone_like() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (
            "[ .()-]{0,3}",
            "[1-9]",
            prop::collection::vec(("[ .()-]{0,2}", "[0-9]"), 5..16),
            "[ .()-]{0,2}"
        )
            .prop_map(|(lead, first, rest, tail)| {
                let digits: String = rest.into_iter().map(|(sep, d)| format!("{sep}{d}")).collect();
                format!("{lead}+{first}{digits}{tail}")
            }),
        1 => "\\+[0-9 ]{0,20}",
        1 => prop::sample::select(vec!["\n", "\t", "\r", " "]).prop_map(|c| format!("+4915112345678{c}")),
        1 => any_text().prop_map(|t| format!("+{t}")),
    ]
}

fn workspace_name_like() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[A-Za-z0-9 ._:;,'=+@&-]{1,24}",
        2 => "\\PC{1,24}",
        1 => "[a-fA-F0-9-]{8,36}",
        1 => any_text(),
    ]
}

fn role_name_like() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[A-Za-z0-9._-]{1,24}",
        1 => "[a-fA-F0-9-]{8,36}",
        1 => any_text(),
    ]
}

// ---------------------------------------------------------------------------------------
// Names, emails, phones and `<user>` arguments, without a database

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn a_username_is_accepted_as_given_and_read_back_as_a_username(text in username_like()) {
        match Username::parse(&text) {
            Ok(name) => {
                prop_assert_eq!(name.as_str(), text.as_str());
                prop_assert_eq!(UserRef::parse(&text).ok(), Some(UserRef::Username(text.clone())));
            }
            Err(e) => refused_as_invalid(&e)?,
        }
    }

    #[test]
    fn an_accepted_email_is_normalised_once_and_read_back_as_that_email(text in email_like()) {
        match Email::parse(&text) {
            Ok(email) => {
                prop_assert_eq!(email.as_str(), text.trim().to_lowercase());
                prop_assert!(email.as_str().len() <= 254);
                prop_assert_eq!(Email::parse(email.as_str()).ok(), Some(email.clone()), "normalising is idempotent");
                prop_assert_eq!(UserRef::parse(&text).ok(), Some(UserRef::Email(email)), "found by the same string");
            }
            Err(e) => refused_as_invalid(&e)?,
        }
    }

    #[test]
    fn an_accepted_phone_is_e164_and_read_back_as_that_phone(text in phone_like()) {
        match Phone::parse(&text) {
            Ok(phone) => {
                let digits = phone.as_str().strip_prefix('+').unwrap_or_default();
                prop_assert!((7..=15).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit()), "{}", phone);
                prop_assert_eq!(Phone::parse(phone.as_str()).ok(), Some(phone.clone()), "normalising is idempotent");
                prop_assert_eq!(UserRef::parse(&text).ok(), Some(UserRef::Phone(phone)), "found by the same string");
            }
            Err(e) => refused_as_invalid(&e)?,
        }
    }

    #[test]
    fn a_user_argument_parses_or_is_invalid_and_its_display_parses_back(text in prop_oneof![
        username_like(), email_like(), phone_like(), any_text(),
        any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).to_string()),
        any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).simple().to_string().to_uppercase()),
    ]) {
        match UserRef::parse(&text) {
            Ok(user) => {
                if let UserRef::Username(name) = &user {
                    prop_assert_eq!(name.as_str(), text.trim());
                }
                prop_assert_eq!(UserRef::parse(&user.to_string()).ok(), Some(user));
            }
            Err(e) => refused_as_invalid(&e)?,
        }
    }

    #[test]
    fn workspace_role_and_type_names_are_accepted_as_given_or_refused_as_invalid(
        workspace in workspace_name_like(),
        role in role_name_like(),
        slug in prop_oneof!["[a-z0-9_-]{1,70}", any_text()],
        capabilities in prop_oneof!["[a-z0-9_.*,-]{0,40}", any_text()],
    ) {
        if let Err(e) = validate_workspace_name(&workspace) {
            refused_as_invalid(&e)?;
        } else {
            prop_assert!(uuid::Uuid::parse_str(&workspace).is_err());
            prop_assert_eq!(workspace.trim(), workspace.as_str());
        }
        if let Err(e) = validate_role_name(&role) {
            refused_as_invalid(&e)?;
        }
        if let Err(e) = validate_slug(&slug) {
            refused_as_invalid(&e)?;
        }
        match parse_capabilities(&capabilities) {
            Ok(list) => {
                for cap in list {
                    prop_assert_eq!(Capability::parse(cap.as_str()).ok(), Some(cap.clone()));
                    prop_assert!(cap.grants(cap.as_str()));
                }
            }
            Err(e) => refused_as_invalid(&e)?,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Password hashes

/// Standard base64 without padding (the PHC string alphabet).
fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
}

fn argon2_phc_like() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["argon2id", "argon2i", "argon2d", "argon2x", "scrypt"]),
        prop::option::of(prop::sample::select(vec![16u32, 19, 20])),
        prop_oneof![0u32..=64, 8u32..=70_000, Just(u32::MAX), any::<u32>()],
        prop_oneof![0u32..=12, any::<u32>()],
        prop_oneof![0u32..=10, any::<u32>()],
        prop::collection::vec(any::<u8>(), 0..48),
        prop::collection::vec(any::<u8>(), 0..72),
        prop::sample::select(vec!["", ",keyid=AAAA", ",data=AAAA", ",x=1"]),
    )
        .prop_map(|(alg, version, m, t, p, salt, out, extra)| {
            let version = version.map(|v| format!("$v={v}")).unwrap_or_default();
            format!("${alg}{version}$m={m},t={t},p={p}{extra}${}${}", b64(&salt), b64(&out))
        })
}

fn bcrypt_like() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["2a", "2b", "2y", "2x", "2"]),
        0u32..=99,
        "[./A-Za-z0-9]{40,60}",
    )
        .prop_map(|(variant, cost, rest)| format!("${variant}${cost:02}${rest}"))
}

fn unsupported_phc_like() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec![
            "scrypt",
            "pbkdf2",
            "pbkdf2-sha256",
            "pbkdf2-sha512",
            "sha512-crypt",
            "5",
            "6",
        ]),
        0u32..=1_000_000,
        0u32..=32,
        0u32..=16,
        prop::collection::vec(any::<u8>(), 0..32),
        prop::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(alg, n, r, p, salt, out)| match alg {
            "scrypt" => format!("$scrypt$ln={},r={r},p={p}${}${}", n % 32, b64(&salt), b64(&out)),
            "5" | "6" => format!("${alg}$rounds={n}${}${}", b64(&salt), b64(&out)),
            other => format!("${other}$i={n},l={r}${}${}", b64(&salt), b64(&out)),
        })
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn any_text_as_a_password_hash_is_accepted_within_bounds_or_refused_as_invalid(
        hash in prop_oneof![argon2_phc_like(), bcrypt_like(), unsupported_phc_like(), any_text()],
    ) {
        match password::check_hash(&hash) {
            Ok(()) => {
                if let Some(rest) = hash.strip_prefix('$').and_then(|h| h.split_once('$')).map(|(_, r)| r) {
                    if hash.starts_with("$2") {
                        let cost: u32 = rest.get(..2).and_then(|c| c.parse().ok()).unwrap_or(0);
                        prop_assert!((password::MIN_BCRYPT_COST..=password::MAX_BCRYPT_COST).contains(&cost), "{}", hash);
                    } else {
                        prop_assert!(hash.starts_with("$argon2"), "only argon2 and bcrypt are accepted: {}", hash);
                        let param = |name: &str| -> u64 {
                            rest.split(['$', ','])
                                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                                .and_then(|v| v.parse().ok())
                                .unwrap_or(u64::MAX)
                        };
                        let (m, t, p) = (param("m"), param("t"), param("p"));
                        prop_assert!(m <= u64::from(password::MAX_ARGON2_MEMORY_KIB), "{}", hash);
                        prop_assert!(t <= u64::from(password::MAX_ARGON2_TIME_COST), "{}", hash);
                        prop_assert!(p <= u64::from(password::MAX_ARGON2_LANES), "{}", hash);
                        prop_assert!(m * t <= password::MAX_ARGON2_WORK_KIB, "{}", hash);
                    }
                } else {
                    prop_assert!(false, "accepted a hash without an algorithm: {}", hash);
                }
            }
            Err(e) => refused_as_invalid(&e)?,
        }
        let _ = password::needs_rehash(&hash);
    }
}

proptest! {
    // Each case verifies, which costs an argon2 run (the refused ones a dummy run).
    #![proptest_config(config(24))]

    #[test]
    fn real_argon2_hashes_with_random_parameters_verify_only_their_password(
        algorithm in prop::sample::select(vec![argon2::Algorithm::Argon2id, argon2::Algorithm::Argon2i, argon2::Algorithm::Argon2d]),
        lanes in 1u32..=4,
        extra_memory in 0u32..=256,
        passes in 1u32..=3,
        output in 16usize..=64,
        secret in "\\PC{1,40}",
    ) {
        use argon2::password_hash::PasswordHasher as _;
        let params = argon2::Params::new(8 * lanes + extra_memory, passes, lanes, Some(output)).expect("params");
        let phc = argon2::Argon2::new(algorithm, argon2::Version::V0x13, params)
            .hash_password(secret.as_bytes())
            .expect("hash")
            .to_string();
        prop_assert!(password::check_hash(&phc).is_ok(), "{}", phc);
        prop_assert!(password::verify_blocking(&phc, &Secret::new(secret.clone())));
        let other = format!("{secret}x");
        prop_assert!(!password::verify_blocking(&phc, &Secret::new(other)));
        prop_assert!(password::needs_rehash(&phc), "weaker than the current parameters: {}", phc);
    }

    #[test]
    fn refused_hashes_never_verify(
        hash in prop_oneof![unsupported_phc_like(), bcrypt_like(), argon2_phc_like(), any_text()],
        secret in "\\PC{0,20}",
    ) {
        prop_assume!(password::check_hash(&hash).is_err());
        prop_assert!(!password::verify_blocking(&hash, &Secret::new(secret)));
    }
}

proptest! {
    #![proptest_config(config(8))]

    #[test]
    fn real_bcrypt_hashes_verify_only_their_password(
        cost in 4u32..=5,
        secret in "[ -~]{1,40}",
        variant in prop::sample::select(vec![bcrypt::Version::TwoA, bcrypt::Version::TwoB, bcrypt::Version::TwoY]),
    ) {
        let hash = bcrypt::hash_with_result(&secret, cost).expect("bcrypt").format_for_version(variant);
        prop_assert!(password::check_hash(&hash).is_ok(), "{}", hash);
        prop_assert!(password::verify_blocking(&hash, &Secret::new(secret.clone())));
        let other = format!("{secret}x");
        prop_assert!(!password::verify_blocking(&hash, &Secret::new(other)));
        prop_assert!(password::needs_rehash(&hash));
    }
}

// ---------------------------------------------------------------------------------------
// GDPR durations and due dates

fn duration_like() -> impl Strategy<Value = String> {
    let unit = prop::sample::select(vec![
        "s", "sec", "m", "min", "h", "hours", "d", "day", "days", "w", "week", "weeks", "M", "months", "y", "years",
        "ms", "us", "ns", "",
    ]);
    prop_oneof![
        4 => prop::collection::vec((0u64..=400_000, unit.clone()), 1..4)
            .prop_map(|parts| parts.iter().map(|(n, u)| format!("{n}{u}")).collect::<Vec<_>>().join(" ")),
        1 => (any::<u64>(), unit).prop_map(|(n, u)| format!("{n}{u}")),
        1 => "-?[0-9]{1,25} ?[a-zA-Z]{0,6}",
        1 => any_text(),
    ]
}

/// Any instant chrono can represent, weighted towards today's centuries and the extremes.
fn instant() -> impl Strategy<Value = Timestamp> {
    let min = chrono::DateTime::<chrono::Utc>::MIN_UTC.timestamp();
    let max = chrono::DateTime::<chrono::Utc>::MAX_UTC.timestamp();
    prop_oneof![
        4 => 0i64..=253_402_300_799, // 1970 to 9999
        1 => (max - 40_000_000_000)..=max,
        1 => min..=max,
    ]
    .prop_map(|s| chrono::DateTime::from_timestamp(s, 0).unwrap_or_default())
}

fn due_like() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::collection::vec((0u64..=200_000, prop::sample::select(vec!["d", "day", "days", "w", "week", "weeks", "m", "h", "M", ""])), 1..3)
            .prop_map(|parts| parts.iter().map(|(n, u)| format!("{n}{u}")).collect::<Vec<_>>().join(" ")),
        2 => (-300_000i32..=300_000, 1u32..=13, 1u32..=32).prop_map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}")),
        2 => (0i32..=12_000, 1u32..=12, 1u32..=28, 0u32..=23, "(Z|[+-][0-9]{2}:[0-9]{2})").prop_map(|(y, m, d, h, z)| format!("{y:04}-{m:02}-{d:02}T{h:02}:00:00{z}")),
        1 => any::<u64>().prop_map(|n| format!("{n}d")),
        1 => any_text(),
    ]
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn an_accepted_duration_is_positive_bounded_and_reads_back_from_its_own_text(text in duration_like()) {
        match parse_duration(&text) {
            Ok(d) => {
                prop_assert!(d > chrono::Duration::zero() && d <= MAX_DURATION, "{} → {:?}", text, d);
                let std = d.to_std().expect("positive");
                let again = humantime::format_duration(std).to_string();
                prop_assert_eq!(parse_duration(&again).ok(), Some(d), "{} → {}", text, again);
            }
            Err(e) => refused_as_invalid(&e)?,
        }
    }

    #[test]
    fn an_accepted_due_time_is_now_or_later_within_the_bound_and_reads_back_as_a_date(
        text in due_like(),
        now in instant(),
    ) {
        match parse_erasure_due(&text, now) {
            Ok(due) => {
                prop_assert!(due >= now, "{} at {} → {}", text, now, due);
                prop_assert!(due - now <= MAX_DURATION, "{} at {} → {}", text, now, due);
                // What `gdpr list` prints for it is accepted again as the same instant (RFC
                // 3339 has four-digit years: a clock past 9999 is out of its reach).
                if (1..=9999).contains(&chrono::Datelike::year(&due)) {
                    prop_assert_eq!(parse_erasure_due(&format_time(due), now).ok(), Some(due));
                }
            }
            Err(e) => refused_as_invalid(&e)?,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Database URLs

/// How a password sits in a URL: as given, percent-encoded (every byte but the unreserved
/// ones, RFC 3986 §2.3), or form-encoded as a query value (a space as `+`).
fn url_encodings(password: &str) -> Vec<String> {
    let encoded: String = password
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let query: String = url::form_urlencoded::byte_serialize(password.as_bytes()).collect();
    vec![password.to_owned(), encoded, query]
}

#[derive(Debug, Clone)]
struct UrlCase {
    /// The text with `\u{1}` where the password goes.
    template: String,
    password: String,
    /// Whether the password goes in percent-encoded (always, in a query, when it holds a
    /// character that would end the value: there the URL itself says where it ends).
    encoded: bool,
}

impl UrlCase {
    fn in_query(&self) -> bool {
        self.template.contains("password=\u{1}") && self.template.contains("://")
    }

    /// The password as it stands in the text.
    fn written(&self) -> String {
        let encodings = url_encodings(&self.password);
        if self.in_query() && (self.encoded || self.password.contains(['&', '#', '%', '+', '=', ' '])) {
            encodings[2].clone()
        } else if self.encoded {
            encodings[1].clone()
        } else {
            self.password.clone()
        }
    }

    fn text(&self) -> String {
        self.template.replace('\u{1}', &self.written())
    }

    /// The pieces of the password (4 characters, of each form it may take) that do not
    /// appear in the rest of the text: none of them may be shown.
    fn secret_pieces(&self) -> Vec<String> {
        // What the checks print around the URL, which a piece may happen to match.
        let skeleton = format!(
            "{} | DatabaseUrl() error near : <unparseable database URL> [{{\"key\": \"value\", \"source\": \"file\"}}]",
            self.template.replace('\u{1}', " ")
        );
        let mut pieces = Vec::new();
        let mut forms = url_encodings(&self.password);
        forms.push(self.written());
        for form in forms {
            let chars: Vec<char> = form.chars().collect();
            for window in chars.windows(4.min(chars.len())) {
                let piece: String = window.iter().collect();
                if !skeleton.contains(&piece) && !"***".contains(&piece) && !pieces.contains(&piece) {
                    pieces.push(piece);
                }
            }
        }
        pieces
    }
}

fn url_case() -> impl Strategy<Value = UrlCase> {
    let user = "[a-z][a-z0-9_]{0,8}";
    let host = "[a-z][a-z0-9-]{0,8}(\\.[a-z]{2,4})?";
    let db = "[a-z][a-z0-9_]{0,8}";
    let password = prop_oneof![
        3 => "[A-Za-z0-9]{4,16}",
        3 => "[ -~]{3,24}",
        1 => "\\PC{3,16}",
    ];
    let scheme = prop::sample::select(vec!["postgres", "postgresql"]);
    let template = (
        scheme,
        user,
        prop::collection::vec((host, prop::option::of(1u16..=65535)), 1..4),
        db,
        0usize..6,
        prop::sample::select(vec![
            "",
            "sslmode=require",
            "target_session_attrs=read-write",
            "application_name=x",
        ]),
    )
        .prop_map(|(scheme, user, hosts, db, form, param)| {
            let hosts: Vec<String> = hosts
                .iter()
                .map(|(h, port)| port.map(|p| format!("{h}:{p}")).unwrap_or_else(|| h.clone()))
                .collect();
            let hosts = hosts.join(",");
            let query = |extra: &str| -> String {
                let params: Vec<&str> = [param, extra].into_iter().filter(|p| !p.is_empty()).collect();
                if params.is_empty() {
                    String::new()
                } else {
                    format!("?{}", params.join("&"))
                }
            };
            match form {
                // The password in the user part, over one or several hosts.
                0 | 1 => format!("{scheme}://{user}:\u{1}@{hosts}/{db}{}", query("")),
                // The password as a query parameter.
                2 => format!("{scheme}://{user}@{hosts}/{db}{}", query("password=\u{1}")),
                3 => format!("{scheme}://{user}@{hosts}/{db}{}", query("sslpassword=\u{1}")),
                // libpq's key=value form (refused, as a URL), and a bare password.
                4 => format!("host={hosts} user={user} password=\u{1} dbname={db}"),
                _ => "\u{1}".to_owned(),
            }
        });
    (template, password, any::<bool>()).prop_map(|(template, password, encoded)| UrlCase {
        template,
        password,
        encoded,
    })
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn a_database_url_never_shows_its_password_whatever_its_shape(case in url_case()) {
        let text = case.text();
        let pieces = case.secret_pieces();
        match DatabaseUrl::parse(&text) {
            Ok(url) => {
                prop_assert_eq!(url.expose(), text.trim(), "accepted as given");
                let shown = format!("{url} | {url:?} | {}", url.scrub(&format!("error near {text}: {}", case.password)));
                for piece in &pieces {
                    prop_assert!(!shown.contains(piece.as_str()), "{:?} of the password shown in {}", piece, shown);
                }
                prop_assert!(url.has_secret(), "{}", text);
                // What is shown is a URL of the same backend, accepted again.
                let again = DatabaseUrl::parse(&url.to_string());
                prop_assert_eq!(again.map(|u| u.backend()).ok(), Some(url.backend()));
            }
            Err(e) => {
                refused_as_invalid(&e)?;
                for piece in &pieces {
                    prop_assert!(!e.to_string().contains(piece.as_str()), "{}", e);
                }
            }
        }
    }

    #[test]
    fn any_text_as_a_database_url_is_accepted_as_given_or_refused_as_invalid(text in prop_oneof![
        any_text(),
        any_text().prop_map(|t| format!("postgres://{t}")),
        any_text().prop_map(|t| format!("sqlite://{t}")),
        any_text().prop_map(|t| format!("postgresql://u:{t}@h/d")),
    ]) {
        match DatabaseUrl::parse(&text) {
            Ok(url) => {
                prop_assert_eq!(url.expose(), text.trim());
                prop_assert_eq!(url.backend() == DbBackend::Sqlite, text.trim().starts_with("sqlite:"));
                let _ = (url.to_string(), format!("{url:?}"), url.has_secret(), url.scrub(&text));
            }
            Err(e) => refused_as_invalid(&e)?,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Import rows, parsed (no database)

/// One generated import row: every column's cell as text (`None`: the column is left out of
/// a JSON object, an empty cell in CSV).
type Cells = Vec<(&'static str, Option<String>)>;

fn cell_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[A-Za-z0-9 ._@+-]{0,16}",
        2 => ("['=+@\\t -]{0,4}", "[^\\x00\\r\\n]{0,16}").prop_map(|(a, b)| format!("{a}{b}")),
        1 => any_text(),
    ]
}

fn row_cells() -> impl Strategy<Value = Cells> {
    (
        prop::collection::vec(prop::option::of(cell_text()), import::COLUMNS.len()),
        prop_oneof!["'[=+@-][ -~]{0,12}", "[ '=+@-]{0,3}[ -~]{1,16}", "\\PC{1,20}"],
    )
        .prop_map(|(values, password)| {
            import::COLUMNS
                .iter()
                .zip(values)
                .map(|(column, value)| match *column {
                    // memberships and external have their own syntax; they are covered by the
                    // round trip through a database below.
                    "memberships" | "external" => (*column, None),
                    "password" => (*column, Some(password.clone())),
                    // Every JSON object names its user (a row without one is refused).
                    "username" => (*column, Some(value.unwrap_or_default())),
                    _ => (*column, value),
                })
                .collect()
        })
}

/// The row's value of `column` as the parser must return it: trimmed, empty as `None`, a
/// formula neutralised by an export read back without its `'`; the password exactly as given.
fn expected(cells: &Cells, column: &str, csv: bool) -> Option<String> {
    let value = cells.iter().find(|(c, _)| *c == column).and_then(|(_, v)| v.clone())?;
    if column == "password" {
        return (!value.is_empty()).then_some(value);
    }
    let value = if csv {
        import::unneutralise_formula(&value).to_owned()
    } else {
        value
    };
    let value = value.trim().to_owned();
    (!value.is_empty()).then_some(value)
}

fn row_values(row: &ImportRow) -> Vec<(&'static str, Option<String>)> {
    vec![
        ("username", Some(row.username.clone()).filter(|u| !u.is_empty())),
        ("email", row.email.clone()),
        ("phone", row.phone.clone()),
        ("given_name", row.given_name.clone()),
        ("family_name", row.family_name.clone()),
        ("provider", row.provider.clone()),
        ("subject", row.subject.clone()),
        ("role", row.role.clone()),
        ("password", row.password.clone()),
        ("password_hash", row.password_hash.clone()),
    ]
}

fn write_csv(rows: &[Cells]) -> Vec<u8> {
    write_csv_with(rows, |_, cell| cell.to_owned())
}

/// RFC 4180 CSV of `rows`, each cell through `cell(column, text)`.
fn write_csv_with(rows: &[Cells], cell: impl Fn(&str, &str) -> String) -> Vec<u8> {
    let mut writer = csv::WriterBuilder::new().from_writer(Vec::new());
    writer.write_record(import::COLUMNS).expect("header");
    for row in rows {
        writer
            .write_record(row.iter().map(|(c, v)| cell(c, v.as_deref().unwrap_or_default())))
            .expect("row");
    }
    writer.into_inner().expect("csv")
}

/// A cell as a spreadsheet-safe export writes it (OWASP): a `'` before a formula-leading
/// character, and before a `'` that precedes one, so `user import` reads the cell back whole.
/// Passwords are never exported, and taken as given.
fn neutralised(column: &str, cell: &str) -> String {
    if column != "password"
        && cell
            .trim_start_matches('\'')
            .starts_with(['=', '+', '-', '@', '\t', '\r'])
    {
        format!("'{cell}")
    } else {
        cell.to_owned()
    }
}

fn write_jsonl(rows: &[Cells]) -> Vec<u8> {
    let mut out = Vec::new();
    for row in rows {
        let object: serde_json::Map<String, serde_json::Value> = row
            .iter()
            .filter_map(|(c, v)| v.clone().map(|v| ((*c).to_owned(), serde_json::Value::String(v))))
            .collect();
        out.extend_from_slice(serde_json::Value::Object(object).to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn any_bytes_as_an_import_file_give_rows_or_errors_never_a_panic(
        bytes in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..300),
            (prop::sample::subsequence(import::COLUMNS.to_vec(), 0..5), prop::collection::vec("[a-z0-9@+ ,;:\"'=\\r\\n{}\\[\\]\\\\-]{0,30}", 0..6))
                .prop_map(|(header, lines)| format!("{}\n{}", header.join(","), lines.join("\n")).into_bytes()),
            prop::collection::vec("\\{\"[a-z_]{0,12}\":( ?\"[^\"]{0,10}\"|[0-9]{1,3}|true|null|\\[\\]|\\{\\})\\}", 0..6)
                .prop_map(|lines| lines.join("\n").into_bytes()),
        ],
        csv in any::<bool>(),
    ) {
        let format = if csv { Format::Csv } else { Format::Jsonl };
        match import::rows_capped(Cursor::new(bytes), format, None, 64) {
            Ok(rows) => {
                let mut last = 0;
                for (line, _row) in rows {
                    prop_assert!(line >= last, "line numbers go forwards");
                    last = line;
                }
            }
            Err(e) => refused_as_invalid(&e)?,
        }
    }

    #[test]
    fn rows_written_as_csv_or_json_lines_read_back_as_written(
        rows in prop::collection::vec(row_cells(), 1..6),
        csv in any::<bool>(),
    ) {
        let (bytes, format) = if csv { (write_csv(&rows), Format::Csv) } else { (write_jsonl(&rows), Format::Jsonl) };
        let parsed = import::parse(Cursor::new(bytes), format).expect("a valid header");
        prop_assert_eq!(parsed.len(), rows.len());
        for ((_, row), cells) in parsed.iter().zip(&rows) {
            let row = row.as_ref().map_err(|e| TestCaseError::fail(format!("row refused: {e}")))?;
            for (column, value) in row_values(row) {
                prop_assert_eq!(value, expected(cells, column, csv), "column {}", column);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The config file, through the binary (`config show` reads it and prints what applies)

/// An `[smtp]` table: host, port, from, username, tls.
type Smtp = (String, Option<u16>, String, Option<String>, &'static str);

#[derive(Debug, Clone)]
struct ConfigCase {
    database_url: Option<UrlCase>,
    actor: Option<String>,
    trash_retention: Option<String>,
    invite_link: Option<String>,
    smtp: Option<Smtp>,
    /// Something that makes the file invalid, if any.
    spoiler: Option<&'static str>,
}

fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

impl ConfigCase {
    fn file(&self) -> String {
        let mut out = String::new();
        let mut line = |key: &str, value: &Option<String>| {
            if let Some(v) = value {
                out.push_str(&format!("{key} = {}\n", toml_string(v)));
            }
        };
        line("database_url", &self.database_url.as_ref().map(UrlCase::text));
        line("actor", &self.actor);
        line("trash_retention", &self.trash_retention);
        line("invite_link", &self.invite_link);
        match self.spoiler {
            Some("unknown key") => out.push_str("databse_url = \"sqlite://x.db\"\n"),
            Some("both urls") => {
                out.push_str("database_url_file = \"/nonexistent\"\ndatabase_url = \"sqlite://a.db\"\n")
            }
            Some("not toml") => out.push_str("actor = \n"),
            Some("bad tls") => out.push_str("[smtp]\nhost = \"h\"\nfrom = \"a@b.c\"\ntls = \"ssl\"\n"),
            _ => {}
        }
        if let Some((host, port, from, username, tls)) = &self.smtp {
            out.push_str(&format!(
                "[smtp]\nhost = {}\nfrom = {}\ntls = \"{tls}\"\n",
                toml_string(host),
                toml_string(from)
            ));
            if let Some(port) = port {
                out.push_str(&format!("port = {port}\n"));
            }
            if let Some(username) = username {
                out.push_str(&format!("username = {}\n", toml_string(username)));
            }
        }
        out
    }
}

fn config_case() -> impl Strategy<Value = ConfigCase> {
    let text = "[A-Za-z0-9 ._@<>-]{1,20}";
    (
        prop::option::of(url_case()),
        prop::option::of(text),
        prop::option::of(prop_oneof![duration_like(), Just("30d".to_owned())]),
        prop::option::of(prop_oneof![
            "https://[a-z]{1,8}\\.example/[a-z/?=]{0,10}\\{token\\}",
            "(javascript:|data:|ftp://x/)\\{token\\}",
            "https://app\\.example/accept",
            any_text(),
        ]),
        prop::option::of((
            "[a-z]{1,10}\\.example",
            prop::option::of(any::<u16>()),
            "[A-Za-z ]{0,8}<[a-z]{1,6}@example\\.com>",
            prop::option::of("[a-z]{1,8}"),
            prop::sample::select(vec!["none", "starttls", "tls"]),
        )),
        prop::option::of(prop::sample::select(vec![
            "unknown key",
            "both urls",
            "not toml",
            "bad tls",
        ])),
    )
        .prop_map(
            |(database_url, actor, trash_retention, invite_link, smtp, spoiler)| ConfigCase {
                database_url,
                actor,
                trash_retention,
                invite_link,
                smtp: if spoiler == Some("bad tls") { None } else { smtp },
                spoiler,
            },
        )
}

#[test]
fn a_config_file_is_read_back_as_written_or_refused_with_exit_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("config.toml");
    let mut runner = TestRunner::new(config(24));
    let result = runner.run(&config_case(), |case| {
        std::fs::write(&path, case.file()).expect("write");
        let out = assert_cmd::Command::new(assert_cmd::cargo::cargo_bin("accountctl"))
            .env_clear()
            .env("HOME", dir.path())
            .env("XDG_CONFIG_HOME", dir.path().join("xdg"))
            .args(["--config"])
            .arg(&path)
            .args(["config", "show", "-o", "json"])
            .output()
            .expect("run");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if let Some(url) = &case.database_url {
            // The database_url setting as shown (other settings may match a piece by chance).
            let shown_url = serde_json::from_str::<serde_json::Value>(&stdout)
                .ok()
                .and_then(|v| {
                    v.as_array()
                        .and_then(|rows| rows.iter().find(|s| s["key"] == "database_url").cloned())
                })
                .map(|s| s["value"].to_string())
                .unwrap_or_default();
            for piece in url.secret_pieces() {
                prop_assert!(
                    !shown_url.contains(&piece) && !stderr.contains(&piece),
                    "{:?} of the password shown: {}{}",
                    piece,
                    stdout,
                    stderr
                );
            }
        }
        let link_ok = case.invite_link.as_deref().is_none_or(|l| {
            !l.chars().any(char::is_control)
                && l.contains("{token}")
                && url::Url::parse(&l.replace("{token}", "token"))
                    .is_ok_and(|u| matches!(u.scheme(), "https" | "http") && u.host().is_some())
        });
        let retention_ok = case
            .trash_retention
            .as_deref()
            .is_none_or(|t| parse_duration(t).is_ok());
        let valid = case.spoiler.is_none() && link_ok && retention_ok;
        prop_assert_eq!(
            out.status.code(),
            Some(if valid { 0 } else { 2 }),
            "file:\n{}\nstdout: {}\nstderr: {}",
            case.file(),
            stdout,
            stderr
        );
        if valid {
            let shown: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
            let setting = |key: &str| -> serde_json::Value {
                shown
                    .as_array()
                    .and_then(|rows| rows.iter().find(|s| s["key"] == key))
                    .map(|s| s["value"].clone())
                    .unwrap_or_default()
            };
            if let Some(actor) = &case.actor {
                prop_assert_eq!(setting("actor"), serde_json::json!(actor));
            }
            if let Some(retention) = &case.trash_retention {
                prop_assert_eq!(setting("trash_retention"), serde_json::json!(retention));
            }
            prop_assert_eq!(setting("invite_link"), serde_json::json!(case.invite_link));
            if let Some((host, port, from, username, tls)) = &case.smtp {
                prop_assert_eq!(setting("smtp.host"), serde_json::json!(host));
                prop_assert_eq!(setting("smtp.port"), serde_json::json!(port.map(|p| p.to_string())));
                prop_assert_eq!(setting("smtp.from"), serde_json::json!(from));
                prop_assert_eq!(setting("smtp.username"), serde_json::json!(username));
                prop_assert_eq!(setting("smtp.tls"), serde_json::json!(tls));
            }
        }
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
}

// ---------------------------------------------------------------------------------------
// With a database: names found by the string that created them; import → export → import

/// A workspace type every workspace below is of.
async fn team_type(app: &accountctl::App) {
    app.workspaces()
        .create_type("team", "Team", &[Capability::parse("docs.*").expect("cap")], true)
        .await
        .expect("type");
}

#[derive(Debug, Clone)]
struct NameCase {
    username: String,
    email: Option<String>,
    phone: Option<String>,
    workspace: String,
    role: String,
}

fn name_case() -> impl Strategy<Value = NameCase> {
    (
        username_like(),
        prop::option::of(email_like()),
        prop::option::of(phone_like()),
        workspace_name_like(),
        role_name_like(),
    )
        .prop_map(|(username, email, phone, workspace, role)| NameCase {
            username,
            email,
            phone,
            workspace,
            role,
        })
}

/// Exit codes a creation may fail with: 2 (malformed), 4 (taken by an earlier case).
fn refused_or_taken(err: &Error) -> Result<(), TestCaseError> {
    prop_assert!(
        matches!(err, Error::Invalid(_) | Error::Conflict(_)),
        "neither invalid nor a conflict: {err:?}"
    );
    prop_assert!(matches!(err.exit_code(), 2 | 4), "{}", err);
    Ok(())
}

/// One user of a round-trip case, valid by construction (filtered through the library's
/// own checks).
#[derive(Debug, Clone)]
struct GenUser {
    username: String,
    email: Option<String>,
    phone: Option<String>,
    given_name: Option<String>,
    family_name: Option<String>,
    /// External users: (provider, subject).
    external: Option<(String, String)>,
    admin: bool,
    /// Indexes into the case's workspaces.
    memberships: Vec<usize>,
    password: Option<String>,
}

#[derive(Debug, Clone)]
struct RoundTrip {
    /// (workspace, role) pairs, each workspace with one role.
    workspaces: Vec<(String, String)>,
    users: Vec<GenUser>,
    jsonl: bool,
}

/// A person's name as an export must carry it: formula-leading characters, quotes, commas,
/// semicolons, a leading `'`, letters of any script.
fn person_name() -> impl Strategy<Value = String> {
    ("(|[=+@'-]|'{1,3}[=+@-]| )", "[A-Za-z0-9 ,;:\"'=+@.-]{0,12}|\\PC{0,8}")
        .prop_map(|(a, b)| format!("{a}{b}"))
        .prop_filter("a name the library accepts", |n| {
            matches!(clean_text("name", n, 200), Ok(Some(_)))
        })
}

fn gen_user() -> impl Strategy<Value = GenUser> {
    (
        "[A-Za-z][A-Za-z0-9._-]{1,16}".prop_filter("a valid username", |u| Username::parse(u).is_ok()),
        prop::option::of(email_like().prop_filter("a valid email", |e| Email::parse(e).is_ok())),
        prop::option::of(phone_like().prop_filter("a valid phone", |p| Phone::parse(p).is_ok())),
        prop::option::of(person_name()),
        prop::option::of(person_name()),
        prop::option::of(("[a-z]{2,10}", "([=+@-]|'[=+-])?[A-Za-z0-9|:.=+-]{1,16}")),
        any::<bool>(),
        prop::collection::vec(0usize..3, 0..3),
        prop::option::of(prop_oneof![
            "'[=+@-][ -~]{7,16}",
            "[ '=+@-]{0,3}[A-Za-z0-9 ,;\"]{8,16}",
            "\\PC{8,12}",
        ]),
    )
        .prop_map(
            |(username, email, phone, given_name, family_name, external, admin, memberships, password)| {
                let is_external = external.is_some();
                GenUser {
                    username,
                    email,
                    phone,
                    given_name,
                    family_name,
                    external,
                    admin: admin && !is_external,
                    memberships,
                    password: password.filter(|_| !is_external),
                }
            },
        )
}

fn round_trip_case() -> impl Strategy<Value = RoundTrip> {
    // Any valid name but one holding `:`, a role-like word and `;` in that order, which a
    // CSV memberships cell cannot tell from two pairs (JSON Lines can).
    let workspace = "[A-Za-z0-9 ._:;,'=+@&-]{1,16}|\\PC{1,10}".prop_filter("a valid workspace name", |w| {
        validate_workspace_name(w).is_ok()
            && !w.split(';').rev().skip(1).any(|part| {
                let part = part.trim_end();
                let word = part.trim_end_matches(|c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
                word.len() < part.len() && word.trim_end().ends_with(':')
            })
    });
    let role = "[A-Za-z0-9._-]{1,12}".prop_filter("a valid role name", |r| validate_role_name(r).is_ok());
    (
        prop::collection::vec((workspace, role), 1..3),
        prop::collection::vec(gen_user(), 1..5),
        any::<bool>(),
    )
        .prop_map(|(mut workspaces, users, jsonl)| {
            // Names are unique regardless of case; keys of users too.
            let mut seen = std::collections::HashSet::new();
            workspaces.retain(|(w, _)| seen.insert(w.to_lowercase()));
            let mut keys = std::collections::HashSet::new();
            let users = users
                .into_iter()
                .filter_map(|mut u| {
                    if !keys.insert(u.username.to_lowercase()) {
                        return None;
                    }
                    if let Some(e) = &u.email
                        && !keys.insert(Email::parse(e).map(|e| e.to_string()).unwrap_or_default())
                    {
                        u.email = None;
                    }
                    if let Some(p) = &u.phone
                        && !keys.insert(Phone::parse(p).map(|p| p.to_string()).unwrap_or_default())
                    {
                        u.phone = None;
                    }
                    if let Some((provider, subject)) = &u.external
                        && !keys.insert(format!("{provider}\u{0}{subject}"))
                    {
                        u.external = None;
                    }
                    u.memberships.retain(|i| *i < workspaces.len());
                    u.memberships.sort_unstable();
                    u.memberships.dedup();
                    Some(u)
                })
                .collect();
            RoundTrip {
                workspaces,
                users,
                jsonl,
            }
        })
}

/// The case's users as an import file.
fn import_file(case: &RoundTrip) -> Vec<u8> {
    let rows: Vec<Cells> = case
        .users
        .iter()
        .map(|u| {
            let memberships: Vec<String> = u
                .memberships
                .iter()
                .map(|i| format!("{}:{}", case.workspaces[*i].0, case.workspaces[*i].1))
                .collect();
            vec![
                ("username", Some(u.username.clone())),
                ("email", u.email.clone()),
                ("phone", u.phone.clone()),
                ("given_name", u.given_name.clone()),
                ("family_name", u.family_name.clone()),
                ("external", Some(u.external.is_some().to_string())),
                ("provider", u.external.as_ref().map(|(p, _)| p.clone())),
                ("subject", u.external.as_ref().map(|(_, s)| s.clone())),
                ("role", u.admin.then(|| "admin".to_owned())),
                ("memberships", Some(memberships.join(";")).filter(|m| !m.is_empty())),
                ("password", u.password.clone()),
                ("password_hash", None),
            ]
        })
        .collect();
    if case.jsonl {
        write_jsonl(&rows)
    } else {
        write_csv_with(&rows, neutralised)
    }
}

/// An exported row, in a form that compares.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Exported {
    username: String,
    email: Option<String>,
    phone: Option<String>,
    given_name: Option<String>,
    family_name: Option<String>,
    external: Option<bool>,
    provider: Option<String>,
    subject: Option<String>,
    role: Option<String>,
    memberships: Vec<(String, String)>,
    password_hash: Option<String>,
}

fn exported(bytes: &[u8], jsonl: bool) -> Result<Vec<Exported>, TestCaseError> {
    let format = if jsonl { Format::Jsonl } else { Format::Csv };
    let mut rows = Vec::new();
    for (line, row) in import::parse(Cursor::new(bytes), format).map_err(|e| TestCaseError::fail(e.to_string()))? {
        let row = row.map_err(|e| TestCaseError::fail(format!("exported line {line} does not parse: {e}")))?;
        let mut memberships = row.memberships.clone();
        memberships.sort();
        rows.push(Exported {
            username: row.username,
            email: row.email,
            phone: row.phone,
            given_name: row.given_name,
            family_name: row.family_name,
            external: row.external,
            provider: row.provider,
            subject: row.subject,
            role: row.role,
            memberships,
            password_hash: row.password_hash,
        });
    }
    rows.sort();
    Ok(rows)
}

/// What the export of the case's users must hold (password hashes aside).
fn expected_export(case: &RoundTrip) -> Vec<Exported> {
    let trimmed = |v: &Option<String>| v.as_ref().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    let mut rows: Vec<Exported> = case
        .users
        .iter()
        .map(|u| {
            let mut memberships: Vec<(String, String)> =
                u.memberships.iter().map(|i| case.workspaces[*i].clone()).collect();
            memberships.sort();
            Exported {
                username: u.username.clone(),
                email: u.email.as_deref().map(|e| Email::parse(e).expect("valid").to_string()),
                phone: u.phone.as_deref().map(|p| Phone::parse(p).expect("valid").to_string()),
                given_name: trimmed(&u.given_name),
                family_name: trimmed(&u.family_name),
                external: Some(u.external.is_some()),
                provider: u.external.as_ref().map(|(p, _)| p.trim().to_owned()),
                subject: u.external.as_ref().map(|(_, s)| s.trim().to_owned()),
                role: Some(if u.admin { "admin" } else { "user" }.to_owned()),
                memberships,
                password_hash: None,
            }
        })
        .collect();
    rows.sort();
    rows
}

/// Creates the case's workspaces and roles in the database of `ctx`.
async fn workspaces_of(ctx: &common::Ctx, case: &RoundTrip) -> accountctl::App {
    let app = ctx.app().await;
    team_type(&app).await;
    for (workspace, role) in &case.workspaces {
        app.workspaces()
            .create(workspace, "team", None, false)
            .await
            .expect("workspace");
        app.workspaces()
            .create_role(workspace, role, &[Capability::parse("docs.read").expect("cap")], false)
            .await
            .expect("role");
    }
    app
}

/// `user import FILE` then `user export --with-password-hashes` through the binary on `ctx`'s
/// database: the export's bytes.
fn import_then_export(ctx: &common::Ctx, input: &[u8], jsonl: bool, name: &str) -> Vec<u8> {
    let ext = if jsonl { "jsonl" } else { "csv" };
    let input_path = ctx.dir.path().join(format!("{name}-in.{ext}"));
    let output_path = ctx.dir.path().join(format!("{name}-out.{ext}"));
    std::fs::write(&input_path, input).expect("write");
    let out = ctx
        .cli()
        .args(["user", "import"])
        .arg(&input_path)
        .args(["-o", "json"])
        .output()
        .expect("import");
    assert_eq!(
        out.status.code(),
        Some(0),
        "import of\n{}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(input),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ctx.cli()
        .args(["user", "export"])
        .arg(&output_path)
        .arg("--with-password-hashes")
        .assert()
        .success();
    std::fs::read(&output_path).expect("read the export")
}

// Both database properties, each on SQLite and on PostgreSQL.
on_both_backends! {
    async fn a_name_that_is_accepted_is_found_by_the_same_string(ctx) {
        let app = ctx.app().await;
        team_type(&app).await;
        run_async(32, "names.proptest-regressions", name_case(), |case| {
            let app = app.clone();
            async move {
                let accounts = app.accounts();
                let new = NewUser {
                    username: case.username.clone(),
                    email: case.email.clone(),
                    phone: case.phone.clone(),
                    ..Default::default()
                };
                match accounts.create(new, false).await {
                    Ok(created) => {
                        let id = created.user.id;
                        for text in [Some(&case.username), case.email.as_ref(), case.phone.as_ref()].into_iter().flatten() {
                            let found = accounts.resolve(text).await.map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
                            let shown = accounts.show(&found).await.map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
                            prop_assert_eq!(shown.user.id, id, "{:?} found another user", text);
                        }
                        prop_assert_eq!(created.user.username, case.username);
                    }
                    Err(e) => refused_or_taken(&e)?,
                }
                let workspaces = app.workspaces();
                match workspaces.create(&case.workspace, "team", None, false).await {
                    Ok(created) => {
                        let shown = workspaces.show(&case.workspace).await.map_err(|e| TestCaseError::fail(format!("{:?}: {e}", case.workspace)))?;
                        prop_assert_eq!(shown.workspace.id, created.id);
                        prop_assert_eq!(&shown.workspace.name, &case.workspace);
                        let caps = [Capability::parse("docs.read").expect("cap")];
                        match workspaces.create_role(&case.workspace, &case.role, &caps, false).await {
                            Ok(role) => {
                                let found = workspaces.role(&case.workspace, &case.role).await.map_err(|e| TestCaseError::fail(format!("{:?}: {e}", case.role)))?;
                                prop_assert_eq!(found.id, role.id);
                                prop_assert_eq!(&found.name, &case.role);
                            }
                            Err(e) => refused_or_taken(&e)?,
                        }
                    }
                    Err(e) => refused_or_taken(&e)?,
                }
                Ok(())
            }
        });
    }

    async fn import_then_export_then_import_gives_the_same_rows(ctx) {
        let backend = ctx.backend;
        run_async(8, "round-trip.proptest-regressions", round_trip_case(), move |case| async move {
            let (first_tx, first_rx) = tokio::sync::oneshot::channel();
            let first_case = case.clone();
            common::run_on(backend, |ctx| async move {
                let _app = workspaces_of(&ctx, &first_case).await;
                let _ = first_tx.send(import_then_export(&ctx, &import_file(&first_case), first_case.jsonl, "first"));
            })
            .await;
            let Ok(first) = first_rx.await else {
                return Ok(()); // PostgreSQL unreachable outside CI: skipped like every test
            };
            let rows = exported(&first, case.jsonl)?;
            let without_hashes: Vec<Exported> = rows.iter().cloned().map(|r| Exported { password_hash: None, ..r }).collect();
            prop_assert_eq!(&without_hashes, &expected_export(&case), "export:\n{}", String::from_utf8_lossy(&first));
            // Each imported password signs in: the stored hash verifies the plaintext given.
            for user in &case.users {
                let hash = rows.iter().find(|r| r.username == user.username).and_then(|r| r.password_hash.clone());
                match &user.password {
                    Some(p) => prop_assert!(
                        hash.as_deref().is_some_and(|h| password::verify_blocking(h, &Secret::new(p.clone()))),
                        "the password of {} does not verify", user.username
                    ),
                    None => prop_assert_eq!(hash, None),
                }
            }
            // The export imported into another database exports the very same bytes.
            let (second_tx, second_rx) = tokio::sync::oneshot::channel();
            let second_case = case.clone();
            let exported_first = first.clone();
            common::run_on(backend, |ctx| async move {
                let _app = workspaces_of(&ctx, &second_case).await;
                let _ = second_tx.send(import_then_export(&ctx, &exported_first, second_case.jsonl, "second"));
            })
            .await;
            let second = second_rx.await.map_err(|_| TestCaseError::fail("the second import did not run"))?;
            prop_assert_eq!(String::from_utf8_lossy(&second), String::from_utf8_lossy(&first));
            Ok(())
        });
    }
}
