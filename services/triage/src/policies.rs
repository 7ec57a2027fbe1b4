//! The policies triage applies, as one set: the SLA policies (`sla`) and the triage rules
//! (`rules`). The set in force is swapped whole on SIGHUP or when a file changes, so every request
//! is assessed under one consistent set, and requests already assessed keep what they got.

use std::path::Path;
use std::sync::{Arc, LazyLock, RwLock};
use std::time::Duration;

use prometheus::{IntCounterVec, register_int_counter_vec};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::config::PolicyConfig;
use crate::rules::Rules;
use crate::sla::Policies;
use crate::source::Source;

static RELOADS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "crs_triage_policy_reloads_total",
        "Policy reloads by outcome: applied, refused (the files are invalid; the set in force stays) or unchanged.",
        &["outcome"]
    )
    .expect("metric registers")
});

/// One consistent set of policies.
#[derive(Debug)]
pub struct PolicySet {
    pub sla: Policies,
    pub rules: Rules,
    /// A digest of the files' text: a reload that reads the same text changes nothing.
    pub digest: String,
}

impl PolicySet {
    /// Reads and checks both files (or the built-in ones); a problem names the file and line.
    pub fn load(cfg: &PolicyConfig) -> anyhow::Result<PolicySet> {
        let (sla_name, sla_text) =
            read("policies.sla_file", &cfg.sla_file, "built-in sla-policies.toml", crate::sla::BUILT_IN)?;
        let (rules_name, rules_text) =
            read("policies.rules_file", &cfg.rules_file, "built-in triage-rules.toml", crate::rules::BUILT_IN)?;
        let sla = Policies::parse(Source::new(&sla_name, &sla_text))?;
        let rules = Rules::parse(Source::new(&rules_name, &rules_text))?;
        let mut hash = Sha256::new();
        hash.update(sla_text.as_bytes());
        hash.update([0]);
        hash.update(rules_text.as_bytes());
        Ok(PolicySet { sla, rules, digest: hex::encode(&hash.finalize()[..8]) })
    }
}

fn read(key: &str, path: &str, built_in_name: &str, built_in: &str) -> anyhow::Result<(String, String)> {
    if path.is_empty() {
        return Ok((built_in_name.to_owned(), built_in.to_owned()));
    }
    let text =
        std::fs::read_to_string(Path::new(path)).map_err(|e| anyhow::anyhow!("cannot read {key} {path}: {e}"))?;
    Ok((path.to_owned(), text))
}

/// The set in force, shared by every handler.
#[derive(Clone, Debug)]
pub struct LivePolicies {
    current: Arc<RwLock<Arc<PolicySet>>>,
    cfg: PolicyConfig,
}

impl LivePolicies {
    pub fn new(set: PolicySet, cfg: PolicyConfig) -> Self {
        Self { current: Arc::new(RwLock::new(Arc::new(set))), cfg }
    }

    /// The set to assess one request under.
    pub fn current(&self) -> Arc<PolicySet> {
        self.current.read().expect("policy lock").clone()
    }

    /// Reads the files again; a valid, changed set replaces the one in force, an invalid one is
    /// refused (logged and counted) and the set in force stays.
    pub fn reload(&self) -> Result<bool, anyhow::Error> {
        let loaded = match PolicySet::load(&self.cfg) {
            Ok(set) => set,
            Err(e) => {
                RELOADS.with_label_values(&["refused"]).inc();
                tracing::error!(error = %format!("{e:#}"), "policy files refused; the policies in force stay");
                return Err(e);
            }
        };
        let mut current = self.current.write().expect("policy lock");
        if current.digest == loaded.digest {
            RELOADS.with_label_values(&["unchanged"]).inc();
            return Ok(false);
        }
        tracing::info!(from = %current.digest, to = %loaded.digest, "policies reloaded; they apply to requests assessed from now on");
        *current = Arc::new(loaded);
        RELOADS.with_label_values(&["applied"]).inc();
        Ok(true)
    }

    /// Reloads on SIGHUP and, every `reload_interval_secs` (0: never), when a file changed.
    pub fn watch(&self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGHUP; policies reload on file changes only");
                    None
                }
            };
            let interval = this.cfg.reload_interval_secs;
            loop {
                let poll = async {
                    if interval == 0 {
                        std::future::pending::<()>().await
                    } else {
                        tokio::time::sleep(Duration::from_secs(interval)).await
                    }
                };
                let hup = async {
                    match hangup.as_mut() {
                        Some(s) => drop(s.recv().await),
                        None => std::future::pending::<()>().await,
                    }
                };
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = poll => {}
                    _ = hup => tracing::info!("SIGHUP: reading the policy files again"),
                }
                let _ = this.reload();
            }
        })
    }
}
