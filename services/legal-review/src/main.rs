use std::process::ExitCode;

#[global_allocator]
static ALLOCATOR: crs_platform::app::Allocator = crs_platform::app::Allocator;

fn main() -> ExitCode {
    crs_platform::app::main::<crs_legal_review::Application>()
}
