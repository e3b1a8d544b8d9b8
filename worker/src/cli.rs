//! Command-line flags. Each flag can also be set by `STREAMMACHINE_<NAME>` and in the config file;
//! flags win over the environment, which wins over the file.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::cluster::store::Configs;
use crate::cluster::{ClusterOptions, SlaveOptions};
use crate::config::{
    ConfigError, FileConfig, LogFormat, Settings, StreamConfig, parse_stream_flag, validate_key,
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
    /// Ingest, keep the authoritative rewind buffers, publish chunks to NATS and serve them to
    /// slaves over HTTP; stream configs live in Redis.
    Master(MasterArgs),
    /// Serve listeners from a copy of the master's buffers (snapshot over HTTP, then NATS).
    Slave(SlaveArgs),
}

/// Flags shared by master and slave.
#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// Redis holding the stream configs, e.g. redis://redis:6379/0.
    #[arg(long, env = "STREAMMACHINE_REDIS_URL")]
    pub redis: String,
    /// NATS carrying live chunks, e.g. nats://nats:4222.
    #[arg(long, env = "STREAMMACHINE_NATS_URL")]
    pub nats: String,
    /// Shared secret between master, slaves and operator (required).
    #[arg(long, env = "STREAMMACHINE_CLUSTER_TOKEN", hide_env_values = true)]
    pub cluster_token: String,
    /// Prefix of the Redis keys (`{prefix}:streams`, `{prefix}:stream:{key}`, `{prefix}:config`).
    #[arg(
        long,
        env = "STREAMMACHINE_REDIS_PREFIX",
        default_value = "streammachine"
    )]
    pub redis_prefix: String,
    /// Prefix of the NATS subjects (`{prefix}.chunks.{key}`, ...).
    #[arg(
        long,
        env = "STREAMMACHINE_NATS_PREFIX",
        default_value = "streammachine"
    )]
    pub nats_prefix: String,
}

impl ClusterArgs {
    pub fn options(&self) -> Result<ClusterOptions, ConfigError> {
        if self.cluster_token.trim().is_empty() {
            return Err(ConfigError::Invalid {
                key: "cluster_token".into(),
                message: "must not be empty".into(),
            });
        }
        if self.redis_prefix.is_empty() || self.redis_prefix.contains(char::is_whitespace) {
            return Err(ConfigError::Invalid {
                key: "redis_prefix".into(),
                message: "must be a non-empty word".into(),
            });
        }
        Ok(ClusterOptions {
            redis_url: self.redis.clone(),
            nats_url: self.nats.clone(),
            token: self.cluster_token.clone(),
            redis_prefix: self.redis_prefix.clone(),
            nats_prefix: self.nats_prefix.clone(),
        })
    }
}

#[derive(Debug, Clone, Args)]
pub struct MasterArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(Debug, Clone, Args)]
pub struct SlaveArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// The master's admin base URL, where its rewind transport is, e.g. http://master:8001.
    #[arg(long, env = "STREAMMACHINE_MASTER_URL")]
    pub master: String,
    /// Serve only these streams (comma-separated keys) [default: every stream].
    #[arg(long = "streams", env = "STREAMMACHINE_STREAMS", value_delimiter = ',')]
    pub only: Vec<String>,
    /// On SIGTERM, how long connected listeners may stay before the slave exits, e.g. 30s.
    #[arg(long, env = "STREAMMACHINE_DRAIN_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,
    /// URL a restarted master uses to reach this slave's listener port [default: the address
    /// on the route towards the master].
    #[arg(long, env = "STREAMMACHINE_ADVERTISE_URL")]
    pub advertise_url: Option<String>,
}

impl SlaveArgs {
    pub fn options(&self) -> Result<SlaveOptions, ConfigError> {
        let mut streams = BTreeSet::new();
        for key in self.only.iter().map(|k| k.trim()).filter(|k| !k.is_empty()) {
            validate_key(key)?;
            streams.insert(key.to_string());
        }
        if !(self.master.starts_with("http://") || self.master.starts_with("https://")) {
            return Err(ConfigError::Invalid {
                key: "master".into(),
                message: format!("`{}` is not an http:// or https:// URL", self.master),
            });
        }
        if !self.common.streams.is_empty() {
            return Err(ConfigError::Invalid {
                key: "stream".into(),
                message: "a slave serves the streams in the config store; use --streams KEY,... to pick some".into(),
            });
        }
        if self.common.dump_dir.is_some() {
            return Err(ConfigError::Invalid {
                key: "dump_dir".into(),
                message: "a slave keeps nothing on disk; dumps are the master's".into(),
            });
        }
        Ok(SlaveOptions {
            master_url: self.master.trim_end_matches('/').to_string(),
            streams,
            drain_timeout: self.drain_timeout,
            advertise_url: self.advertise_url.clone(),
        })
    }
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

impl CommonArgs {
    /// Defaults, then the file, then env/flags.
    pub fn settings(&self) -> Result<(Settings, Password), ConfigError> {
        self.settings_for(false).map(|(s, p, _)| (s, p))
    }

    /// Like [`CommonArgs::settings`] for a cluster role, whose admin API the cluster token
    /// guards; also the streams declared by flags or the file (none when neither names any).
    pub fn settings_for(
        &self,
        cluster: bool,
    ) -> Result<(Settings, Password, Configs), ConfigError> {
        let file = match &self.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        let mut declared = file.streams.clone().unwrap_or_default();
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
            declared = s.streams.clone();
        }
        if s.source_password.is_empty() {
            s.source_password = crate::auth::random_password();
            password = Password::Generated;
        }
        s.validate_with(cluster)?;
        Ok((s, password, declared))
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
            _ => unreachable!(),
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
        let Command::Standalone(a) = cli.command() else {
            panic!("not standalone")
        };
        assert_eq!(a.rewind, Some(Duration::from_secs(3600)));
    }

    const CLUSTER: [&str; 6] = [
        "--redis",
        "redis://r:6379/",
        "--nats",
        "nats://n:4222",
        "--cluster-token",
        "tok",
    ];

    #[test]
    fn master_takes_standalone_flags_and_declares_streams() {
        let mut v = vec![
            "streammachine",
            "master",
            "--stream",
            "a:aac",
            "--rewind",
            "2h",
        ];
        v.extend(CLUSTER);
        v.extend(["--admin-listen", "0.0.0.0:8001"]);
        let Command::Master(m) = Cli::try_parse_from(v).unwrap().command() else {
            panic!("not master")
        };
        // The cluster token guards the admin API: no admin token needed beyond loopback.
        let (s, _, declared) = m.common.settings_for(true).unwrap();
        assert_eq!(s.rewind, Duration::from_secs(7200));
        assert_eq!(declared.keys().collect::<Vec<_>>(), vec!["a"]);
        let o = m.cluster.options().unwrap();
        assert_eq!(
            (o.redis_prefix.as_str(), o.nats_prefix.as_str()),
            ("streammachine", "streammachine")
        );
        // Without flags or a file, nothing is declared (the default `live` stays local).
        let mut v = vec!["streammachine", "master"];
        v.extend(CLUSTER);
        let Command::Master(m) = Cli::try_parse_from(v).unwrap().command() else {
            panic!("not master")
        };
        assert!(m.common.settings_for(true).unwrap().2.is_empty());
    }

    #[test]
    fn slave_flags() {
        let mut v = vec![
            "streammachine",
            "slave",
            "--master",
            "http://m:8001/",
            "--streams",
            "a,b",
            "--drain-timeout",
            "1m 30s",
        ];
        v.extend(CLUSTER);
        let Command::Slave(sl) = Cli::try_parse_from(v).unwrap().command() else {
            panic!("not slave")
        };
        let o = sl.options().unwrap();
        assert_eq!(o.master_url, "http://m:8001");
        assert_eq!(o.streams.len(), 2);
        assert_eq!(o.drain_timeout, Duration::from_secs(90));
        // The token is required; a slave does not take streams or dumps.
        let v = [
            "streammachine",
            "slave",
            "--master",
            "http://m",
            "--redis",
            "r",
            "--nats",
            "n",
        ];
        assert!(Cli::try_parse_from(v).is_err());
        let mut v = vec![
            "streammachine",
            "slave",
            "--master",
            "http://m",
            "--stream",
            "x",
        ];
        v.extend(CLUSTER);
        let Command::Slave(sl) = Cli::try_parse_from(v).unwrap().command() else {
            panic!("not slave")
        };
        assert!(sl.options().is_err());
    }

    #[test]
    fn bad_flags_are_rejected() {
        let v = ["streammachine", "standalone", "--stream", "a:ogg"];
        assert!(Cli::try_parse_from(v).is_err());
        let v = ["streammachine", "standalone", "--rewind", "soon"];
        assert!(Cli::try_parse_from(v).is_err());
    }
}
