use std::process::ExitCode;

fn main() -> ExitCode {
    crs_platform::app::run_service("intake", crs_intake::DEFAULTS, |cfg, shutdown| async move {
        crs_intake::Application::build(cfg).await?.run_until_stopped(shutdown).await
    })
}
