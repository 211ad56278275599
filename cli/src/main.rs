//! `riffle`: the command-line tool for Kinesis streams.
//!
//! Layout: [`args`] declares the command line (clap derive); [`context`] resolves the
//! endpoint, region and credentials once; [`cmd`] has one module per subcommand; every
//! result goes through the one printer in [`output`]; every failure becomes one line and
//! an exit code in [`error`]. The logic lives in the libraries (aws-sdk-kinesis, kpl, kcl);
//! this binary only wires it to the terminal.

mod args;
mod cmd;
mod context;
mod error;
mod output;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use args::{Cli, Command};
use context::Context;
use error::CliError;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    // The libraries log through `tracing`: riffle-kpl's and riffle-kcl's warnings and
    // everyone's errors on standard error, more with RUST_LOG (e.g. RUST_LOG=riffle_kcl=info).
    // (The AWS SDK warns about things the CLI handles itself, such as a missing config file.)
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("error,riffle_kpl=warn,riffle_kcl=warn")
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("riffle: cannot start: {e}");
            return ExitCode::from(error::FAILED);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("riffle: {e}");
            ExitCode::from(e.code)
        }
    }
}

async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "riffle", &mut std::io::stdout());
            Ok(())
        }
        Command::Man { dir } => write_man_pages(&dir),
        Command::Stream(c) => cmd::stream::run(&Context::new(&cli.global).await, c).await,
        Command::Produce(a) => cmd::produce::run(&Context::new(&cli.global).await, a).await,
        Command::Consume(a) => cmd::consume::run(&Context::new(&cli.global).await, a).await,
        Command::Top(a) => cmd::top::run(&Context::new(&cli.global).await, a).await,
    }
}

/// Help and version go to stdout as clap prints them; a usage error becomes one line
/// (clap's first, which names the argument and the problem) and exit code 2.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                ExitCode::from(error::USAGE)
            } else {
                ExitCode::SUCCESS
            }
        }
        _ => {
            let text = e.render().to_string();
            let first = text
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("bad usage");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("riffle: {first} (see riffle --help)");
            ExitCode::from(error::USAGE)
        }
    }
}

/// `riffle man`: a page for the tool and one for every subcommand.
fn write_man_pages(dir: &std::path::Path) -> Result<(), CliError> {
    let fail = |e: std::io::Error| {
        CliError::failed(format!("writing man pages to {}: {e}", dir.display()))
    };
    std::fs::create_dir_all(dir).map_err(fail)?;
    clap_mangen::generate_to(Cli::command(), dir).map_err(fail)?;
    println!("man pages written to {}", dir.display());
    Ok(())
}
