//! `streammachine-operator`: see the library docs.

use clap::Parser;
use streammachine_operator::{app, cli::Args, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    telemetry::init(args.log_format, &args.log_filter)?;
    app::run(args).await?;
    Ok(())
}
