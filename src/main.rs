use anyhow::Context;
use clap::Parser;
use ordinal::cli::{Cli, Command};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The operator's memory (see `ordinal::memory`); the backup and restore
    // Jobs keep glibc's arena per thread for their parallel compression.
    if matches!(cli.command, Command::Run(_)) {
        ordinal::memory::one_arena();
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?
        .block_on(ordinal::cli::main(cli))
}
