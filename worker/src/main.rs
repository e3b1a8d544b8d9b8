use anyhow::Context;
use clap::Parser;
use streammachine::cli::{Cli, Command, Password};
use streammachine::config::LogFormat;
use streammachine::run;
use tracing_subscriber::EnvFilter;

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Every listener is a socket: take all the file descriptors the system allows.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    // One TLS provider for the whole process (relays over https).
    streammachine::install_tls_provider();
    match cli.command() {
        Command::Standalone(args) => {
            let (settings, password) = args.settings().context("invalid configuration")?;
            init_logging(settings.log_format);
            if password == Password::Generated {
                // Printed once, on purpose outside the log stream.
                println!(
                    "Source password (user `source`): {}\nSet STREAMMACHINE_SOURCE_PASSWORD to choose your own.",
                    settings.source_password
                );
            }
            let running = run::standalone(settings).await?;
            for key in running.app.streams().iter().map(|s| s.key.clone()) {
                tracing::info!(
                    stream = %key,
                    source = %format!("icecast://source:<password>@{}/{key}", running.listen_addr),
                    listen = %format!("http://{}/{key}", running.listen_addr),
                    "Stream ready."
                );
            }
            run::shutdown_signal().await;
            running.shutdown().await;
        }
    }
    Ok(())
}
