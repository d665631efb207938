//! The `mailroom` binary: parses arguments, sets up logging and the runtime,
//! and hands over to the library ([`mailroom::cli`]).

use clap::Parser;
use mailroom::cli::{Cli, ConfigInvalid};

fn main() {
    tune_malloc();
    mailroom::mail::tls::install_crypto_provider();
    let cli = Cli::parse();
    // The daemon logs its work; one-shot commands only say what went wrong.
    let default_filter = match cli.command {
        // matrix-sdk narrates every sync at info, warns about key backups
        // mailroom does not use, and logs expected 404s at error.
        mailroom::cli::Command::Run => {
            "info,sqlx=warn,matrix_sdk=warn,matrix_sdk_base=warn,matrix_sdk_crypto=error,matrix_sdk::http_client=off"
        }
        _ => "warn",
    };
    let filter = mailroom::cli::log_filter(
        std::env::var("MAILROOM_LOG").ok().as_deref(),
        default_filter,
    );
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        mailroom::cli::LogFormat::Text => logs.init(),
        // One JSON object per line, for journald/Loki/Elasticsearch.
        mailroom::cli::LogFormat::Json => logs.json().with_current_span(true).init(),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mailroom: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = match runtime.block_on(mailroom::cli::run(cli)) {
        Ok(code) => code,
        Err(e) if e.downcast_ref::<ConfigInvalid>().is_some() => {
            eprint!("{e}");
            2
        }
        Err(e) => {
            eprintln!("mailroom: {e:#}");
            1
        }
    };
    std::process::exit(code);
}

/// glibc malloc, tuned for a long-running daemon that sometimes holds a large
/// email: blocks of 1 MiB and more (a raw message, a decoded attachment) are
/// mapped on their own and go back to the system when freed, and growing
/// them is a remap, not a copy; and two arenas instead of one per thread
/// keep idle memory small. Without this, glibc raises its mapping threshold
/// after the first large free, and a 25 MB attachment's copies stayed
/// resident.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_malloc() {
    // SAFETY: mallopt only sets allocator parameters, and is called first
    // thing in main, before any other thread exists. A refused setting
    // (return value 0) leaves glibc's default, which is correct, only larger.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 4 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_malloc() {}
