//! `chorus`: the Chorus server. `chorus dev` runs one node with every role (the client
//! protocol, function execution, one range as a Raft group of one) over embedded storage.
//! See the command-line contract in `../shared/DESIGN.md`.

mod cluster;
mod deployment;
mod push;
mod server;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Parser, Subcommand};
use functions::FunctionRunner;
use js::{JsPool, JsPoolConfig};
use txn::{LocalRange, ReplicatorKind, SchemaCompiler};

#[derive(Parser)]
#[command(
    name = "chorus",
    version,
    about = "A Convex-compatible reactive database"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// One node with every role and embedded storage, for development.
    Dev {
        /// Port of the client protocol (HTTP, WebSocket, deploy).
        #[arg(long, default_value_t = 3210)]
        port: u16,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// Where the data lives; restarting on it recovers everything acknowledged.
        #[arg(long, default_value = "./chorus_data")]
        data_dir: PathBuf,
        /// The admin key (`npx convex deploy --admin-key`); generated and kept in
        /// DATA_DIR/admin_key when absent.
        #[arg(long, env = "CHORUS_ADMIN_KEY", hide_env_values = true)]
        admin_key: Option<String>,
    },
    /// One node of a cluster. The nodes named in --peers form the meta range and the first
    /// data range, each replicated on all of them; a node not named there joins empty and
    /// waits for `chorus admin add-learner`.
    Start {
        /// This node's id (a positive integer, unique in the cluster, never reused).
        #[arg(long)]
        node_id: u64,
        /// Client protocol address (HTTP, WebSocket, deploy, cluster status).
        #[arg(long)]
        listen: String,
        /// Node-to-node address (Raft, timestamps, forwarded requests).
        #[arg(long)]
        peer_listen: String,
        /// The initial members: `1=HOST:PORT,2=HOST:PORT,...` (their peer addresses).
        #[arg(long)]
        peers: String,
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long, env = "CHORUS_ADMIN_KEY", hide_env_values = true)]
        admin_key: String,
    },
    /// Cluster administration through any node's client address.
    Admin {
        /// A node's client address, http://HOST:PORT.
        #[arg(long)]
        url: String,
        #[arg(long, env = "CHORUS_ADMIN_KEY", hide_env_values = true)]
        admin_key: String,
        #[command(subcommand)]
        command: AdminCommand,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Prints the cluster status: nodes, ranges, leaders, replicas and their lag.
    Status,
    /// Adds a node as a learner of every range.
    AddLearner {
        #[arg(long)]
        node: u64,
        /// The new node's peer address (its --peer-listen).
        #[arg(long)]
        peer: String,
    },
    /// Promotes a caught-up learner to voter in every range.
    Promote {
        #[arg(long)]
        node: u64,
    },
    /// Removes a node from every range.
    Remove {
        #[arg(long)]
        node: u64,
    },
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Dev {
            port,
            host,
            data_dir,
            admin_key,
        } => runtime.block_on(dev(&host, port, &data_dir, admin_key)),
        Command::Start {
            node_id,
            listen,
            peer_listen,
            peers,
            data_dir,
            admin_key,
        } => runtime.block_on(start(
            node_id,
            listen,
            peer_listen,
            &peers,
            data_dir,
            admin_key,
        )),
        Command::Admin {
            url,
            admin_key,
            command,
        } => {
            use cluster::admin::{AdminRequest, MembershipChange};
            let request = match command {
                AdminCommand::Status => AdminRequest::Status,
                AdminCommand::AddLearner { node, peer } => {
                    AdminRequest::Change(MembershipChange::AddLearner { node, peer })
                }
                AdminCommand::Promote { node } => {
                    AdminRequest::Change(MembershipChange::Promote { node })
                }
                AdminCommand::Remove { node } => {
                    AdminRequest::Change(MembershipChange::Remove { node })
                }
            };
            runtime.block_on(cluster::admin::run_cli(&url, &admin_key, request))
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The admin key: given, or kept in `dir/admin_key`, or generated there.
fn admin_key(dir: &Path, given: Option<String>) -> Result<String, String> {
    let file = dir.join("admin_key");
    if let Some(key) = given {
        if key.trim().is_empty() {
            return Err("the admin key must not be empty".into());
        }
        std::fs::write(&file, &key).map_err(|e| format!("writing {}: {e}", file.display()))?;
        return Ok(key);
    }
    if let Ok(existing) = std::fs::read_to_string(&file) {
        let key = existing.trim().to_string();
        if !key.is_empty() {
            return Ok(key);
        }
    }
    let mut random = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut random))
        .map_err(|e| format!("reading /dev/urandom: {e}"))?;
    let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let key = format!("chorus-dev|{hex}");
    std::fs::write(&file, &key).map_err(|e| format!("writing {}: {e}", file.display()))?;
    Ok(key)
}

async fn dev(
    host: &str,
    port: u16,
    data_dir: &Path,
    admin_key_arg: Option<String>,
) -> Result<(), String> {
    std::fs::create_dir_all(data_dir)
        .map_err(|e| format!("creating {}: {e}", data_dir.display()))?;
    let key = admin_key(data_dir, admin_key_arg)?;
    let addr: SocketAddr = format!("{host}:{port}")
        .parse()
        .map_err(|e| format!("bad listen address {host}:{port}: {e}"))?;
    // Bind first: a port in use is reported before any recovery work.
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("listener address: {e}"))?;

    tracing::info!(dir = %data_dir.display(), "opening the range (a Raft group of one)");
    let compiler: Arc<dyn SchemaCompiler> = Arc::new(udf::DocumentTypeCompiler);
    let range = LocalRange::open_stored(
        &data_dir.join("range"),
        ReplicatorKind::Raft,
        Some(compiler),
    )
    .await
    .map_err(|e| e.to_string())?;
    let pool = JsPool::new(JsPoolConfig::default()).map_err(|e| e.to_string())?;
    let runner = FunctionRunner::new(pool, range.db.clone());
    let url = format!("http://{local}");
    let server = server::Server::start(runner, key.clone(), url.clone()).await?;
    let app = api::http::router(server.clone());

    println!("Chorus is serving at {url}");
    println!("Admin key: {key}");
    println!("  (also in {})", data_dir.join("admin_key").display());
    println!("Deploy with: npx convex deploy --url {url} --admin-key '{key}'");

    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| format!("serving: {e}"))?;
    tracing::info!("shutting down");
    drop(server);
    range.shutdown().await.map_err(|e| e.to_string())?;
    Ok(())
}

async fn start(
    node_id: u64,
    listen: String,
    peer_listen: String,
    peers: &str,
    data_dir: PathBuf,
    admin_key: String,
) -> Result<(), String> {
    if node_id == 0 {
        return Err("--node-id must be a positive integer".into());
    }
    if admin_key.trim().is_empty() {
        return Err("the admin key must not be empty".into());
    }
    let peers = cluster::parse_peers(peers)?;
    if let Some(addr) = peers.get(&node_id)
        && *addr != peer_listen
    {
        return Err(format!(
            "--peers gives node {node_id} the address {addr}, but --peer-listen is {peer_listen}"
        ));
    }
    cluster::start(cluster::NodeConfig {
        node_id,
        listen,
        peer_listen,
        peers,
        data_dir,
        admin_key: admin_key.trim().to_string(),
    })
    .await
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let terminate = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = terminate => {},
    }
}
