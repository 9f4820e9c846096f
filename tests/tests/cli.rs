//! The `events` command line (`events::cli`), as a user runs it: the binary
//! `src/bin/cli_child.rs` links it with events and handlers of its own, and runs on a real
//! SQLite file, a real PostgreSQL schema, or a running service's admin API. Each test
//! checks what is printed (for people and `--json`) and the documented exit code.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

const CLI: &str = env!("CARGO_BIN_EXE_cli_child");
const TOTALS: &str = "cli_child::totals";
const MAIL: &str = "cli_child::mail";

/// A SQLite store in a directory of its own.
struct Store {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Store {
    fn new() -> Store {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        Store { _dir: dir, path }
    }

    fn url(&self) -> String {
        format!("sqlite:{}", self.path.display())
    }
}

/// Publishes `cli.order` events `first..first + count` into `store` (even ones fail `mail`
/// for good); `unhandled`: with no handler running.
fn seed(store: &str, schema: &str, first: u64, count: u64, unhandled: bool) {
    let mut command = Command::new(CLI);
    command.args([
        "seed",
        store,
        schema,
        &first.to_string(),
        &count.to_string(),
    ]);
    if unhandled {
        command.arg("unhandled");
    }
    assert!(command.status().unwrap().success());
}

/// Runs the command line with `args`; its output.
fn cli(args: &[&str]) -> Output {
    cli_with(args, &[])
}

fn cli_with(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(CLI);
    command.args(args).stdin(Stdio::null());
    for (k, v) in env {
        command.env(k, v);
    }
    for var in [
        "EVENTS_STORE",
        "EVENTS_API",
        "EVENTS_ADMIN_TOKEN",
        "EVENTS_STORE_SCHEMA",
    ] {
        command.env_remove(var);
    }
    command.output().unwrap()
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

/// Each line of standard output as JSON.
fn json_lines(out: &Output) -> Vec<Value> {
    stdout(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

fn sequences(lines: &[Value]) -> Vec<u64> {
    lines
        .iter()
        .map(|e| e["sequence"].as_u64().unwrap())
        .collect()
}

#[test]
fn store_query_filters_pages_and_prints_json_lines() {
    let store = Store::new();
    seed(&store.url(), "-", 1, 25, false);
    let url = store.url();
    let q = |extra: &[&str]| {
        let mut args = vec!["--store", &url, "--json", "store", "query"];
        args.extend_from_slice(extra);
        let out = cli(&args);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        json_lines(&out)
    };
    let all = q(&[]);
    assert_eq!(sequences(&all), (1..=25).collect::<Vec<_>>());
    assert!(
        all.iter()
            .all(|e| e["name"] == "cli.order" && e["version"] == 1)
    );
    assert_eq!(sequences(&q(&["--after", "20"])), [21, 22, 23, 24, 25]);
    assert_eq!(sequences(&q(&["--limit", "3"])), [1, 2, 3]);
    assert_eq!(
        sequences(&q(&["--newest-first", "--limit", "3"])),
        [25, 24, 23]
    );
    assert_eq!(
        sequences(&q(&["--name", "cli.*", "--since", "1h"])).len(),
        25
    );
    assert!(q(&["--name", "other.>"]).is_empty());
    let correlation = all[4]["correlation_id"].as_str().unwrap().to_owned();
    assert_eq!(sequences(&q(&["--correlation-id", &correlation])), [5]);

    // For people: one line per event, and never a card number (sealed at rest).
    let out = cli(&["--store", &url, "store", "query", "--limit", "2"]);
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.lines().all(|l| l.contains("cli.order v1")), "{text}");
    assert!(!text.contains("4111-"), "{text}");
    // `| head` closes the pipe: the command ends quietly.
    let mut child = Command::new(CLI)
        .args(["--store", &url, "store", "query"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
}

#[test]
fn dead_letters_are_listed_redacted_retried_edited_and_discarded() {
    let store = Store::new();
    let url = store.url();
    seed(&url, "-", 1, 6, false);
    let list = || {
        let out = cli(&["--store", &url, "--json", "dead-letters", "list"]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        json_lines(&out)
    };
    let letters = list();
    let numbers: Vec<u64> = letters
        .iter()
        .map(|l| l["payload"]["n"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [2, 4, 6]);
    for l in &letters {
        assert_eq!(l["payload"]["card"], "[redacted]");
        assert_eq!(l["handler"], MAIL);
        assert_eq!(l["permanent"], true);
    }
    let id = |n: u64| {
        letters.iter().find(|l| l["payload"]["n"] == n).unwrap()["id"]
            .as_u64()
            .unwrap()
            .to_string()
    };

    // For people: a handler's error cannot drive the terminal (it holds an escape).
    let out = cli(&["--store", &url, "dead-letters", "list"]);
    let text = stdout(&out);
    assert!(
        text.contains("mail server refused order 2\\u{1b}[31m"),
        "{text}"
    );
    assert!(
        !text.contains('\u{1b}') && !text.contains("4111-"),
        "{text}"
    );
    let shown = cli(&["--store", &url, "--json", "dead-letters", "show", &id(4)]);
    assert_eq!(json_lines(&shown)[0]["payload"]["n"], 4);
    assert_eq!(
        code(&cli(&["--store", &url, "dead-letters", "show", "999"])),
        3
    );

    let retry = |id: &str, patch: &str| {
        cli(&[
            "--store",
            &url,
            "dead-letters",
            "retry",
            id,
            "--patch",
            patch,
        ])
    };
    // An edit the schema refuses: 4, and the letter stays.
    let out = retry(&id(2), r#"{"items": "many"}"#);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(stderr(&out).contains("at /items"), "{}", stderr(&out));
    assert_eq!(list().len(), 3);
    // Not JSON: 2.
    let out = retry(&id(2), "{");
    assert_eq!(code(&out), 2);
    // An edit that makes the handler succeed (the card, left out, keeps its sealed value).
    let out = retry(&id(2), r#"{"n": 7}"#);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains("retried, handled"),
        "{}",
        stdout(&out)
    );
    // Retried as it was, it fails again: 1, and it is a new letter.
    let out = cli(&["--store", &url, "dead-letters", "retry", &id(4)]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stdout(&out).contains("failed again"), "{}", stdout(&out));
    let now = list();
    assert_eq!(now.len(), 2);
    assert!(
        now.iter()
            .any(|l| l["payload"]["n"] == 4 && l["attempts"] == 2)
    );

    let out = cli(&["--store", &url, "dead-letters", "discard", &id(6)]);
    assert_eq!((code(&out), stdout(&out).trim()), (0, "discarded 1"));
    assert_eq!(
        code(&cli(&["--store", &url, "dead-letters", "discard", &id(6)])),
        3
    );
    let out = cli(&[
        "--store",
        &url,
        "dead-letters",
        "discard",
        "--all",
        "--handler",
        MAIL,
    ]);
    assert_eq!((code(&out), stdout(&out).trim()), (0, "discarded 1"));
    assert!(list().is_empty());
}

/// The progress lines a rebuild printed on standard error (not a terminal): done and total.
fn progress_of(err: &str) -> Vec<(u64, u64)> {
    let prefix = format!("rebuilding {TOTALS}: ");
    err.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|rest| {
            assert!(rest.contains("%), ETA "), "{rest}");
            let (done, rest) = rest.split_once('/').unwrap();
            let total = rest.split_once(' ').unwrap().0;
            (done.parse().unwrap(), total.parse().unwrap())
        })
        .collect()
}

fn replay_shows_progress(store: &str, schema: Option<&str>) {
    let mut args = vec!["--store", store];
    if let Some(schema) = schema {
        args.extend(["--schema", schema]);
    }
    args.extend(["replay", TOTALS]);
    let out = cli_with(&args, &[("CLI_SLOW_MS", "5")]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let progress = progress_of(&stderr(&out));
    assert!(progress.len() >= 3, "{}", stderr(&out));
    assert!(
        progress.windows(2).all(|w| w[0].0 <= w[1].0),
        "{progress:?}"
    );
    assert_eq!(progress.last(), Some(&(300, 300)), "{progress:?}");
    assert!(
        stdout(&out).starts_with(&format!("rebuilt {TOTALS} from 300 events")),
        "{}",
        stdout(&out)
    );

    // For scripts: the progress as JSON lines, then the report.
    let mut args = args.clone();
    args.insert(0, "--json");
    let out = cli(&args);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let lines = json_lines(&out);
    let last = lines.last().unwrap();
    assert_eq!(last["done"]["events"], 300);
    assert_eq!(lines[lines.len() - 2]["progress"]["done"], 300);
}

#[test]
fn a_replay_prints_its_progress_with_an_eta() {
    let store = Store::new();
    seed(&store.url(), "-", 1, 300, false);
    replay_shows_progress(&store.url(), None);
    // No such projection: 3.
    let out = cli(&["--store", &store.url(), "replay", MAIL]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
}

#[test]
fn lag_counts_unhandled_events_and_fails_past_the_limit() {
    let store = Store::new();
    let url = store.url();
    seed(&url, "-", 1, 5, false);
    seed(&url, "-", 6, 4, true);
    let out = cli(&["--store", &url, "--json", "lag"]);
    let rows = json_lines(&out);
    assert_eq!(rows.len(), 1, "{}", stdout(&out));
    assert_eq!(
        (&rows[0]["handler"], &rows[0]["behind"]),
        (&TOTALS.into(), &4.into())
    );
    let text = stdout(&cli(&["--store", &url, "lag"]));
    assert!(text.contains(TOTALS) && text.contains(" 4 "), "{text}");
    let out = cli(&["--store", &url, "lag", "--max-behind", "3"]);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("4 behind"), "{}", stderr(&out));
    assert_eq!(
        code(&cli(&["--store", &url, "lag", "--max-behind", "4"])),
        0
    );
    assert_eq!(code(&cli(&["--store", &url, "lag", "--max-age", "1h"])), 0);
}

#[test]
fn tail_prints_events_as_they_arrive() {
    let store = Store::new();
    let url = store.url();
    seed(&url, "-", 1, 3, false);
    let mut command = Command::new(CLI);
    command.args([
        "--store",
        &url,
        "--json",
        "tail",
        "cli.*",
        "--from-start",
        "--interval-ms",
        "50",
    ]);
    let tail = events_tests::ChildLines::spawn(command);
    let wait = Duration::from_secs(60);
    let n = |line: Option<String>| -> u64 {
        let line = line.expect("a line from tail");
        serde_json::from_str::<Value>(&line).unwrap()["payload"]["n"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(
        [n(tail.line(wait)), n(tail.line(wait)), n(tail.line(wait))],
        [1, 2, 3]
    );
    seed(&url, "-", 100, 2, false);
    assert_eq!([n(tail.line(wait)), n(tail.line(wait))], [100, 101]);
    tail.kill();
}

#[test]
fn docs_and_compat_check_read_the_linked_catalog() {
    let store = Store::new();
    let url = store.url();
    seed(&url, "-", 1, 1, false);
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("docs");
    let out = cli(&["--store", &url, "docs", "--out", out_dir.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let read = |p: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(out_dir.join(p)).unwrap()).unwrap()
    };
    assert!(read("schemas/cli.order.v1.json")["properties"]["card"].is_object());
    assert!(read("asyncapi.json")["asyncapi"].is_string());
    assert!(
        std::fs::read_to_string(out_dir.join("index.html"))
            .unwrap()
            .contains("cli.order")
    );
    assert!(out_dir.join("catalog.md").is_file());

    let snapshot = dir.path().join("schemas.json");
    let snap = snapshot.to_str().unwrap();
    assert_eq!(code(&cli(&["--store", &url, "compat", "save", snap])), 0);
    let out = cli(&["--store", &url, "compat", "check", snap]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    // A snapshot with an event version this binary no longer has: breaking, 1.
    let mut saved: Value =
        serde_json::from_str(&std::fs::read_to_string(&snapshot).unwrap()).unwrap();
    saved["cli.gone.v1"] = serde_json::json!({ "type": "object" });
    std::fs::write(&snapshot, saved.to_string()).unwrap();
    let out = cli(&["--store", &url, "--json", "compat", "check", snap]);
    assert_eq!(code(&out), 1);
    let breaking = &json_lines(&out)[0]["breaking"];
    assert_eq!(breaking.as_array().unwrap().len(), 1, "{breaking}");
    assert!(
        breaking[0].as_str().unwrap().contains("cli.gone.v1"),
        "{breaking}"
    );
    std::fs::write(&snapshot, "{").unwrap();
    assert_eq!(code(&cli(&["--store", &url, "compat", "check", snap])), 2);
}

#[test]
fn exit_codes_say_what_went_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.db");
    let url = format!("sqlite:{}", missing.display());
    let out = cli(&["--store", &url, "lag"]);
    assert_eq!(code(&out), 5, "{}", stderr(&out));
    assert!(
        !missing.exists(),
        "a mistyped path must not become an empty store"
    );
    assert_eq!(code(&cli(&["lag"])), 2);
    assert_eq!(code(&cli(&["--store", "mysql://x", "lag"])), 2);
    assert_eq!(code(&cli(&["--api", "https://x", "lag"])), 2);
    assert_eq!(code(&cli(&["frobnicate"])), 2);
    assert_eq!(code(&cli(&["--help"])), 0);
    let port = events_tests::free_port();
    let out = cli(&["--api", &format!("http://127.0.0.1:{port}"), "lag"]);
    assert_eq!(code(&out), 5, "{}", stderr(&out));
    let out = cli(&[
        "--api",
        &format!("http://127.0.0.1:{port}"),
        "--json",
        "lag",
    ]);
    let error: Value = serde_json::from_str(stderr(&out).trim()).unwrap();
    assert_eq!(error["exit"], 5);

    // A service that takes the request and never answers: a read fails (5), a change
    // is unknown (6), not failed: it may have been carried out.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let api = format!("http://{}", silent.local_addr().unwrap());
    let held = std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in silent.incoming().take(2) {
            held.push(stream);
        }
        std::thread::sleep(Duration::from_secs(5));
    });
    let out = cli(&[
        "--api",
        &api,
        "--timeout",
        "1",
        "dead-letters",
        "retry",
        "1",
    ]);
    assert_eq!(code(&out), 6, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("may have been carried out"),
        "{}",
        stderr(&out)
    );
    let out = cli(&["--api", &api, "--timeout", "1", "lag"]);
    assert_eq!(code(&out), 5, "{}", stderr(&out));
    held.join().unwrap();
}

/// The service of `src/bin/cli_child.rs` (`serve`) on `store`: its base URL.
struct Service {
    child: std::process::Child,
    url: String,
}

impl Service {
    fn start(store: &str) -> Service {
        let mut child = Command::new(CLI)
            .args(["serve", store, "-"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let url = line.trim().strip_prefix("listening ").unwrap().to_owned();
        Service { child, url }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn against_a_running_service_it_answers_as_on_the_store() {
    let store = Store::new();
    let url = store.url();
    seed(&url, "-", 1, 10, false);
    let service = Service::start(&url);
    let api = ["--api", service.url.as_str(), "--token", "cli-token"];
    let both = |args: &[&str]| {
        let direct = cli(&[&["--store", url.as_str(), "--json"][..], args].concat());
        let remote = cli(&[&api[..], &["--json"], args].concat());
        assert_eq!(code(&direct), 0, "{}", stderr(&direct));
        assert_eq!(code(&remote), 0, "{}", stderr(&remote));
        (json_lines(&direct), json_lines(&remote))
    };
    for args in [&["store", "query"][..], &["dead-letters", "list"], &["lag"]] {
        let (direct, remote) = both(args);
        assert!(!direct.is_empty());
        assert_eq!(direct, remote, "{args:?}");
    }
    // A wrong token: 4. `pause` needs the service: 2 on the store.
    let out = cli(&["--api", &service.url, "--token", "nope", "lag"]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert_eq!(code(&cli(&["--store", &url, "pause", TOTALS])), 2);

    // Paused, the service's own events wait for the projection; resumed, it catches up.
    assert_eq!(code(&cli(&[&api[..], &["pause", TOTALS]].concat())), 0);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    for n in 50..53 {
        let answer = agent
            .post(&format!("{}/events/cli.order/1", service.url))
            .header("content-type", "application/json")
            .send(format!(r#"{{"n": {n}, "card": "4111-{n}", "items": 1}}"#))
            .unwrap();
        assert_eq!(answer.status(), 202);
    }
    let lag = json_lines(&cli(&[&api[..], &["--json", "lag"]].concat()));
    assert_eq!(
        (&lag[0]["behind"], &lag[0]["paused"]),
        (&3.into(), &true.into())
    );
    let out = cli(&[&api[..], &["--json", "resume", TOTALS]].concat());
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(json_lines(&out)[0]["events"], 3);
    let lag = json_lines(&cli(&[&api[..], &["--json", "lag"]].concat()));
    assert_eq!(
        (&lag[0]["behind"], &lag[0]["paused"]),
        (&0.into(), &false.into())
    );

    // Retry runs in the service.
    let letters = json_lines(&cli(
        &[&api[..], &["--json", "dead-letters", "list"]].concat()
    ));
    let first = letters[0]["id"].to_string();
    let out = cli(&[
        &api[..],
        &["dead-letters", "retry", &first, "--patch", r#"{"n": 1}"#],
    ]
    .concat());
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        code(&cli(&[&api[..], &["dead-letters", "show", &first]].concat())),
        3
    );
}

#[test]
fn on_postgres_it_queries_lists_and_replays() {
    use events::postgres::{PostgresOptions, PostgresStore};
    let url = std::env::var("EVENTS_POSTGRES_URL")
        .unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:5432/test".to_owned());
    let schema = format!("events_cli_{}", std::process::id());
    seed(&url, &schema, 1, 300, false);
    let args = [
        "--store",
        url.as_str(),
        "--schema",
        schema.as_str(),
        "--json",
    ];
    let events = json_lines(&cli(
        &[&args[..], &["store", "query", "--limit", "1000"]].concat()
    ));
    assert_eq!(sequences(&events), (1..=300).collect::<Vec<_>>());
    let letters = json_lines(&cli(&[&args[..], &["dead-letters", "list"]].concat()));
    assert_eq!(letters.len(), 150);
    assert!(letters.iter().all(|l| l["payload"]["card"] == "[redacted]"));
    replay_shows_progress(&url, Some(&schema));
    drop(PostgresStore::connect(
        &url,
        PostgresOptions::new().schema(&schema).temporary(),
    ));
}
