//! `wxgate` command line: run, check, dev, mock-wechat.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use wxgate::config::Config;

/// mimalloc: faster small allocations on the request path, and a million sessions fit in
/// less memory than with glibc's malloc (measured: bench/README.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "wxgate",
    version,
    about = "WeChat-login gateway: TLS reverse proxy, forward-auth backend and sidecar"
)]
struct Cli {
    /// Config file (default: $WXGATE_CONFIG, then ./wxgate.toml)
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve (the default).
    Run,
    /// Load and validate the config; print it with secrets redacted.
    Check,
    /// One-command local demo: mock WeChat + whoami upstream + the gateway on https://localhost:8443.
    Dev(wxgate::tools::dev::DevArgs),
    /// The mock WeChat platform alone (tests, staging).
    MockWechat {
        #[arg(long, default_value = "127.0.0.1:9100")]
        listen: SocketAddr,
        /// Hosts accepted in redirect_uri (WeChat's registered callback domain); repeatable.
        #[arg(long = "redirect-domain")]
        redirect_domains: Vec<String>,
    },
}

/// Transparent huge pages for the heap, unless `MIMALLOC_ALLOW_LARGE_OS_PAGES` says otherwise.
/// A million sessions are ~450 MiB of small records read in random order; with 4 KiB pages
/// nearly every lookup also walks the page tables. Measured (bench/README.md): throughput with
/// 1 000 000 sessions and rotating cookies 0.82x -> 1.05x that with 1 000, RSS unchanged.
fn allocator_options() {
    if std::env::var_os("MIMALLOC_ALLOW_LARGE_OS_PAGES").is_none() {
        // SAFETY: sets one process-wide allocator option (an integer); no memory is touched.
        unsafe {
            libmimalloc_sys::mi_option_set_enabled(libmimalloc_sys::mi_option_large_os_pages, true)
        }
    }
}

fn main() -> ExitCode {
    allocator_options();
    let cli = Cli::parse();
    if let (Some(_), Some(Cmd::Dev(_) | Cmd::MockWechat { .. })) = (&cli.config, &cli.cmd) {
        // Rather than quietly ignore it: these make their own configuration.
        eprintln!(
            "wxgate: --config is for `run` and `check`; `dev` and `mock-wechat` read no config \
             file (see `wxgate dev --help` / `wxgate mock-wechat --help` for their options)"
        );
        return ExitCode::from(2);
    }
    let result = match cli.cmd.unwrap_or(Cmd::Run) {
        Cmd::Check => return check(cli.config),
        Cmd::Run => run(cli.config),
        Cmd::Dev(args) => runtime().and_then(|rt| rt.block_on(wxgate::tools::dev::run(args))),
        Cmd::MockWechat {
            listen,
            redirect_domains,
        } => runtime().and_then(|rt| {
            wxgate::common::logging::init("text");
            let mut opts = wxgate::tools::mock::MockOptions::default();
            if !redirect_domains.is_empty() {
                opts.redirect_domains = redirect_domains;
            }
            println!(
                "{}",
                wxgate::tools::mock::banner::banner(&format!("http://{listen}"))
            );
            rt.block_on(wxgate::tools::mock::run(listen, opts))
                .context("mock WeChat")
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wxgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn config_path(flag: Option<PathBuf>) -> Option<PathBuf> {
    flag.or_else(wxgate::config::default_path)
}

fn check(flag: Option<PathBuf>) -> ExitCode {
    let path = config_path(flag);
    match Config::load(path.as_deref()) {
        Ok(s) => {
            print!("{}", s.redacted_toml());
            eprintln!("wxgate: configuration OK");
            ExitCode::SUCCESS
        }
        Err(e) if path.is_none() => {
            eprintln!(
                "wxgate: {}\n(with the environment alone: {e})",
                wxgate::config::not_found_hint()
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("wxgate: configuration error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(flag: Option<PathBuf>) -> anyhow::Result<()> {
    let path = config_path(flag);
    let settings = Config::load(path.as_deref()).with_context(|| match &path {
        Some(_) => "configuration error".to_string(),
        None => format!(
            "configuration error: {} (`wxgate dev` runs a demo without one)",
            wxgate::config::not_found_hint()
        ),
    })?;
    wxgate::common::logging::init(settings.log.format.as_str());
    let rt = runtime()?;
    rt.block_on(async move {
        // Before the listener: a signal right after "listening" gets its graceful handling.
        let mut stop = wxgate::server::ShutdownSignal::install();
        let hup = wxgate::server::ReloadSignal::install();
        let running = wxgate::server::serve(settings).await?;
        tokio::select! {
            _ = stop.recv() => {}
            _ = reload_on_sighup(hup, &running, path.as_deref()) => {}
        }
        running.shutdown().await;
        Ok(())
    })
}

/// SIGHUP: re-read the config file (the same loading and validation as at start) and the TLS
/// files. A valid config applies to new requests; an invalid one is one ERROR line and the
/// running one stays. The TLS files are re-read either way (a certificate renewal does not
/// wait for a config fix). Never returns.
async fn reload_on_sighup(
    mut hup: wxgate::server::ReloadSignal,
    running: &wxgate::server::Running,
    path: Option<&std::path::Path>,
) {
    loop {
        hup.recv().await;
        tracing::info!("SIGHUP: reloading the configuration");
        // Reading files blocks: off the runtime's threads.
        let owned = path.map(|p| p.to_path_buf());
        let loaded = tokio::task::spawn_blocking(move || Config::load(owned.as_deref())).await;
        match loaded {
            Ok(Ok(settings)) => {
                // A failure has logged its ERROR; the running configuration stays.
                let _ = running.reload(settings).await;
            }
            Ok(Err(e)) => tracing::error!(
                error = %e,
                "config reload failed; keeping the running configuration"
            ),
            Err(e) => tracing::error!(error = %e, "config reload failed"),
        }
        // A failed TLS reload has logged its ERROR (file and reason); the old certificate
        // stays.
        if running.has_tls() && running.reload_tls().is_ok() {
            tracing::info!("SIGHUP: TLS files reloaded");
        }
    }
}
