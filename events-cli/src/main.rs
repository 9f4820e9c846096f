//! The stand-alone `events` command line: `events --help`.

fn main() -> std::process::ExitCode {
    events_cli::Cli::new(events::Bus::builder()).run()
}
