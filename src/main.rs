//! The `moms` binary: parse the command line, set up logging, dispatch.

use clap::Parser;

// Requests allocate many small, short-lived buffers; mimalloc serves them
// with less locking than glibc's allocator (measured in bench/run).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = moms::cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MOMS_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let json = cli.global.json;
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match runtime.block_on(moms::cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // Scripts asked for JSON get their error as JSON too.
            if json {
                println!("{}", serde_json::json!({"error": format!("{error:#}")}));
            }
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
