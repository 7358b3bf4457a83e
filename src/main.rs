use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    ordinal::cli::main(ordinal::cli::Cli::parse()).await
}
