//! A second crate of the workspace, for the integration tests: its handler is registered by
//! nothing but `#[handler]`, and the tests in `tests/` check that a bus built in another
//! crate finds it.
//!
//! It also compiles the README's code blocks as doctests.

#![doc = include_str!("../../README.md")]

use std::sync::atomic::{AtomicU64, Ordering};

use events::{Event, handler};

/// Published by the tests; handled only by `count_plugin_pings` in this crate.
#[derive(Debug, Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "plugin.ping")]
pub struct PluginPing {
    /// Added to [`PLUGIN_PINGS`] by the handler.
    pub n: u64,
}

/// The sum of every `PluginPing::n` handled in this process.
pub static PLUGIN_PINGS: AtomicU64 = AtomicU64::new(0);

/// Never called from this crate nor registered by hand.
#[handler(name = "plugin.count_pings")]
fn count_plugin_pings(ev: &PluginPing) {
    PLUGIN_PINGS.fetch_add(ev.n, Ordering::SeqCst);
}

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `nats-server -js` of a test's own, on a free port with a temporary store directory;
/// killed on drop. The binary is Debian's `nats-server` (`.ci/run` installs it).
#[derive(Debug)]
pub struct NatsServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl NatsServer {
    /// Starts one on a free port.
    pub fn start() -> NatsServer {
        NatsServer::start_with(&[])
    }

    /// Starts one on a free port with more command-line arguments (auth, TLS, a config
    /// file).
    pub fn start_with(args: &[&str]) -> NatsServer {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        NatsServer::launch(port, dir, args)
    }

    /// Starts one on `port` with the store in `dir` (a restart).
    pub fn start_at(port: u16, dir: tempfile::TempDir) -> NatsServer {
        NatsServer::launch(port, dir, &[])
    }

    fn launch(port: u16, dir: tempfile::TempDir, args: &[&str]) -> NatsServer {
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir.path())
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server (Debian package `nats-server`) must be installed");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        NatsServer { child, port, dir }
    }

    /// `127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The server's process id (to stop it with `SIGSTOP`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the server and gives back its store directory, for a restart.
    pub fn stop(mut self) -> (u16, tempfile::TempDir) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let port = self.port;
        // Move the directory out; `Drop` then has nothing left to kill.
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        (port, dir)
    }
}

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A small xorshift generator for randomized tests, seeded from the environment variable
/// `var` when it holds a number, else from the clock. The seed is printed, so a failing run
/// can be replayed with `var=<seed>`.
#[derive(Debug)]
pub struct SeededRng(u64);

impl SeededRng {
    /// Seeds from `var` or the clock, and prints `var=<seed>`.
    pub fn from_env(var: &str) -> SeededRng {
        let seed = std::env::var(var)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            })
            | 1; // xorshift never leaves zero
        eprintln!("{var}={seed}");
        SeededRng(seed)
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Waits (polling every 20 ms) until `done()` holds; panics naming `what` after 20 s.
pub async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Handler calls a test records, `(handler, bus, n, attempt)`: which "process" ran which
/// handler for which event, at which attempt. A `static` shared by one test file's handlers.
#[derive(Debug, Default)]
pub struct Calls(std::sync::Mutex<Vec<(&'static str, &'static str, u64, u32)>>);

impl Calls {
    /// None yet.
    pub const fn new() -> Calls {
        Calls(std::sync::Mutex::new(Vec::new()))
    }

    /// Handler `handler` ran on bus `bus` for event `n`, at `attempt`.
    pub fn record(&self, handler: &'static str, bus: &'static str, n: u64, attempt: u32) {
        self.0.lock().unwrap().push((handler, bus, n, attempt));
    }

    /// `handler`'s calls, in order: `(bus, n, attempt)`.
    pub fn of(&self, handler: &str) -> Vec<(&'static str, u64, u32)> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.0 == handler)
            .map(|c| (c.1, c.2, c.3))
            .collect()
    }

    /// Forgets every call.
    pub fn clear(&self) {
        self.0.lock().unwrap().clear();
    }
}

/// A child process whose standard output is read line by line on a thread of its own: for
/// the crash tests, which read what a child acknowledged and kill it with `SIGKILL`.
#[derive(Debug)]
pub struct ChildLines {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl ChildLines {
    /// Starts `command` with its standard output piped (its standard error dropped).
    pub fn spawn(mut command: Command) -> ChildLines {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        ChildLines { child, lines }
    }

    /// The next line, waiting at most `wait`.
    pub fn line(&self, wait: Duration) -> Option<String> {
        self.lines.recv_timeout(wait).ok()
    }

    /// A line already printed, if any (no waiting).
    pub fn try_line(&self) -> Option<String> {
        self.lines.try_recv().ok()
    }

    /// Writes `line` to its standard input (the command had it piped).
    pub fn send(&mut self, line: &str) {
        use std::io::Write;
        let stdin = self
            .child
            .stdin
            .as_mut()
            .expect("the child's stdin is piped");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// Every line until one equal to `last` (included), waiting at most `wait` for each.
    ///
    /// # Panics
    /// When a line does not come in time.
    pub fn lines_until(&self, last: &str, wait: Duration) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self
                .line(wait)
                .unwrap_or_else(|| panic!("no line within {wait:?}; got {lines:?}"));
            let done = line == last;
            lines.push(line);
            if done {
                return lines;
            }
        }
    }

    /// Waits for it to exit; whether it succeeded.
    pub fn wait(mut self) -> bool {
        self.child.wait().unwrap().success()
    }

    /// Kills it with `SIGKILL` (no destructor, no flush) and waits for it.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Kills it with `SIGKILL` and waits for it; every line it printed that was not read.
    pub fn kill_and_read(self) -> Vec<String> {
        let lines = self.lines;
        let mut child = self.child;
        child.kill().unwrap();
        child.wait().unwrap();
        // The reader thread sends what was written before the kill, then ends at EOF.
        lines.iter().collect()
    }
}

/// The aggregate of the stream concurrency tests (`tests/tests/stream_concurrency.rs` and
/// its child, `src/bin/stream_child.rs`): a counter that two processes increment.
pub mod counter {
    use events::{Event, aggregate};

    /// The counter went up by one.
    #[derive(Debug, Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    #[event(name = "tests.counter.incremented")]
    pub struct Incremented {
        /// Which process did it.
        pub by: String,
    }

    /// A counter.
    #[derive(Debug, Default, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    pub struct Counter {
        /// How many increments it has.
        pub value: u64,
    }

    #[aggregate(name = "tests.counter")]
    impl Counter {
        #[apply]
        fn incremented(&mut self, _: &Incremented) {
            self.value += 1;
        }

        /// One more, by `by`.
        #[command]
        pub fn increment(&self, by: &str) -> Result<Incremented, std::convert::Infallible> {
            Ok(Incremented { by: by.into() })
        }

        /// Two more in one command: both appended, or neither.
        #[command]
        pub fn increment_twice(
            &self,
            by: &str,
        ) -> Result<(Incremented, Incremented), std::convert::Infallible> {
            Ok((Incremented { by: by.into() }, Incremented { by: by.into() }))
        }
    }
}
