//! `crs-bench report`: bench/RESULTS.md from one `make bench` run. Every figure is read from the
//! run's directory (written by scripts/bench.sh); each CRS figure stands beside the ceilings
//! measured in the same run, alternating with it, and the ratios are taken round by round.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use serde_json::Value;

fn read_json(dir: &Path, name: &str) -> Option<Value> {
    serde_json::from_slice(&std::fs::read(dir.join(name)).ok()?).ok()
}

fn read_text(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_else(|_| format!("({name} was not written)\n"))
}

fn num(v: &Value, path: &[&str]) -> f64 {
    path.iter().fold(v, |v, k| &v[*k]).as_f64().unwrap_or(f64::NAN)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.retain(|x| x.is_finite());
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "**not met**" }
}

pub fn write(dir: &Path, out: &Path) -> anyhow::Result<()> {
    let mut md = String::new();
    writeln!(md, "# Benchmark results\n")?;
    writeln!(
        md,
        "Written by `make bench` (scripts/bench.sh, then `crs-bench report`); every figure below comes from one run \
         on the machine described, the ceilings measured alternately with CRS in each round, so the ratios compare \
         figures taken minutes apart on the same shared machine. Release build; PostgreSQL with synchronous commit.\n"
    )?;
    writeln!(md, "## Machine\n\n```\n{}```\n", read_text(dir, "machine.txt"))?;
    writeln!(md, "## Commands\n\n```sh\n{}```\n", read_text(dir, "commands.txt"))?;

    writeln!(md, "## Submissions against the ceilings (closed loop)\n")?;
    writeln!(
        md,
        "| round | echo calls/s (gRPC ceiling) | pgbench 1-row insert TPS (durable-write ceiling) | CRS SubmitRequest/s | CRS p50 / p99 ms | commits per request | CRS / pgbench | CRS / echo |"
    )?;
    writeln!(md, "|---|---|---|---|---|---|---|---|")?;
    let (mut ratios, mut p99s, mut crs_rates, mut pg_rates, mut echo_rates) = (vec![], vec![], vec![], vec![], vec![]);
    let mut clients = String::new();
    for round in 1.. {
        let (Some(echo), Some(pg), Some(crs)) = (
            read_json(dir, &format!("round-{round}-echo.json")),
            read_json(dir, &format!("round-{round}-pgbench.json")),
            read_json(dir, &format!("round-{round}-crs.json")),
        ) else {
            break;
        };
        clients = crs["clients"].to_string();
        let (e, p, c) = (num(&echo, &["per_sec"]), num(&pg, &["per_sec"]), num(&crs, &["per_sec"]));
        let p99 = num(&crs, &["latency", "p99_ms"]);
        writeln!(
            md,
            "| {round} | {e:.0} | {p:.0} | {c:.0} | {:.1} / {p99:.1} | {} | {:.3} | {:.3} |",
            num(&crs, &["latency", "p50_ms"]),
            crs["commits_per_request"],
            c / p,
            c / e
        )?;
        ratios.push(c / p);
        p99s.push(p99);
        crs_rates.push(c);
        pg_rates.push(p);
        echo_rates.push(e);
    }
    let (ratio, p99) = (median(ratios), median(p99s));
    writeln!(
        md,
        "| median | {:.0} | {:.0} | {:.0} | p99 {p99:.1} | | **{ratio:.3}** | |\n",
        median(echo_rates),
        median(pg_rates),
        median(crs_rates)
    )?;
    writeln!(
        md,
        "Target at {clients} concurrent clients: CRS at or above pgbench's single-row TPS ({}: {ratio:.3}x), p99 under 25 ms ({}: {p99:.1} ms).\n",
        verdict(ratio >= 1.0),
        verdict(p99 < 25.0)
    )?;

    intake_alone(&mut md, dir)?;

    writeln!(md, "## Open loop: hops at a fixed offered rate\n")?;
    // The first row is a rate this machine keeps up with (the hops themselves); the second, the
    // target rate (what queues when it cannot). Each starts from an idle system; the first warms
    // it up before its requests are followed (the warm-up column).
    let light = read_json(dir, "open-light.json");
    let open = read_json(dir, "open.json");
    if light.is_none() && open.is_none() {
        writeln!(md, "(no open-loop run)\n")?;
    } else {
        writeln!(
            md,
            "| offered/s | warm-up s | answered/s | p50 / p99 ms | errors | reply → claimable case p50 / p99 ms | decision → agency webhook p50 / p99 ms | followed to their case | given up on |"
        )?;
        writeln!(md, "|---|---|---|---|---|---|---|---|---|")?;
        for run in [&light, &open].into_iter().flatten() {
            writeln!(md, "{}", open_loop_row(run))?;
        }
        writeln!(md)?;
        writeln!(
            md,
            "A followed request is given up on when its case has not come 120 s after its reply, when the \
             benchmark's claim or decision on it failed, or when its webhook has not come 120 s after the decision.\n"
        )?;
    }
    let stages: Vec<(&Value, String)> = [(&light, "open-light-intake-metrics.txt"), (&open, "open-intake-metrics.txt")]
        .into_iter()
        .filter_map(|(run, file)| Some((run.as_ref()?, std::fs::read_to_string(dir.join(file)).ok()?)))
        .collect();
    if !stages.is_empty() {
        writeln!(
            md,
            "Where intake's submissions spent their time, from its `crs_intake_submission_stage_seconds` at the end of each run (means per submission that reached the stage; `checks` is the agency and key lookup, validation and the rate limit):
"
        )?;
        writeln!(
            md,
            "| offered/s | checks ms | queue for a writer ms | batch's write ms | batches (mean size) | given up in the queue |"
        )?;
        writeln!(md, "|---|---|---|---|---|---|")?;
        for (run, metrics) in stages {
            writeln!(md, "| {} | {} |", run["offered_per_sec"], stage_row(&metrics))?;
        }
        writeln!(md)?;
    }
    if let Some(open) = &open {
        let to_case = num(open, &["hops", "reply_to_case", "p99_ms"]);
        let to_hook = num(open, &["hops", "decision_to_webhook", "p99_ms"]);
        writeln!(
            md,
            "Target at {} requests/s: both hops under 100 ms at p99 ({}), and every offered request answered ({}).\n",
            open["offered_per_sec"],
            verdict(to_case < 100.0 && to_hook < 100.0),
            verdict(num(open, &["per_sec"]) >= 0.98 * num(open, &["offered_per_sec"]))
        )?;
        if let Some(backlog) = read_json(dir, "backlog.json") {
            writeln!(
                md,
                "Outbox rows waiting, sampled every 5 s during the open loop at {} requests/s (intake, triage, legal review, notification): `{backlog}`\n",
                open["offered_per_sec"]
            )?;
        }
    }

    writeln!(md, "## On SQLite\n")?;
    match read_json(dir, "sqlite.json") {
        Some(s) => writeln!(
            md,
            "Closed loop, {} clients: {:.0} SubmitRequest/s, p50 {:.1} ms, p99 {:.1} ms, errors {}.\n",
            s["clients"],
            num(&s, &["per_sec"]),
            num(&s, &["latency", "p50_ms"]),
            num(&s, &["latency", "p99_ms"]),
            s["errors"]
        )?,
        None => writeln!(md, "(no SQLite run)\n")?,
    }

    writeln!(md, "## Where the time goes (a separate profiled run)\n")?;
    if let Some(p) = read_json(dir, "profile-load.json") {
        writeln!(
            md,
            "{:.0} SubmitRequest/s while profiled; {} database commits per accepted request across the four services.\n",
            num(&p, &["per_sec"]),
            p["commits_per_request"]
        )?;
    }
    writeln!(
        md,
        "CPU samples by process (`perf record -a`, `perf report --sort comm`):\n\n```\n{}```\n",
        read_text(dir, "cpu.txt")
    )?;
    writeln!(
        md,
        "PostgreSQL backends of the four services, sampled every 100 ms (`pg_stat_activity`, active ones: wait event type and event, or CPU):\n\n```\n{}```\n",
        read_text(dir, "waits.txt")
    )?;

    writeln!(md, "## Rate limiter and SLA timers\n")?;
    writeln!(md, "```\n{}```\n", read_text(dir, "limiter.txt"))?;
    writeln!(md, "```\n{}```\n", read_text(dir, "timers.txt"))?;

    if let Ok(profile) = std::fs::read_to_string("bench/PROFILE.md") {
        writeln!(md, "{}", profile.trim_end())?;
    }
    std::fs::write(out, md).with_context(|| format!("cannot write {}", out.display()))?;
    println!("wrote {}", out.display());
    Ok(())
}

/// Intake measured alone in each round, beside the same round's pgbench: how far intake's own path
/// is from the durable-write ceiling when it has the machine to itself, and where its time went.
/// One open loop's row: what was offered, how long the system warmed up before it was measured
/// (0 where the run does not say), and what came of it.
fn open_loop_row(run: &Value) -> String {
    format!(
        "| {} | {:.0} | {:.0} | {:.1} / {:.1} | {} | {:.1} / {:.1} | {:.1} / {:.1} | {} | {} |",
        run["offered_per_sec"],
        run["warmup_secs"].as_f64().unwrap_or(0.0),
        num(run, &["per_sec"]),
        num(run, &["latency", "p50_ms"]),
        num(run, &["latency", "p99_ms"]),
        run["errors"],
        num(run, &["hops", "reply_to_case", "p50_ms"]),
        num(run, &["hops", "reply_to_case", "p99_ms"]),
        num(run, &["hops", "decision_to_webhook", "p50_ms"]),
        num(run, &["hops", "decision_to_webhook", "p99_ms"]),
        run["hops"]["reply_to_case"]["n"],
        run["followed_lost"],
    )
}

fn intake_alone(md: &mut String, dir: &Path) -> anyhow::Result<()> {
    let rounds: Vec<(Value, Value, String)> = (1..)
        .map_while(|round| {
            Some((
                read_json(dir, &format!("round-{round}-pgbench.json"))?,
                read_json(dir, &format!("round-{round}-intake.json"))?,
                std::fs::read_to_string(dir.join(format!("round-{round}-intake-metrics.txt"))).unwrap_or_default(),
            ))
        })
        .collect();
    if rounds.is_empty() {
        return Ok(());
    }
    writeln!(md, "### Intake alone\n")?;
    writeln!(
        md,
        "The same closed loop against intake with the other three services stopped, in each round between pgbench \
         and the four services: intake's own path (the agency and key lookup, validation, four rate limits in \
         Redis, group commit, the reply after the commit) with the two cores shared only with PostgreSQL, Redis and \
         the load generator. With no peer to hand off to, its relay tries each hand-off once (a claim and a \
         call, as a delivery would) and holds it past the run. Stages are means per submission, from its \
         `crs_intake_submission_stage_seconds`.\n"
    )?;
    writeln!(
        md,
        "| round | pgbench TPS | intake SubmitRequest/s | p50 / p99 ms | commits per request | intake / pgbench | checks ms | queue for a writer ms | batch's write ms | batches (mean size) | given up in the queue |"
    )?;
    writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|")?;
    let (mut ratios, mut p99s, mut rates) = (vec![], vec![], vec![]);
    for (round, (pg, intake, metrics)) in rounds.iter().enumerate() {
        let (p, i) = (num(pg, &["per_sec"]), num(intake, &["per_sec"]));
        let p99 = num(intake, &["latency", "p99_ms"]);
        writeln!(
            md,
            "| {} | {p:.0} | {i:.0} | {:.1} / {p99:.1} | {} | {:.3} | {} |",
            round + 1,
            num(intake, &["latency", "p50_ms"]),
            intake["commits_per_request"],
            i / p,
            stage_row(metrics)
        )?;
        ratios.push(i / p);
        p99s.push(p99);
        rates.push(i);
    }
    writeln!(
        md,
        "| median | | {:.0} | p99 {:.1} | | **{:.3}** | | | | | |\n",
        median(rates),
        median(p99s),
        median(ratios)
    )?;
    Ok(())
}

/// The value of `series` (its name and labels, as exposed) in a Prometheus text exposition.
fn series(metrics: &str, series: &str) -> f64 {
    let value = metrics.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' '));
    value.and_then(|v| v.trim().parse().ok()).unwrap_or(f64::NAN)
}

/// Intake's stages as table cells: the mean of each stage in milliseconds, the group-commit
/// batches and their mean size, and the submissions abandoned in the queue.
fn stage_row(metrics: &str) -> String {
    let stage = |name: &str| {
        let at =
            |part: &str| series(metrics, &format!("crs_intake_submission_stage_seconds_{part}{{stage=\"{name}\"}}"));
        format!("{:.1}", 1000.0 * at("sum") / at("count"))
    };
    let batches = series(metrics, "crs_intake_group_commit_size_count");
    let size = series(metrics, "crs_intake_group_commit_size_sum") / batches;
    // A counter appears once it is first counted: absent, nothing was given up.
    let abandoned = series(metrics, "crs_intake_submissions_abandoned_total");
    format!(
        "{} | {} | {} | {batches:.0} ({size:.1}) | {:.0}",
        stage("checks"),
        stage("queue"),
        stage("write"),
        if abandoned.is_nan() { 0.0 } else { abandoned }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intake_stages_are_read_from_its_metrics() {
        let metrics = "\
# TYPE crs_intake_submission_stage_seconds histogram
crs_intake_submission_stage_seconds_bucket{stage=\"checks\",le=\"1\"} 4
crs_intake_submission_stage_seconds_sum{stage=\"checks\"} 0.01
crs_intake_submission_stage_seconds_count{stage=\"checks\"} 4
crs_intake_submission_stage_seconds_sum{stage=\"queue\"} 0.002
crs_intake_submission_stage_seconds_count{stage=\"queue\"} 4
crs_intake_submission_stage_seconds_sum{stage=\"write\"} 0.03
crs_intake_submission_stage_seconds_count{stage=\"write\"} 4
crs_intake_group_commit_size_sum 4
crs_intake_group_commit_size_count 3
crs_intake_submissions_abandoned_total 1
";
        assert_eq!(stage_row(metrics), "2.5 | 0.5 | 7.5 | 3 (1.3) | 1");
        assert!(series(metrics, "crs_intake_group_commit_size").is_nan(), "a series is named whole");
        let none_given_up = metrics.replace("crs_intake_submissions_abandoned_total 1\n", "");
        assert_eq!(stage_row(&none_given_up), "2.5 | 0.5 | 7.5 | 3 (1.3) | 0");
    }

    #[test]
    fn an_open_loop_says_how_long_it_warmed_up() {
        let run = |json: &str| open_loop_row(&serde_json::from_str(json).unwrap());
        let hops = r#""hops": {"reply_to_case": {"n": 75, "p50_ms": 12.0, "p99_ms": 48.25},
                    "decision_to_webhook": {"n": 75, "p50_ms": 9.0, "p99_ms": 30.0}}, "followed_lost": 0"#;
        let warmed = format!(
            r#"{{"offered_per_sec": 100.0, "warmup_secs": 5.0, "per_sec": 99.9, "errors": {{}},
                "latency": {{"p50_ms": 8.0, "p99_ms": 20.0}}, {hops}}}"#
        );
        assert_eq!(run(&warmed), "| 100.0 | 5 | 100 | 8.0 / 20.0 | {} | 12.0 / 48.2 | 9.0 / 30.0 | 75 | 0 |");
        // Runs written before the warm-up was recorded had none.
        let cold = warmed.replace(r#""warmup_secs": 5.0, "#, "");
        assert!(run(&cold).starts_with("| 100.0 | 0 | 100 |"), "{}", run(&cold));
    }

    #[test]
    fn intake_alone_stands_beside_its_rounds_pgbench() {
        let dir = std::env::temp_dir().join(format!("crs-bench-report-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: &str, body: &str| std::fs::write(dir.join(name), body).unwrap();
        let mut md = String::new();
        intake_alone(&mut md, &dir).unwrap();
        assert_eq!(md, "", "a run without intake alone reports nothing of it");

        write("round-1-pgbench.json", r#"{"per_sec": 8000.0}"#);
        write(
            "round-1-intake.json",
            r#"{"per_sec": 2000.0, "latency": {"p50_ms": 30.0, "p99_ms": 61.5}, "commits_per_request": 0.02}"#,
        );
        write("round-2-pgbench.json", r#"{"per_sec": 5000.0}"#);
        write(
            "round-2-intake.json",
            r#"{"per_sec": 2500.0, "latency": {"p50_ms": 25.0, "p99_ms": 40.0}, "commits_per_request": 0.03}"#,
        );
        // A third round's pgbench alone: the round was cut short and is left out.
        write("round-3-pgbench.json", r#"{"per_sec": 9000.0}"#);
        intake_alone(&mut md, &dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();

        assert!(md.contains("| 1 | 8000 | 2000 | 30.0 / 61.5 | 0.02 | 0.250 |"), "{md}");
        assert!(md.contains("| 2 | 5000 | 2500 | 25.0 / 40.0 | 0.03 | 0.500 |"), "{md}");
        assert!(!md.contains("| 3 |"), "{md}");
        // The median of two is the larger, as for the four services' rounds.
        assert!(md.contains("| median | | 2500 | p99 61.5 | | **0.500** |"), "{md}");
    }
}
