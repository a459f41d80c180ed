//! The operator's commands (`moms admin …`) and `moms serve`'s start-up.
//! They call the store and domain directly, never HTTP; what they change
//! reaches a running server through the store's change counter.

pub mod carrier;
pub mod transfer;

use std::sync::Arc;

use clap::Subcommand;
use serde_json::json;
use sha2::Digest;

use crate::api::params::Params;
use crate::app::App;
use crate::config::Config;
use crate::domain::phone::{Sender, parse_region};
use crate::store::Store;
use crate::store::client::parse_whitelist;

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Clients: the applications that call the API
    Client {
        #[command(subcommand)]
        command: ClientCommand,
    },
    /// Campaigns (the same settings as campaign.create)
    Campaign {
        #[command(subcommand)]
        command: CampaignCommand,
    },
    /// Inject an inbound message (MO) through the sandbox carrier
    Mo {
        /// The phone that sends it
        #[arg(long)]
        from: String,
        /// The short code or number it is sent to
        #[arg(long)]
        to: String,
        #[arg(long)]
        text: String,
    },
    /// Show the audit log: operator actions and opt changes with their source
    Audit {
        /// Only entries about this number (opt changes name it)
        #[arg(long)]
        number: Option<String>,
        /// Newest entries shown
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Erase what is kept about a phone number but its opt-outs (spec section 9)
    Forget {
        /// The number, in any usual form
        number: String,
    },
    /// Promotions
    Promo {
        #[command(subcommand)]
        command: PromoCommand,
    },
    /// Carriers, ported numbers and blacklists
    Carrier {
        #[command(subcommand)]
        command: carrier::CarrierCommand,
    },
    /// Write the whole store to one file, to import elsewhere (SQLite or PostgreSQL)
    Export {
        /// The dump to write
        file: std::path::PathBuf,
    },
    /// Load a dump made by `export` into this store, which must be empty
    Import {
        /// The dump to read
        file: std::path::PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Create a client; its token is shown once
    Create {
        #[arg(long)]
        name: String,
        /// Short codes and numbers it may send from, comma-separated
        #[arg(long, default_value = "")]
        senders: String,
        /// Networks it may call from, comma-separated CIDRs (empty: any)
        #[arg(long, default_value = "")]
        whitelist: String,
    },
    /// List clients
    List,
    /// Replace a client's token; the old one stops working at once
    RotateToken {
        #[arg(long = "client")]
        client_id: i64,
    },
    /// Replace a client's IP whitelist (empty: any address)
    Whitelist {
        #[arg(long = "client")]
        client_id: i64,
        #[arg(long, default_value = "")]
        cidrs: String,
    },
    /// Replace a client's senders
    Senders {
        #[arg(long = "client")]
        client_id: i64,
        #[arg(long, default_value = "")]
        senders: String,
    },
    /// Set a client's send limits (over them: HTTP 429); 0 removes a limit
    Limits {
        #[arg(long = "client")]
        client_id: i64,
        /// Sends a second (transaction.send and list.send calls)
        #[arg(long, default_value_t = 0.0)]
        per_second: f64,
        /// Messages a day, in the configured time zone
        #[arg(long, default_value_t = 0)]
        daily: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum CampaignCommand {
    /// Create a campaign for a client
    Create {
        #[arg(long = "client")]
        client_id: i64,
        #[arg(long)]
        name: String,
        /// Default sender (short code or number)
        #[arg(long)]
        from: Option<String>,
        /// Master keyword
        #[arg(long)]
        keyword: Option<String>,
        /// sms or mms
        #[arg(long = "type")]
        kind: Option<String>,
        #[arg(long)]
        callback_url: Option<String>,
        /// xml or json
        #[arg(long)]
        callback_format: Option<String>,
        /// none, single or double
        #[arg(long)]
        opt_in: Option<String>,
        #[arg(long)]
        require_names: Option<String>,
        #[arg(long)]
        help_message: Option<String>,
        #[arg(long)]
        stop_message: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum PromoCommand {
    /// Approve a pending promotion
    Approve {
        #[arg(long)]
        campaign: i64,
        #[arg(long)]
        code: String,
    },
}

/// Prints one JSON object with `--json`, else the text.
pub fn print(as_json: bool, value: serde_json::Value, text: &str) {
    if as_json {
        println!("{value}");
    } else {
        println!("{text}");
    }
}

fn senders_list(text: &str, config: &Config) -> anyhow::Result<Vec<String>> {
    let region = parse_region(&config.default_region).unwrap_or(rlibphonenumber::enums::Region::US);
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            Sender::parse(s, region)
                .map(|sender| sender.digits().to_string())
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "sender {s:?} is neither a 5–6 digit short code nor a phone number"
                    )
                })
        })
        .collect()
}

pub async fn run(config: Config, command: AdminCommand, as_json: bool) -> anyhow::Result<()> {
    let store = Store::open(&config).await?;
    match command {
        AdminCommand::Client { command } => client(&store, &config, command, as_json).await,
        AdminCommand::Carrier { command } => carrier::run(&store, &config, command, as_json).await,
        AdminCommand::Export { file } => transfer::export(&store, &file, as_json).await,
        AdminCommand::Import { file } => transfer::import(&store, &file, as_json).await,
        AdminCommand::Campaign {
            command:
                CampaignCommand::Create {
                    client_id,
                    name,
                    from,
                    keyword,
                    kind,
                    callback_url,
                    callback_format,
                    opt_in,
                    require_names,
                    help_message,
                    stop_message,
                },
        } => {
            let client = store.client(client_id).await?.ok_or_else(|| {
                anyhow::anyhow!("no client {client_id} (see `moms admin client list`)")
            })?;
            let mut params = Params::default();
            let settings = [
                ("name", Some(name)),
                ("from", from),
                ("keyword", keyword),
                ("type", kind),
                ("callback_url", callback_url),
                ("callback_format", callback_format),
                ("opt_in", opt_in),
                ("require_names", require_names),
                ("help_message", help_message),
                ("stop_message", stop_message),
            ];
            for (key, value) in settings {
                if let Some(value) = value {
                    params.set(key.to_string(), value);
                }
            }
            let region =
                parse_region(&config.default_region).unwrap_or(rlibphonenumber::enums::Region::US);
            let id = crate::api::campaign::create_from(&store, &client, region, &params)
                .await
                .map_err(|e| anyhow::anyhow!("{} (code {})", e.message(), e.code.number()))?;
            store
                .audit(
                    "operator",
                    "campaign.create",
                    &format!("campaign {id} for client {client_id}"),
                )
                .await?;
            print(
                as_json,
                json!({"campaign_id": id}),
                &format!("campaign_id: {id}"),
            );
            Ok(())
        }
        AdminCommand::Audit { number, limit } => {
            let region =
                parse_region(&config.default_region).unwrap_or(rlibphonenumber::enums::Region::US);
            let digits = match number {
                Some(number) => Some(
                    crate::domain::phone::PhoneNumber::parse(&number, region)
                        .map_err(|_| anyhow::anyhow!("{number:?} is not a phone number"))?
                        .digits()
                        .to_string(),
                ),
                None => None,
            };
            let entries = store
                .audit_entries(digits.as_deref(), limit.clamp(1, 100_000))
                .await?;
            let rows: Vec<_> = entries
                .iter()
                .map(|(at, actor, action, detail)| json!({"at": at, "actor": actor, "action": action, "detail": detail}))
                .collect();
            let text: Vec<String> = entries
                .iter()
                .map(|(at, actor, action, detail)| {
                    let when = chrono::DateTime::from_timestamp(*at, 0)
                        .map(|t| t.to_rfc3339())
                        .unwrap_or_default();
                    format!("{when}  {actor}  {action}  {detail}")
                })
                .collect();
            print(as_json, json!({"entries": rows}), &text.join("\n"));
            Ok(())
        }
        AdminCommand::Forget { number } => {
            let region =
                parse_region(&config.default_region).unwrap_or(rlibphonenumber::enums::Region::US);
            let parsed = crate::domain::phone::PhoneNumber::parse(&number, region)
                .map_err(|_| anyhow::anyhow!("{number:?} is not a phone number"))?;
            let erased = store.forget(parsed.digits()).await?;
            crate::media::storage::remove_files(&config, &erased.media).await;
            // The audit proves the erasure without keeping the number itself.
            let digest = hex::encode(&sha2::Sha256::digest(parsed.digits().as_bytes())[..8]);
            store
                .audit("operator", "forget", &format!("number sha256:{digest}"))
                .await?;
            store.bump_generation().await?;
            print(
                as_json,
                json!({
                    "transactions": erased.transactions,
                    "inbound": erased.inbound,
                    "list_memberships": erased.list_memberships,
                    "media": erased.media.len(),
                    "handsets": erased.handsets,
                }),
                &format!(
                    "forgotten: {} messages, {} inbound texts, {} list memberships, {} media, {} handset records; opt-outs kept",
                    erased.transactions,
                    erased.inbound,
                    erased.list_memberships,
                    erased.media.len(),
                    erased.handsets
                ),
            );
            Ok(())
        }
        AdminCommand::Mo { from, to, text } => {
            let received =
                crate::inbound::receive_sandbox(&store, &config, &from, &to, &text).await?;
            print(as_json, received.to_json(), &received.to_string());
            Ok(())
        }
        AdminCommand::Promo {
            command: PromoCommand::Approve { campaign, code },
        } => {
            if !store.approve_promo(campaign, &code).await? {
                anyhow::bail!("campaign {campaign} has no promotion {code:?} (see promo.list)");
            }
            store
                .audit(
                    "operator",
                    "promo.approve",
                    &format!("{code} of campaign {campaign}"),
                )
                .await?;
            store.bump_generation().await?;
            print(
                as_json,
                json!({"campaign_id": campaign, "code": code, "status": "approved"}),
                &format!("promotion {code} approved"),
            );
            Ok(())
        }
    }
}

async fn client(
    store: &Store,
    config: &Config,
    command: ClientCommand,
    as_json: bool,
) -> anyhow::Result<()> {
    match command {
        ClientCommand::Create {
            name,
            senders,
            whitelist,
        } => {
            let name = name.trim();
            if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
                anyhow::bail!("--name must be 1–64 characters without control characters");
            }
            let senders = senders_list(&senders, config)?;
            let whitelist = parse_whitelist(&whitelist).map_err(anyhow::Error::msg)?;
            let created = store.create_client(name, &senders, &whitelist).await?;
            store
                .audit(
                    "operator",
                    "client.create",
                    &format!("client {} ({name})", created.client_id),
                )
                .await?;
            print(
                as_json,
                json!({"client_id": created.client_id, "token": created.token, "callback_secret": created.callback_secret}),
                &format!(
                    "client_id:       {}\ntoken:           {}\ncallback_secret: {}\n(the token is shown only now; store it safely)",
                    created.client_id, created.token, created.callback_secret
                ),
            );
        }
        ClientCommand::List => {
            let clients = store.clients().await?;
            let rows: Vec<_> = clients
                .iter()
                .map(|c| {
                    json!({
                        "client_id": c.id,
                        "name": c.name,
                        "senders": c.senders,
                        "whitelist": c.whitelist.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    })
                })
                .collect();
            let mut text = String::from("client_id  name  senders  whitelist");
            for c in &clients {
                let whitelist: Vec<String> = c.whitelist.iter().map(ToString::to_string).collect();
                text.push_str(&format!(
                    "\n{}  {}  {}  {}",
                    c.id,
                    c.name,
                    c.senders.join(","),
                    whitelist.join(",")
                ));
            }
            print(as_json, json!({"clients": rows}), &text);
        }
        ClientCommand::RotateToken { client_id } => {
            let created = store.rotate_token(client_id).await?.ok_or_else(|| {
                anyhow::anyhow!("no client {client_id} (see `moms admin client list`)")
            })?;
            store
                .audit(
                    "operator",
                    "client.rotate-token",
                    &format!("client {client_id}"),
                )
                .await?;
            print(
                as_json,
                json!({"client_id": client_id, "token": created.token, "callback_secret": created.callback_secret}),
                &format!(
                    "client_id: {client_id}\ntoken:     {}\n(the old token no longer works)",
                    created.token
                ),
            );
        }
        ClientCommand::Whitelist { client_id, cidrs } => {
            let whitelist = parse_whitelist(&cidrs).map_err(anyhow::Error::msg)?;
            if !store.set_whitelist(client_id, &whitelist).await? {
                anyhow::bail!("no client {client_id} (see `moms admin client list`)");
            }
            store
                .audit(
                    "operator",
                    "client.whitelist",
                    &format!("client {client_id}: {cidrs}"),
                )
                .await?;
            let shown: Vec<String> = whitelist.iter().map(ToString::to_string).collect();
            print(
                as_json,
                json!({"client_id": client_id, "whitelist": shown}),
                &format!(
                    "whitelist of client {client_id}: {}",
                    if shown.is_empty() {
                        "any address".to_string()
                    } else {
                        shown.join(",")
                    }
                ),
            );
        }
        ClientCommand::Senders { client_id, senders } => {
            let senders = senders_list(&senders, config)?;
            if !store.set_senders(client_id, &senders).await? {
                anyhow::bail!("no client {client_id} (see `moms admin client list`)");
            }
            store
                .audit(
                    "operator",
                    "client.senders",
                    &format!("client {client_id}: {}", senders.join(",")),
                )
                .await?;
            print(
                as_json,
                json!({"client_id": client_id, "senders": senders}),
                &format!("senders of client {client_id}: {}", senders.join(",")),
            );
        }
        ClientCommand::Limits {
            client_id,
            per_second,
            daily,
        } => {
            if !(per_second >= 0.0 && per_second.is_finite()) || daily < 0 {
                anyhow::bail!("--per-second and --daily take 0 (no limit) or a positive number");
            }
            if !store
                .set_client_limits(client_id, per_second, daily)
                .await?
            {
                anyhow::bail!("no client {client_id} (see `moms admin client list`)");
            }
            let detail = format!("client {client_id}: {per_second} a second, {daily} a day");
            store.audit("operator", "client.limits", &detail).await?;
            print(
                as_json,
                json!({"client_id": client_id, "per_second": per_second, "daily": daily}),
                &format!("limits of {detail} (0: none)"),
            );
        }
    }
    Ok(())
}

/// `moms serve`: open everything, seed the demo on first start, listen.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    // Before anything else: a bad certificate is a configuration error.
    let tls = crate::tls::server_config(&config.tls)?;
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on {}: {e} (choose another with --listen or MOMS_LISTEN)",
                config.listen
            )
        })?;
    let address = listener.local_addr()?;
    let app = App::open(config).await?;
    if app.config.demo {
        seed_demo(&app, address).await?;
    }
    let scheme = crate::tls::scheme(&app.config.tls);
    tracing::info!(%address, scheme, data_dir = %app.config.data_dir.display(), "moms is listening");
    crate::app::serve_tcp(app, listener, tls, shutdown_signal()).await
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
}

/// The demo client and campaign of an empty store, printed once.
async fn seed_demo(app: &Arc<App>, address: std::net::SocketAddr) -> anyhow::Result<()> {
    if !app.store.clients().await?.is_empty() {
        return Ok(());
    }
    let short_code = "21534".to_string();
    let created = app
        .store
        .create_client("Demo", std::slice::from_ref(&short_code), &[])
        .await?;
    let client = app
        .store
        .client(created.client_id)
        .await?
        .expect("just created");
    let mut params = Params::default();
    for (key, value) in [
        ("name", "Demo campaign"),
        ("type", "mms"),
        ("from", "21534"),
        ("keyword", "DEMO"),
        ("help_message", "Demo campaign: reply STOP to opt out."),
        (
            "stop_message",
            "You are unsubscribed from the demo campaign.",
        ),
    ] {
        params.set(key.into(), value.into());
    }
    let campaign_id = crate::api::campaign::create_from(&app.store, &client, app.region, &params)
        .await
        .map_err(|e| anyhow::anyhow!("creating the demo campaign: {}", e.message()))?;
    let host = if address.ip().is_unspecified() {
        format!("127.0.0.1:{}", address.port())
    } else {
        address.to_string()
    };
    println!(
        "\nFirst start: created a demo client and campaign (sandbox carrier, short code {short_code}).\n\n\
         client_id:   {}\ntoken:       {}\ncampaign_id: {campaign_id}\n\n\
         Send a message:\n\n  curl -s 'http://{host}/moms/transaction.send' -d client_id={} -d token={} -d campaign_id={campaign_id} -d to=3105550123 -d 'message=Hello from moms'\n\n\
         The token is shown only now. More clients: moms admin client create --name NAME --senders 21534\n",
        created.client_id, created.token, created.client_id, created.token
    );
    Ok(())
}
