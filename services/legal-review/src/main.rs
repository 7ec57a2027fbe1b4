use std::process::ExitCode;

fn main() -> ExitCode {
    crs_platform::app::main::<crs_legal_review::Application>()
}
