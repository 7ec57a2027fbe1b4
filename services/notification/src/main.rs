use std::process::ExitCode;

fn main() -> ExitCode {
    crs_platform::app::run_service("notification", crs_notification::DEFAULTS, |cfg, shutdown| async move {
        crs_notification::Application::build(cfg).await?.run_until_stopped(shutdown).await
    })
}
