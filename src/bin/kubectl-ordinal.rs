//! `kubectl ordinal`: the kubectl plugin (see `ordinal::plugin`).

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = ordinal::plugin::Cli::parse();
    match ordinal::plugin::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
