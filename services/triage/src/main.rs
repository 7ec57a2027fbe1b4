use std::process::ExitCode;

fn main() -> ExitCode {
    crs_platform::app::run_service("triage", crs_triage::DEFAULTS, |cfg, shutdown| async move {
        crs_triage::Application::build(cfg).await?.run_until_stopped(shutdown).await
    })
}
