//! Applying a new configuration while running (`SIGHUP`, `systemctl reload`). It arrives
//! validated (an invalid one is refused before it gets here, and the running one stays).
//! Tenants added start; removed ones stop (their current step is abandoned, as at shutdown:
//! each durable step is its own transaction) and their state is kept as `removed`; changed
//! ones restart with their new settings. Sinks and untouched tenants keep running without a
//! pause. What only a restart can change (sinks, `state_dir`, `[http]`, `[spool]`,
//! `[telemetry]`, `[log]`) is named in the log and left as it runs.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::tasks::TaskFailure;
use super::{Daemon, mark_removed, tenant};
use crate::auth::TenantAuth;
use crate::config::{Settings, TenantSettings};

/// What a reload changes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    pub unchanged: usize,
    /// Sections whose change needs a restart.
    pub needs_restart: Vec<&'static str>,
}

/// Settings are compared by their `Debug` form: every field that shapes a tenant's streams is
/// in it (secrets are not: only where they are read from, and a rotated secret is re-read
/// anyway), and no component has to keep an equality in step with its fields.
fn same<T: std::fmt::Debug>(a: &T, b: &T) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

/// A tenant's settings apart from where in the file it was written.
fn placed_anywhere(t: &TenantSettings) -> TenantSettings {
    TenantSettings { origin: String::new(), ..t.clone() }
}

impl Plan {
    pub fn new(old: &Settings, new: &Settings) -> Plan {
        let mut p = Plan::default();
        for t in &new.tenants {
            match old.tenants.iter().find(|o| o.name == t.name) {
                None => p.added.push(t.name.clone()),
                Some(o) if same(&placed_anywhere(o), &placed_anywhere(t)) => p.unchanged += 1,
                Some(_) => p.changed.push(t.name.clone()),
            }
        }
        p.removed = old
            .tenants
            .iter()
            .filter(|o| !new.tenants.iter().any(|t| t.name == o.name))
            .map(|o| o.name.clone())
            .collect();
        let sections: [(&'static str, bool); 6] = [
            ("sinks", same(&old.sinks, &new.sinks)),
            ("state_dir", old.state_dir == new.state_dir),
            ("[http]", same(&old.http, &new.http)),
            ("[spool]", same(&old.spool, &new.spool)),
            ("[telemetry]", old.telemetry == new.telemetry),
            ("[log]", same(&old.log, &new.log)),
        ];
        p.needs_restart = sections.iter().filter(|(_, same)| !same).map(|(s, _)| *s).collect();
        p
    }
}

impl Daemon {
    /// Applies `new`; returns a failure only when a task failed meanwhile or the store cannot
    /// take the new tenants' streams (the daemon then stops and is restarted on the new file).
    pub(super) async fn reload(&mut self, new: Settings) -> Option<TaskFailure> {
        let plan = Plan::new(&self.settings, &new);
        if !plan.needs_restart.is_empty() {
            tracing::warn!(sections = %plan.needs_restart.join(", "),
                "configuration reloaded, but these sections changed and only a restart applies them; they run as before");
        }
        let stopping: BTreeSet<String> = plan.removed.iter().chain(&plan.changed).cloned().collect();
        for name in &stopping {
            if let Some(t) = self.tenants.get(name) {
                t.stop.cancel();
            }
        }
        // The old streams must be gone before the new ones start on the same cursors.
        let mut failure = None;
        let mut left = stopping.clone();
        while !left.is_empty() {
            let Some(r) = self.supervisors.join_next().await else { break };
            if let Ok((name, _)) = &r {
                left.remove(name);
            }
            failure = failure.or(self.tenant_ended(r));
        }
        for name in &stopping {
            self.tenants.remove(name);
        }
        for t in new.tenants.iter().filter(|t| plan.added.contains(&t.name) || plan.changed.contains(&t.name)) {
            let auth = Arc::new(TenantAuth::new(&t.sign_in, self.shared.clients.clone()));
            match tenant::start(&self.shared, t, auth, self.shutdown.stop_token(), &mut self.supervisors).await {
                Ok(r) => {
                    self.tenants.insert(t.name.clone(), r);
                }
                Err(e) => {
                    tracing::error!(tenant = %t.name, error = %e, "cannot start the tenant's streams");
                    let f = TaskFailure { task: format!("tenant {}", t.name), how: e.to_string() };
                    failure = failure.or(Some(f));
                }
            }
        }
        self.settings.tenants = new.tenants.clone();
        self.settings.shutdown_timeout = new.shutdown_timeout;
        if let Err(e) = mark_removed(&self.pipeline, &self.settings).await {
            tracing::error!(error = %e, "cannot mark removed tenants in the store");
        }
        *self.health.streams.write().unwrap_or_else(|p| p.into_inner()) =
            self.tenants.values().flat_map(|r| r.expected.clone()).collect();
        crate::telemetry::events::Reloaded {
            added: &plan.added,
            removed: &plan.removed,
            restarted: &plan.changed,
            unchanged: plan.unchanged,
        }
        .emit();
        failure
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(tenants: &str) -> Settings {
        let text = format!(
            "state_dir = \"/tmp/ak-reload\"\n{tenants}\n[[sinks]]\ntype = \"file\"\nname = \"a\"\npath = \"/tmp/ak-reload-out\"\n"
        );
        let raw: crate::config::RawConfig = crate::config::from_toml_str(&text).unwrap();
        crate::config::validate(&raw).unwrap().0
    }

    fn tenant(name: &str, extra: &str) -> String {
        format!(
            "[[tenants]]\nname = \"{name}\"\ntenant_id = \"7b3f5c1e-9a2d-4e8f-b6c4-2d1e0f9a8b7c\"\nclient_id = \"c\"\nclient_secret_file = \"/s\"\n{extra}\n"
        )
    }

    #[test]
    fn a_plan_names_added_removed_and_changed_tenants_and_sections_needing_a_restart() {
        let old = settings(&(tenant("a", "") + &tenant("b", "") + &tenant("c", "")));
        // b moves in the file (not a change), c gets another pace, d is new, a is gone.
        let new = settings(
            &(tenant("b", "")
                + &tenant("c", "[tenants.management_activity]\nrequests_per_minute = 100")
                + &tenant("d", "")),
        );
        let p = Plan::new(&old, &new);
        assert_eq!(
            p,
            Plan {
                added: vec!["d".into()],
                removed: vec!["a".into()],
                changed: vec!["c".into()],
                unchanged: 1,
                needs_restart: vec![]
            }
        );
        let mut other_sink = new.clone();
        other_sink.sinks[0].common.name = "z".into();
        assert_eq!(Plan::new(&new, &other_sink).needs_restart, vec!["sinks"]);
    }
}
