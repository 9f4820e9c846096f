//! The stream concurrency test's child process (`tests/tests/stream_concurrency.rs`): one
//! of two writers of one stream, on a shared SQLite file or PostgreSQL schema. It waits for
//! `go` on its standard input, then:
//!
//! - `raw`: for each version `v` in `0..n`, appends one event at expected version `v` and
//!   prints `won v` or `lost v` (a conflict);
//! - `execute`: runs the counter's `increment` command `n` times through
//!   `Aggregates::execute` (reloading on conflicts) and prints `done <attempts>` each time;
//! - `pairs`: runs `increment_twice` (two events per command) `n` times, printing
//!   `done <version>` after each: what the crash test kills.
//!
//! `stream_child <sqlite path | postgres config> <schema or -> <raw|execute> <n> <name>`

use std::io::{BufRead, Write};

use events::Bus;
use events::store::{StoreError, StoredEvent, StreamAppend};
use events_tests::counter::Counter;

fn say(line: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_fmt(line);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, target, schema, mode, n, name] = &args[..] else {
        panic!(
            "usage: stream_child <sqlite path | postgres config> <schema|-> <raw|execute> <n> <name>"
        );
    };
    let n: u64 = n.parse().unwrap();
    let builder = Bus::builder().no_handlers().source(name.clone());
    let bus = if schema == "-" {
        builder.store(events::store::SqliteStore::open(target).unwrap())
    } else {
        builder.store(
            events::postgres::PostgresStore::connect(
                target,
                events::postgres::PostgresOptions::new().schema(schema),
            )
            .unwrap(),
        )
    }
    .build()
    .unwrap();
    say(format_args!("ready"));
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).unwrap();
    let id = "shared".to_owned();
    match mode.as_str() {
        "raw" => {
            let streams = bus.store().unwrap().streams().unwrap();
            for v in 0..n {
                let mut event =
                    StoredEvent::new(events::EventId::new(), "tests.counter.incremented");
                event.payload = format!(r#"{{"by":"{name}"}}"#);
                let append = StreamAppend::new("tests.counter-raw", v, vec![(event, None)]);
                match streams.append_to_stream(append).await {
                    Ok(_) => say(format_args!("won {v}")),
                    Err(StoreError::Conflict { actual, .. }) => {
                        assert!(actual > v, "a conflict is with a later version");
                        say(format_args!("lost {v}"));
                    }
                    Err(e) => panic!("append: {e}"),
                }
            }
        }
        "execute" => {
            let counters = bus.aggregates::<Counter>().retries(1_000);
            for _ in 0..n {
                let done = counters.execute(&id, |c| c.increment(name)).await.unwrap();
                say(format_args!("done {}", done.attempts));
            }
        }
        "pairs" => {
            // Until killed: two events per command, the version after each.
            let counters = bus.aggregates::<Counter>().retries(1_000);
            for _ in 0..n {
                let done = counters
                    .execute(&id, |c| c.increment_twice(name))
                    .await
                    .unwrap();
                say(format_args!("done {}", done.version));
            }
        }
        other => panic!("unknown mode {other}"),
    }
    say(format_args!("end"));
}
