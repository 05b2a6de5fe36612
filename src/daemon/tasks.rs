//! Named tasks, and what their ending means: an end the daemon asked for is logged; one it did
//! not ask for (a panic, a loop that returned) is a failure that stops the daemon.

use std::collections::HashMap;

use tokio::task::{JoinError, JoinSet};

/// A task that ended before the daemon asked it to.
#[derive(Debug, thiserror::Error)]
#[error("{task} ended unexpectedly: {how}")]
pub struct TaskFailure {
    pub task: String,
    pub how: String,
}

/// Tasks of one kind, with the name each one is logged under.
#[derive(Default)]
pub(super) struct Tasks {
    pub set: JoinSet<()>,
    names: HashMap<tokio::task::Id, String>,
}

impl Tasks {
    pub fn spawn(&mut self, name: String, f: impl std::future::Future<Output = ()> + Send + 'static) {
        let id = self.set.spawn(f).id();
        self.names.insert(id, name);
    }

    /// Logs the end of a task; returns the failure if it panicked or was not expected to end.
    pub fn ended(&mut self, r: Result<(tokio::task::Id, ()), JoinError>, expected: bool) -> Option<TaskFailure> {
        let (id, how) = match r {
            Ok((id, ())) => (id, None),
            Err(e) => (e.id(), Some(describe(e))),
        };
        let task = self.names.remove(&id).unwrap_or_else(|| format!("task {id}"));
        ended(task, how, expected)
    }

    /// Waits for every task, logging each; returns the first failure.
    pub async fn join_all(&mut self) -> Option<TaskFailure> {
        let mut first = None;
        while let Some(r) = self.set.join_next_with_id().await {
            let f = self.ended(r, true);
            first = first.or(f);
        }
        first
    }
}

/// Logs how `task` ended (`how`: `None` when it returned); the failure, if it is one.
pub(super) fn ended(task: String, how: Option<String>, expected: bool) -> Option<TaskFailure> {
    match (how, expected) {
        (None, true) => {
            tracing::debug!(task = %task, "task ended");
            None
        }
        (None, false) => {
            tracing::error!(task = %task, "task ended on its own; shutting down so the service manager restarts the daemon");
            Some(TaskFailure { task, how: "returned".into() })
        }
        (Some(how), _) => {
            tracing::error!(task = %task, error = %how, "task failed; shutting down so the service manager restarts the daemon");
            Some(TaskFailure { task, how })
        }
    }
}

pub(super) fn describe(e: JoinError) -> String {
    if e.is_cancelled() {
        return "cancelled".into();
    }
    let p = e.into_panic();
    let msg = p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned());
    format!("panicked: {}", msg.unwrap_or_else(|| "(no message)".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_task_that_panics_or_returns_on_its_own_is_a_failure_named_after_it() {
        let mut t = Tasks::default();
        t.spawn("stream t/graph/x".into(), async { panic!("boom") });
        let r = t.set.join_next_with_id().await.unwrap();
        let f = t.ended(r, false).expect("a panic is a failure");
        assert_eq!((f.task.as_str(), f.how.as_str()), ("stream t/graph/x", "panicked: boom"));
        t.spawn("forwarder s".into(), async {});
        let r = t.set.join_next_with_id().await.unwrap();
        let f = t.ended(r, false).expect("an early return is a failure");
        assert_eq!(f.to_string(), "forwarder s ended unexpectedly: returned");
        t.spawn("forwarder s".into(), async {});
        let r = t.set.join_next_with_id().await.unwrap();
        assert!(t.ended(r, true).is_none(), "an asked-for end is not");
        t.spawn("maintenance".into(), async { panic!("{}", String::from("disk")) });
        assert_eq!(t.join_all().await.map(|f| f.how), Some("panicked: disk".into()));
    }
}
