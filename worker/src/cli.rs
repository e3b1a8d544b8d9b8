//! Command-line flags. Each flag can also be set by `STREAMMACHINE_<NAME>` and in the config file;
//! flags win over the environment, which wins over the file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::{
    ConfigError, FileConfig, LogFormat, Settings, StreamConfig, parse_stream_flag,
};

#[derive(Debug, Parser)]
#[command(
    name = "streammachine",
    version,
    about = "Live radio streaming with hours of rewind",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Without a subcommand, `streammachine` runs standalone with these flags.
    #[command(flatten)]
    pub standalone: CommonArgs,
}

impl Cli {
    /// The role to run; no subcommand means standalone.
    pub fn command(self) -> Command {
        self.command.unwrap_or(Command::Standalone(self.standalone))
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Ingest and serve in one process: no Redis, no NATS (the default deployment for one machine).
    Standalone(CommonArgs),
}

#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// YAML config file (see examples/streammachine.yaml).
    #[arg(long, env = "STREAMMACHINE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address for listeners and Icecast sources [default: 0.0.0.0:8000].
    #[arg(long, env = "STREAMMACHINE_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Address for the admin API [default: 127.0.0.1:8001].
    #[arg(long, env = "STREAMMACHINE_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// Bearer token for the admin API (required when it listens beyond loopback).
    #[arg(long, env = "STREAMMACHINE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// A stream to serve, `KEY` or `KEY:mp3` / `KEY:aac`; repeat for more. Replaces the
    /// configured streams [default: live:mp3].
    #[arg(long = "stream", env = "STREAMMACHINE_STREAM", value_delimiter = ',', value_parser = parse_stream_flag)]
    pub streams: Vec<(String, StreamConfig)>,
    /// Password for Icecast sources (user `source`); random and printed once if unset.
    #[arg(long, env = "STREAMMACHINE_SOURCE_PASSWORD", hide_env_values = true)]
    pub source_password: Option<String>,
    /// Rewind buffer length, e.g. 4h [default: 4h].
    #[arg(long, env = "STREAMMACHINE_REWIND", value_parser = humantime::parse_duration)]
    pub rewind: Option<Duration>,
    /// Audio sent at once to a new listener, e.g. 30s [default: 30s].
    #[arg(long, env = "STREAMMACHINE_BURST", value_parser = humantime::parse_duration)]
    pub burst: Option<Duration>,
    /// Keep rewind buffers across restarts in this directory.
    #[arg(long, env = "STREAMMACHINE_DUMP_DIR")]
    pub dump_dir: Option<PathBuf>,
    /// Log format.
    #[arg(long, env = "STREAMMACHINE_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
}

/// Where the source password came from, so a generated one can be shown once.
#[derive(Debug, PartialEq, Eq)]
pub enum Password {
    Given,
    Generated,
}

pub fn random_password() -> String {
    use rand::RngExt;
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..20)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

impl CommonArgs {
    /// Defaults, then the file, then env/flags.
    pub fn settings(&self) -> Result<(Settings, Password), ConfigError> {
        let file = match &self.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        let mut password = Password::Given;
        let mut s = Settings::defaults(String::new());
        s.apply_file(file);
        if let Some(v) = self.listen {
            s.listen = v;
        }
        if let Some(v) = self.admin_listen {
            s.admin_listen = v;
        }
        if let Some(v) = &self.admin_token {
            s.admin_token = Some(v.clone());
        }
        if let Some(v) = &self.source_password {
            s.source_password = v.clone();
        }
        if let Some(v) = self.rewind {
            s.rewind = v;
        }
        if let Some(v) = self.burst {
            s.burst = v;
        }
        if let Some(v) = &self.dump_dir {
            s.dump_dir = Some(v.clone());
        }
        if let Some(v) = self.log_format {
            s.log_format = v;
        }
        if !self.streams.is_empty() {
            s.streams = self.streams.iter().cloned().collect();
        }
        if s.source_password.is_empty() {
            s.source_password = random_password();
            password = Password::Generated;
        }
        s.validate()?;
        Ok((s, password))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> CommonArgs {
        let mut v = vec!["streammachine", "standalone"];
        v.extend(args);
        match Cli::try_parse_from(v).unwrap().command() {
            Command::Standalone(a) => a,
        }
    }

    #[test]
    fn defaults_generate_a_password() {
        let (s, p) = parse(&[]).settings().unwrap();
        assert_eq!(p, Password::Generated);
        assert_eq!(s.source_password.len(), 20);
        assert_eq!(s.listen.to_string(), "0.0.0.0:8000");
        assert_eq!(s.streams.keys().collect::<Vec<_>>(), vec!["live"]);
    }

    #[test]
    fn flags_override_the_file() {
        let dir = std::env::temp_dir().join(format!("sm-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.yaml");
        std::fs::write(&file, "rewind: 1h\nburst: 5s\nsource_password: filepw\n").unwrap();
        let a = parse(&[
            "--config",
            file.to_str().unwrap(),
            "--rewind",
            "2h",
            "--stream",
            "a:aac",
            "--stream",
            "b",
        ]);
        let (s, p) = a.settings().unwrap();
        assert_eq!(p, Password::Given);
        assert_eq!(s.source_password, "filepw");
        assert_eq!(s.rewind, Duration::from_secs(7200));
        assert_eq!(s.burst, Duration::from_secs(5));
        assert_eq!(s.streams.len(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn no_subcommand_means_standalone() {
        let cli = Cli::try_parse_from(["streammachine", "--rewind", "1h"]).unwrap();
        let Command::Standalone(a) = cli.command();
        assert_eq!(a.rewind, Some(Duration::from_secs(3600)));
    }

    #[test]
    fn bad_flags_are_rejected() {
        let v = ["streammachine", "standalone", "--stream", "a:ogg"];
        assert!(Cli::try_parse_from(v).is_err());
        let v = ["streammachine", "standalone", "--rewind", "soon"];
        assert!(Cli::try_parse_from(v).is_err());
    }
}
