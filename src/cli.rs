//! The command line: `moms serve | migrate | config | admin …`. Every
//! command takes `--data-dir`, `--config` and `--json`, before or after
//! the subcommand.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::Config;

#[derive(Debug, Parser)]
#[command(
    name = "moms",
    version,
    about = "A self-hostable SMS/MMS messaging server (MoMS/CM API)"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
pub struct Global {
    /// Data folder (database, media) [env: MOMS_DATA_DIR] [default: ./data]
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// TOML configuration file (see `moms config` for every key)
    #[arg(long, global = true, env = "MOMS_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print one JSON object instead of text
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: the HTTP API and the delivery workers
    Serve {
        /// Address to listen on [env: MOMS_LISTEN] [default: 127.0.0.1:8080]
        #[arg(long)]
        listen: Option<String>,
    },
    /// Bring the database schema up to date
    Migrate,
    /// Print the effective configuration (secrets redacted)
    Config,
    /// Manage clients, campaigns and promotions; inject test messages
    Admin {
        #[command(subcommand)]
        command: Box<crate::admin::AdminCommand>,
    },
}

impl Global {
    /// The configuration with command-line overrides applied last.
    pub fn config(&self) -> anyhow::Result<Config> {
        let mut config = Config::load(self.config.as_deref())?;
        if let Some(dir) = &self.data_dir {
            config.data_dir = dir.clone();
        }
        Ok(config)
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { listen } => {
            let mut config = cli.global.config()?;
            if let Some(listen) = listen {
                config.listen = listen;
            }
            crate::admin::serve(config).await
        }
        Command::Migrate => {
            let config = cli.global.config()?;
            let store = crate::store::Store::connect(&config).await?;
            let ran = store.migrate().await?;
            store.apply_configured_carriers(&config.carriers).await?;
            crate::admin::print(
                cli.global.json,
                serde_json::json!({"migrated": true, "database": config.database_name(), "applied": ran}),
                &format!(
                    "database {} is up to date{}",
                    config.database_name(),
                    if ran > 0 {
                        format!(" ({ran} migrations applied)")
                    } else {
                        String::new()
                    }
                ),
            );
            Ok(())
        }
        Command::Config => {
            let config = cli.global.config()?;
            if cli.global.json {
                let mut shown: serde_json::Value = toml::from_str(&config.redacted_toml())?;
                if let Some(map) = shown.as_object_mut() {
                    map.remove("_");
                }
                println!("{shown}");
            } else {
                println!(
                    "# The effective configuration (defaults, then --config, then MOMS_* variables)."
                );
                println!(
                    "# Every key with its explanation: see config/default.toml in the source."
                );
                print!("{}", config.redacted_toml());
            }
            Ok(())
        }
        Command::Admin { command } => {
            let config = cli.global.config()?;
            crate::admin::run(config, *command, cli.global.json).await
        }
    }
}
