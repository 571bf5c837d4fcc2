//! `pyspy-bpf`: parse the command line and run it.

use clap::Parser;

fn main() {
    let cli = pyspy_bpf::cli::Cli::parse();
    // The agent logs its events (sinks failing and recovering, reloads); the other verbs
    // print their own summaries and log only warnings.
    let level = match cli.command {
        pyspy_bpf::cli::Command::Agent(_) => "info",
        _ => "warn",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level)).init();
    match pyspy_bpf::cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            // Errors quote names from the target (its exe, a tracer's name): printed escaped.
            let message = format!("{e:#}");
            eprintln!("Error: {}", pyspy_bpf::escape::printable(&message));
            std::process::exit(1);
        }
    }
}
