//! Each command: admin API calls, and what to print.

use std::io::{IsTerminal, Write};
use std::path::{Component, Path};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use events_http::axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::client::{Admin, Reply};
use crate::{
    Commands, CompatCommand, Exit, Failure, Global, LetterCommand, LetterFilter, QueryArgs,
    StoreCommand,
};

/// The largest page the admin API serves.
const PAGE: u64 = 1000;

pub(crate) fn run(admin: &Admin, global: &Global, command: Commands) -> Result<Exit, Failure> {
    let out = Out { json: global.json };
    match command {
        Commands::Store(StoreCommand::Query(args)) => query(admin, &out, &args),
        Commands::DeadLetters(LetterCommand::List(filter)) => list_letters(admin, &out, &filter),
        Commands::DeadLetters(LetterCommand::Show { id }) => {
            let letter =
                expect_ok(admin.call(Method::GET, &format!("/admin/dead-letters/{id}"), None)?)?;
            out.document(&letter)?;
            Ok(Exit::Ok)
        }
        Commands::DeadLetters(LetterCommand::Retry {
            id,
            patch,
            all,
            filter,
        }) => {
            let patch = patch.map(|p| read_patch(&p)).transpose()?;
            let ids = match id {
                Some(id) if !all => vec![id],
                _ => letters(admin, &filter)?
                    .iter()
                    .filter_map(|l| l["id"].as_u64())
                    .collect(),
            };
            retry(admin, &out, &ids, patch.as_ref())
        }
        Commands::DeadLetters(LetterCommand::Discard { id, all, filter }) => {
            let path = match id {
                Some(id) if !all => format!("/admin/dead-letters/{id}"),
                _ => format!("/admin/dead-letters?{}", filter_query(&filter)),
            };
            let answer = expect_ok(admin.call(Method::DELETE, &path, None)?)?;
            if out.json {
                out.document(&answer)?;
            } else {
                out.line(&format!("discarded {}", answer["discarded"]))?;
            }
            Ok(Exit::Ok)
        }
        Commands::Replay { handler } => replay(admin, &out, &handler),
        Commands::Lag {
            max_behind,
            max_age,
        } => lag(admin, &out, max_behind, max_age),
        Commands::Pause { handler } => pause_or_resume(admin, &out, &handler, "pause"),
        Commands::Resume { handler } => pause_or_resume(admin, &out, &handler, "resume"),
        Commands::Tail {
            pattern,
            from_start,
            interval_ms,
        } => tail(admin, &out, pattern.as_deref(), from_start, interval_ms),
        Commands::Docs { out: dir } => docs(admin, &out, &dir),
        Commands::Compat(CompatCommand::Check { snapshot }) => compat_check(admin, &out, &snapshot),
        Commands::Compat(CompatCommand::Save { snapshot }) => {
            let now = expect_ok(admin.call(Method::GET, "/admin/schemas", None)?)?;
            let text = serde_json::to_string_pretty(&now).unwrap_or_default() + "\n";
            std::fs::write(&snapshot, text).map_err(|e| {
                Failure::new(
                    Exit::Unavailable,
                    format!("cannot write {}: {e}", snapshot.display()),
                )
            })?;
            let count = now.as_object().map_or(0, serde_json::Map::len);
            if out.json {
                out.document(&json!({ "saved": snapshot.display().to_string(), "events": count }))?;
            } else {
                out.line(&format!(
                    "saved {count} event schemas to {}",
                    snapshot.display()
                ))?;
            }
            Ok(Exit::Ok)
        }
    }
}

/// Standard output, for people or (`--json`) for scripts. A closed pipe (`| head`) ends the
/// command quietly.
struct Out {
    json: bool,
}

impl Out {
    fn line(&self, text: &str) -> Result<(), Failure> {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{text}").map_err(|e| {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                Failure::new(Exit::Ok, "")
            } else {
                Failure::new(Exit::Unavailable, format!("cannot write the output: {e}"))
            }
        })
    }

    /// One JSON document: on one line for scripts, indented for people (every line made
    /// printable).
    fn document(&self, value: &Value) -> Result<(), Failure> {
        if self.json {
            return self.line(&value.to_string());
        }
        let text = serde_json::to_string_pretty(value).unwrap_or_default();
        for line in text.lines() {
            self.line(&printable(line))?;
        }
        Ok(())
    }
}

/// `text` with every control character (a terminal escape in a payload, a newline in a
/// handler's error) written as `\u{..}`: outside bytes never drive the terminal.
pub(crate) fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// The answer's body when it is 200; otherwise the failure its problem document says.
fn expect_ok(reply: Reply) -> Result<Value, Failure> {
    if reply.status == StatusCode::OK {
        return Ok(reply.body);
    }
    Err(problem_failure(reply.status, &reply.body))
}

fn problem_failure(status: StatusCode, body: &Value) -> Failure {
    let exit = match status.as_u16() {
        404 => Exit::NotFound,
        400 => Exit::Usage,
        401 | 403 | 409 | 413 | 415 | 422 | 429 => Exit::Refused,
        _ => Exit::Unavailable,
    };
    let mut message = body["detail"]
        .as_str()
        .map_or_else(|| format!("the admin API answered {status}"), str::to_owned);
    if status == StatusCode::UNAUTHORIZED {
        message.push_str(" (give the admin token with --token or EVENTS_ADMIN_TOKEN)");
    }
    Failure::new(exit, message)
}

/// `text` percent-encoded for a query string or a path segment.
fn enc(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn time_of(ms: Option<u64>) -> String {
    ms.map_or_else(
        || "-".to_owned(),
        |ms| humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string(),
    )
}

fn clip(text: &str, chars: usize) -> String {
    match text.char_indices().nth(chars) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_owned(),
    }
}

fn query(admin: &Admin, out: &Out, args: &QueryArgs) -> Result<Exit, Failure> {
    let mut filters = String::new();
    if let Some(name) = &args.name {
        filters.push_str(&format!("&name={}", enc(name)));
    }
    if let Some(id) = &args.correlation_id {
        filters.push_str(&format!("&correlation_id={}", enc(id)));
    }
    if let Some(since) = args.since {
        let from = SystemTime::now()
            .checked_sub(since)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis());
        filters.push_str(&format!("&since_ms={from}"));
    }
    if args.newest_first {
        filters.push_str("&order=newest");
    }
    let mut after = args.after;
    let mut left = args.limit;
    while left > 0 {
        let mut path = format!("/admin/events?limit={}{filters}", left.min(PAGE));
        if let Some(after) = after {
            path.push_str(&format!("&after={after}"));
        }
        let page = expect_ok(admin.call(Method::GET, &path, None)?)?;
        for event in page["events"].as_array().into_iter().flatten() {
            print_event(out, event)?;
            left -= 1;
        }
        match page["next"].as_u64() {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    Ok(Exit::Ok)
}

fn print_event(out: &Out, e: &Value) -> Result<(), Failure> {
    if out.json {
        return out.line(&e.to_string());
    }
    out.line(&printable(&format!(
        "{:>8}  {}  {} v{}  {}  {}",
        e["sequence"],
        time_of(e["time_ms"].as_u64()),
        e["name"].as_str().unwrap_or("?"),
        e["version"],
        e["id"].as_str().unwrap_or("?"),
        clip(&e["payload"].to_string(), 200),
    )))
}

fn filter_query(filter: &LetterFilter) -> String {
    let mut q = Vec::new();
    if let Some(event) = &filter.event {
        q.push(format!("event={}", enc(event)));
    }
    if let Some(handler) = &filter.handler {
        q.push(format!("handler={}", enc(handler)));
    }
    if let Some(permanent) = filter.permanent {
        q.push(format!("permanent={permanent}"));
    }
    q.join("&")
}

/// The letters `filter` selects, oldest first, at most its limit.
fn letters(admin: &Admin, filter: &LetterFilter) -> Result<Vec<Value>, Failure> {
    let mut found = Vec::new();
    let mut after = 0;
    while (found.len() as u64) < filter.limit {
        let left = filter.limit - found.len() as u64;
        let path = format!(
            "/admin/dead-letters?limit={}&after={after}&{}",
            left.min(PAGE),
            filter_query(filter)
        );
        let page = expect_ok(admin.call(Method::GET, &path, None)?)?;
        found.extend(
            page["dead_letters"]
                .as_array()
                .into_iter()
                .flatten()
                .cloned(),
        );
        match page["next"].as_u64() {
            Some(next) => after = next,
            None => break,
        }
    }
    Ok(found)
}

fn list_letters(admin: &Admin, out: &Out, filter: &LetterFilter) -> Result<Exit, Failure> {
    for letter in letters(admin, filter)? {
        if out.json {
            out.line(&letter.to_string())?;
            continue;
        }
        out.line(&printable(&format!(
            "#{}  {}  {}  attempts {}{}  last failed {}  {}",
            letter["id"],
            letter["event"].as_str().unwrap_or("?"),
            letter["handler"].as_str().unwrap_or("?"),
            letter["attempts"],
            if letter["permanent"] == true {
                ", permanent"
            } else {
                ""
            },
            time_of(letter["last_failure_ms"].as_u64()),
            clip(letter["error"].as_str().unwrap_or(""), 200),
        )))?;
        out.line(&printable(&format!(
            "          payload {}",
            clip(&letter["payload"].to_string(), 200)
        )))?;
    }
    Ok(Exit::Ok)
}

/// A merge patch given inline or as `@FILE` (`@-`: standard input).
fn read_patch(text: &str) -> Result<Value, Failure> {
    let text = match text.strip_prefix('@') {
        None => text.to_owned(),
        Some("-") => std::io::read_to_string(std::io::stdin())
            .map_err(|e| Failure::new(Exit::Usage, format!("cannot read the patch: {e}")))?,
        Some(file) => std::fs::read_to_string(file)
            .map_err(|e| Failure::new(Exit::Usage, format!("cannot read the patch {file}: {e}")))?,
    };
    serde_json::from_str(&text).map_err(|e| {
        Failure::new(
            Exit::Usage,
            format!("the patch is not JSON (a JSON Merge Patch of the payload): {e}"),
        )
    })
}

fn retry(admin: &Admin, out: &Out, ids: &[u64], patch: Option<&Value>) -> Result<Exit, Failure> {
    let body = patch.map(|p| json!({ "patch": p }));
    let mut failed_again = 0;
    for id in ids {
        let answer = expect_ok(admin.call(
            Method::POST,
            &format!("/admin/dead-letters/{id}/retry"),
            body.as_ref(),
        )?)?;
        if answer["retried"] != true {
            return Err(Failure::new(
                Exit::NotFound,
                format!(
                    "dead letter #{id} cannot be retried here: its event type or handler is not linked into {}",
                    if admin.is_remote() {
                        "the service"
                    } else {
                        "this binary"
                    }
                ),
            ));
        }
        let again = &answer["dead_letter"];
        if !again.is_null() {
            failed_again += 1;
        }
        if out.json {
            out.line(&json!({ "id": id, "retried": true, "dead_letter": again }).to_string())?;
        } else if again.is_null() {
            out.line(&format!("#{id}: retried, handled"))?;
        } else {
            out.line(&printable(&format!(
                "#{id}: retried, failed again (now #{}): {}",
                again["id"],
                again["error"].as_str().unwrap_or("")
            )))?;
        }
    }
    Ok(if failed_again > 0 {
        Exit::Check
    } else {
        Exit::Ok
    })
}

fn replay(admin: &Admin, out: &Out, handler: &str) -> Result<Exit, Failure> {
    let started = Instant::now();
    let bar = (!out.json && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {msg} [{bar:40}] {pos}/{len} events, {per_sec}, ETA {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_message(format!("rebuilding {}", printable(handler)));
        bar
    });
    let mut ended = None;
    let refused = admin.stream(
        &format!("/admin/projections/{}/rebuild", enc(handler)),
        |event, data| {
            let data: Value = serde_json::from_str(data).unwrap_or(Value::Null);
            match event {
                "progress" => {
                    let (done, total) = (
                        data["done"].as_u64().unwrap_or(0),
                        data["total"].as_u64().unwrap_or(0),
                    );
                    if out.json {
                        out.line(&json!({ "progress": data }).to_string())?;
                    } else if let Some(bar) = &bar {
                        bar.set_length(total);
                        bar.set_position(done);
                    } else {
                        eprintln!("{}", progress_line(handler, done, total, started.elapsed()));
                    }
                }
                "done" | "error" => ended = Some((event.to_owned(), data)),
                _ => {}
            }
            Ok(())
        },
    )?;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    if let Some(reply) = refused {
        return Err(problem_failure(reply.status, &reply.body));
    }
    match ended {
        Some((event, data)) if event == "done" => {
            if out.json {
                out.line(&json!({ "done": data }).to_string())?;
            } else {
                out.line(&format!(
                    "rebuilt {} from {} events in {:.1}s ({} unreadable), live again after sequence {}",
                    printable(handler),
                    data["events"],
                    started.elapsed().as_secs_f64(),
                    data["unreadable"],
                    data["switched_at"]
                ))?;
            }
            Ok(Exit::Ok)
        }
        Some((_, problem)) => {
            let status = problem["status"]
                .as_u64()
                .and_then(|s| u16::try_from(s).ok())
                .and_then(|s| StatusCode::from_u16(s).ok())
                .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            let mut failure = problem_failure(status, &problem);
            failure.message = format!("the rebuild failed: {}", failure.message);
            if failure.exit == Exit::Unavailable {
                failure.exit = Exit::Check;
            }
            Err(failure)
        }
        None => Err(Failure::new(
            Exit::Unknown,
            "the progress stream ended before the rebuild did (the rebuild goes on in the service, or stopped with it)",
        )),
    }
}

/// A progress line for a log: done of total, the share, and the time left at the rate so far.
fn progress_line(handler: &str, done: u64, total: u64, elapsed: Duration) -> String {
    let percent = (done * 100).checked_div(total).unwrap_or(100);
    let eta = if done == 0 || done >= total {
        Duration::ZERO
    } else {
        Duration::from_secs_f64(elapsed.as_secs_f64() / done as f64 * (total - done) as f64)
    };
    format!(
        "rebuilding {}: {done}/{total} events ({percent}%), ETA {}",
        printable(handler),
        humantime::format_duration(Duration::from_secs(eta.as_secs()))
    )
}

fn lag(
    admin: &Admin,
    out: &Out,
    max_behind: Option<u64>,
    max_age: Option<Duration>,
) -> Result<Exit, Failure> {
    let answer = expect_ok(admin.call(Method::GET, "/admin/handlers", None)?)?;
    let rows = answer["durable"].as_array().cloned().unwrap_or_default();
    let mut over = Vec::new();
    if !out.json {
        if rows.is_empty() {
            out.line("no durable handlers")?;
        } else {
            out.line(&format!(
                "{:<48} {:<32} {:>10} {:>12}  state",
                "handler", "event", "behind", "oldest age"
            ))?;
        }
    }
    for row in &rows {
        let behind = row["behind"].as_u64().unwrap_or(0);
        let age = Duration::from_millis(row["age_ms"].as_u64().unwrap_or(0));
        if max_behind.is_some_and(|m| behind > m) || max_age.is_some_and(|m| behind > 0 && age > m)
        {
            over.push(format!(
                "{} ({}): {behind} behind, the oldest {} old",
                row["handler"].as_str().unwrap_or("?"),
                row["event"].as_str().unwrap_or("?"),
                humantime::format_duration(Duration::from_secs(age.as_secs()))
            ));
        }
        if out.json {
            out.line(&row.to_string())?;
            continue;
        }
        let state = if row["rebuilding"] == true {
            "rebuilding"
        } else if row["paused"] == true {
            "paused"
        } else {
            "live"
        };
        out.line(&printable(&format!(
            "{:<48} {:<32} {:>10} {:>12}  {state}",
            row["handler"].as_str().unwrap_or("?"),
            row["event"].as_str().unwrap_or("?"),
            behind,
            humantime::format_duration(Duration::from_secs(age.as_secs())).to_string(),
        )))?;
    }
    if over.is_empty() {
        return Ok(Exit::Ok);
    }
    for o in &over {
        eprintln!("over the limit: {}", printable(o));
    }
    Ok(Exit::Check)
}

fn pause_or_resume(admin: &Admin, out: &Out, handler: &str, verb: &str) -> Result<Exit, Failure> {
    if !admin.is_remote() {
        return Err(Failure::new(
            Exit::Usage,
            format!("`{verb}` acts on a running service's handler: give `--api http://..`"),
        ));
    }
    let answer = expect_ok(admin.call(
        Method::POST,
        &format!("/admin/handlers/{}/{verb}", enc(handler)),
        None,
    )?)?;
    if out.json {
        out.document(&answer)?;
    } else if verb == "pause" {
        out.line(&format!("paused {}", printable(handler)))?;
    } else {
        out.line(&format!(
            "resumed {}: caught up on {} events, live after sequence {}",
            printable(handler),
            answer["events"],
            answer["switched_at"]
        ))?;
    }
    Ok(Exit::Ok)
}

fn tail(
    admin: &Admin,
    out: &Out,
    pattern: Option<&str>,
    from_start: bool,
    interval_ms: u64,
) -> Result<Exit, Failure> {
    let filter = pattern.map_or_else(String::new, |p| format!("&name={}", enc(p)));
    let mut cursor = if from_start {
        0
    } else {
        let newest = expect_ok(admin.call(
            Method::GET,
            &format!("/admin/events?order=newest&limit=1{filter}"),
            None,
        )?)?;
        newest["events"][0]["sequence"].as_u64().unwrap_or(0)
    };
    loop {
        let page = expect_ok(admin.call(
            Method::GET,
            &format!("/admin/events?limit={PAGE}&after={cursor}{filter}"),
            None,
        )?)?;
        for event in page["events"].as_array().into_iter().flatten() {
            print_event(out, event)?;
            cursor = cursor.max(event["sequence"].as_u64().unwrap_or(0));
        }
        if page["next"].is_null() {
            std::thread::sleep(Duration::from_millis(interval_ms.max(10)));
        }
    }
}

fn docs(admin: &Admin, out: &Out, dir: &Path) -> Result<Exit, Failure> {
    let answer = expect_ok(admin.call(Method::GET, "/admin/docs", None)?)?;
    let mut written = Vec::new();
    for file in answer["files"].as_array().into_iter().flatten() {
        let (Some(path), Some(content)) = (file["path"].as_str(), file["content"].as_str()) else {
            continue;
        };
        // The names come from the service: only plain relative paths, inside `dir`.
        let relative = Path::new(path);
        if path.is_empty()
            || !relative
                .components()
                .all(|c| matches!(c, Component::Normal(_)))
        {
            return Err(Failure::new(
                Exit::Refused,
                format!(
                    "the service named a document {} outside the directory",
                    printable(path)
                ),
            ));
        }
        let target = dir.join(relative);
        let io = |e: std::io::Error| {
            Failure::new(
                Exit::Unavailable,
                format!("cannot write {}: {e}", target.display()),
            )
        };
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        std::fs::write(&target, content).map_err(io)?;
        written.push(target.display().to_string());
    }
    if out.json {
        out.document(&json!({ "written": written }))?;
    } else {
        for w in &written {
            // The names came from the service.
            out.line(&printable(&format!("wrote {w}")))?;
        }
    }
    Ok(Exit::Ok)
}

fn compat_check(admin: &Admin, out: &Out, snapshot: &Path) -> Result<Exit, Failure> {
    let text = std::fs::read(snapshot).map_err(|e| {
        Failure::new(
            Exit::Usage,
            format!("cannot read the snapshot {}: {e}", snapshot.display()),
        )
    })?;
    let saved: Value = serde_json::from_slice(&text).map_err(|e| {
        Failure::new(
            Exit::Usage,
            format!("the snapshot {} is not JSON: {e}", snapshot.display()),
        )
    })?;
    let now = expect_ok(admin.call(Method::GET, "/admin/schemas", None)?)?;
    let breaking: Vec<String> = events::compat::check_snapshots(&saved, &now)
        .iter()
        .map(ToString::to_string)
        .collect();
    if out.json {
        out.document(&json!({ "breaking": breaking }))?;
    } else if breaking.is_empty() {
        out.line(&format!(
            "compatible: no breaking change against {}",
            snapshot.display()
        ))?;
    } else {
        out.line(&format!(
            "{} breaking change(s) without a version bump against {}:",
            breaking.len(),
            snapshot.display()
        ))?;
        for b in &breaking {
            out.line(&format!("  - {}", printable(b)))?;
        }
    }
    Ok(if breaking.is_empty() {
        Exit::Ok
    } else {
        Exit::Check
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_text_cannot_drive_the_terminal() {
        assert_eq!(
            printable("a\u{1b}[31mred\n\u{9b}x"),
            "a\\u{1b}[31mred\\u{a}\\u{9b}x"
        );
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(enc("order.* &x=1/é"), "order.%2A%20%26x%3D1%2F%C3%A9");
    }

    #[test]
    fn progress_lines_say_the_share_and_time_left() {
        assert_eq!(
            progress_line("p", 250, 1000, Duration::from_secs(1)),
            "rebuilding p: 250/1000 events (25%), ETA 3s"
        );
        assert_eq!(
            progress_line("p", 1000, 1000, Duration::from_secs(4)),
            "rebuilding p: 1000/1000 events (100%), ETA 0s"
        );
    }
}
