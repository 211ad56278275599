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
    let cli = Cli::parse();
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
        Command::Top(a) => cmd::top::run(&Context::new(&cli.global).await, a).await,
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
