use std::io::IsTerminal;

use anyhow::Context;
use clap::Parser;
use streammachine::cli::{Cli, Command, Password};
use streammachine::config::{LogFormat, Settings};
use streammachine::run::{self, Running};
use tracing_subscriber::EnvFilter;

/// Logs go to stderr (stdout carries only the generated password); colours only on a terminal,
/// so pipes, files and `kubectl logs` get plain text.
fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

fn print_generated_password(settings: &Settings, password: Password) {
    if password == Password::Generated {
        // Printed once, on purpose outside the log stream.
        println!(
            "Source password (user `source`): {}\nSet STREAMMACHINE_SOURCE_PASSWORD to choose your own.",
            settings.source_password
        );
    }
}

fn log_streams(running: &Running) {
    for key in running.app.streams().iter().map(|s| s.key.clone()) {
        tracing::info!(
            stream = %key,
            source = %format!("icecast://source:<password>@{}/{key}", running.listen_addr),
            listen = %format!("http://{}/{key}", running.listen_addr),
            "Stream ready."
        );
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
            print_generated_password(&settings, password);
            let running = run::standalone(settings).await?;
            log_streams(&running);
            run::shutdown_signal().await;
            running.shutdown().await;
        }
        Command::Master(args) => {
            let (settings, password, declared) = args
                .common
                .settings_for(true)
                .context("invalid configuration")?;
            let cluster = args.cluster.options().context("invalid configuration")?;
            init_logging(settings.log_format);
            print_generated_password(&settings, password);
            let running = run::master(settings, declared, cluster).await?;
            run::shutdown_signal().await;
            running.shutdown().await;
        }
        Command::Slave(args) => {
            // A slave never takes sources: the password it would generate is never shown.
            let (settings, _, _) = args
                .common
                .settings_for(true)
                .context("invalid configuration")?;
            let cluster = args.cluster.options().context("invalid configuration")?;
            let slave = args.options().context("invalid configuration")?;
            init_logging(settings.log_format);
            let drain = slave.drain_timeout;
            let running = run::slave(settings, cluster, slave).await?;
            run::shutdown_signal().await;
            running.drain(drain).await;
            running.shutdown().await;
        }
    }
    Ok(())
}
