//! `crsctl`: the CRS command-line client.

use std::process::ExitCode;

use clap::Parser as _;
use crsctl::cli::{App, Cli, Run as _};
use crsctl::errors::{Exit, describe, exit_code};

fn main() -> ExitCode {
    // clap exits 2 on a usage error and 0 for --help, as documented.
    let cli = Cli::parse();
    let app = App::new(cli.global);
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("crsctl: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli.command.run(&app)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if e.downcast_ref::<Exit>().is_none() {
                eprintln!("crsctl: {}", describe(&e));
            }
            ExitCode::from(exit_code(&e))
        }
    }
}
