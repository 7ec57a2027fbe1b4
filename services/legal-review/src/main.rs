use std::process::ExitCode;

fn main() -> ExitCode {
    crs_platform::app::run_service("legal-review", crs_legal_review::DEFAULTS, |cfg, shutdown| async move {
        crs_legal_review::Application::build(cfg).await?.run_until_stopped(shutdown).await
    })
}
