//! The dashboard in a real headless Chromium (`chromium --headless --no-sandbox
//! --disable-gpu`, driven over the DevTools protocol): it loads with the admin token, its
//! counters move as events are published, a flow opened by correlation id shows the tree of
//! events and handler outcomes, and a dead letter retried from its button leaves the list.
//! Every wait is for a condition, with a bound. Screenshots go to `target/dashboard*.png`;
//! with `EVENTS_UPDATE_SCREENSHOT=1` the first also replaces the README's
//! (`events-http/dashboard.png`).

#![allow(unreachable_pub)]

mod common;

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use events::observe::Metrics;
use events::{Bus, Event, handler};
use events_http::HttpOptions;
use serde_json::{Value, json};
use tungstenite::{Message, WebSocket, stream::MaybeTlsStream};

#[derive(Debug, Clone, Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "shop.paid")]
pub struct Paid {
    pub order_id: u64,
}

#[derive(Debug, Clone, Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "shop.shipped")]
pub struct Shipped {
    pub order_id: u64,
}

static MAILER_UP: AtomicBool = AtomicBool::new(false);

mod handlers {
    use super::*;

    #[handler(durable)]
    fn ship(ev: &Paid, ctx: &events::Context) -> Result<(), events::HandlerError> {
        ctx.publish_blocking(Shipped {
            order_id: ev.order_id,
        })
        .map_err(events::HandlerError::permanent)?;
        Ok(())
    }

    #[handler]
    fn mail(_: &Shipped) -> Result<(), events::HandlerError> {
        if MAILER_UP.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(events::HandlerError::permanent("the mail server said no"))
        }
    }
}

/// A headless Chromium and its page, killed when dropped.
struct Browser {
    child: Child,
    page: WebSocket<MaybeTlsStream<TcpStream>>,
    next: u64,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    fn launch() -> Browser {
        let binary = std::env::var("CHROMIUM").ok().or_else(|| {
            ["chromium", "chromium-browser", "google-chrome"]
                .iter()
                .find(|b| {
                    Command::new("sh")
                        .args(["-c", &format!("command -v {b}")])
                        .output()
                        .is_ok_and(|o| o.status.success())
                })
                .map(|b| (*b).to_owned())
        });
        let binary = binary.expect(
            "the dashboard test needs Chromium: apt-get install chromium (or set CHROMIUM)",
        );
        let profile = tempfile::tempdir().unwrap();
        let child = Command::new(&binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--remote-debugging-port=0",
                "--window-size=1280,900",
                "--no-first-run",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Chromium writes the port it chose to `DevToolsActivePort` in its profile.
        let port_file = profile.path().join("DevToolsActivePort");
        let port = wait_for(Duration::from_secs(30), "Chromium's DevTools port", || {
            std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|t| t.lines().next().and_then(|l| l.parse::<u16>().ok()))
        });
        let list: Value = wait_for(Duration::from_secs(30), "Chromium's page list", || {
            common::agent()
                .get(format!("http://127.0.0.1:{port}/json/list"))
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_json::<Value>().ok())
                .filter(|l| {
                    l.as_array()
                        .is_some_and(|a| a.iter().any(|p| p["type"] == "page"))
                })
        });
        let url = list
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["type"] == "page")
            .unwrap()["webSocketDebuggerUrl"]
            .as_str()
            .unwrap()
            .to_owned();
        let (page, _) = tungstenite::connect(url).unwrap();
        Browser {
            child,
            page,
            next: 0,
            _profile: profile,
        }
    }

    /// Sends a DevTools command; its result.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let message = json!({ "id": id, "method": method, "params": params }).to_string();
        self.page.send(Message::Text(message.into())).unwrap();
        loop {
            let Message::Text(text) = self.page.read().unwrap() else {
                continue;
            };
            let answer: Value = serde_json::from_str(&text).unwrap();
            if answer["id"] == id {
                assert!(answer["error"].is_null(), "{method}: {answer}");
                return answer["result"].clone();
            }
        }
    }

    /// The value of a JavaScript expression in the page.
    fn eval(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
        );
        result["result"]["value"].clone()
    }

    /// Waits (at most `within`) until `expression` is `true` in the page.
    fn wait_until(&mut self, what: &str, expression: &str, within: Duration) {
        let start = Instant::now();
        while self.eval(expression) != Value::Bool(true) {
            assert!(
                start.elapsed() < within,
                "the dashboard never showed {what} ({expression}); the page: {}",
                self.eval("document.querySelector('main')?.innerText")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn screenshot(&mut self, path: &std::path::Path) {
        let shot = self.call("Page.captureScreenshot", json!({ "format": "png" }));
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        assert!(png.len() > 20_000, "a suspiciously small screenshot");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }
}

fn wait_for<T>(within: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < within, "no {what} within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The text of the cell `column` of the events table's row for `event`.
fn published(browser: &mut Browser, event: &str) -> Value {
    browser.eval(&format!(
        "document.querySelector('#events tr[data-event=\"{event}\"]')?.children[1].textContent ?? null"
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_counts_flows_and_retries_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Metrics::new();
    let bus = Bus::builder()
        .scope("dashboard::handlers")
        .store(events_sqlite::SqliteStore::open(dir.path().join("board.db")).unwrap())
        .observer(metrics.clone())
        .no_retries()
        .build()
        .unwrap();
    let options = HttpOptions::new().admin("root-token").metrics(metrics);
    let base = common::serve(bus.clone(), options).await;
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");

    let mut browser = tokio::task::spawn_blocking(Browser::launch).await.unwrap();
    let wait = Duration::from_secs(20);
    let url = format!("{base}/admin/dashboard#token=root-token");
    let mut browser = tokio::task::spawn_blocking(move || {
        browser.call("Page.enable", json!({}));
        browser.call("Page.navigate", json!({ "url": url }));
        browser.wait_until(
            "its first state",
            "document.body.dataset.live === 'true'",
            wait,
        );
        assert_eq!(
            published(&mut browser, "shop.paid"),
            Value::Null,
            "nothing yet"
        );
        browser
    })
    .await
    .unwrap();

    // The counters move.
    let mut first = None;
    for order_id in 1..=3 {
        let receipt = bus.publish(Paid { order_id }).await.unwrap();
        first.get_or_insert(receipt.event_id());
    }
    let first = first.unwrap();
    let shots = target.clone();
    let mut browser = tokio::task::spawn_blocking(move || {
        browser.wait_until(
            "3 published",
            "document.querySelector('#events tr[data-event=\"shop.paid\"]')?.children[1].textContent === '3'",
            wait,
        );
        browser.wait_until(
            "3 dead letters",
            "document.querySelectorAll('#letters tr[data-letter]').length === 3",
            wait,
        );
        // A flow by correlation id: the paid event, the shipped one it caused, the outcomes.
        browser.eval(&format!(
            "document.querySelector('#flow-id').value = '{first}'; \
             document.querySelector('#flow-form').requestSubmit(); true"
        ));
        browser.wait_until(
            "the flow's tree",
            "!!document.querySelector('#flow li[data-flow-event=\"shop.paid\"] li[data-flow-event=\"shop.shipped\"]')",
            wait,
        );
        browser.wait_until(
            "the failed mailer in the flow",
            "document.querySelector('#flow li[data-flow-event=\"shop.shipped\"] li[data-flow-handler=\"dashboard::handlers::mail\"]')?.dataset.outcome === 'dead-lettered'",
            wait,
        );
        browser.screenshot(&shots.join("dashboard.png"));
        if std::env::var_os("EVENTS_UPDATE_SCREENSHOT").is_some() {
            browser.screenshot(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboard.png"));
        }
        browser
    })
    .await
    .unwrap();

    // A dead letter retried from its button leaves the list.
    MAILER_UP.store(true, Ordering::SeqCst);
    let letter = bus.dead_letters().list(&events::DeadLetterFilter::all())[0].id;
    tokio::task::spawn_blocking(move || {
        browser.eval(&format!(
            "document.querySelector('#letters tr[data-letter=\"{letter}\"] button[data-action=\"retry\"]').click(); true"
        ));
        browser.wait_until(
            "the retried letter gone",
            &format!(
                "!document.querySelector('#letters tr[data-letter=\"{letter}\"]') && \
                 document.querySelectorAll('#letters tr[data-letter]').length === 2"
            ),
            wait,
        );
        browser.screenshot(&target.join("dashboard-retried.png"));
    })
    .await
    .unwrap();
    assert_eq!(
        bus.dead_letters()
            .list(&events::DeadLetterFilter::all())
            .len(),
        2,
        "the retry ran on the bus"
    );
}
