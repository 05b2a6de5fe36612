//! One tenant's streams, started and stopped together under its own cancellation token, so a
//! reload adds, restarts or removes a tenant without touching the others. Every tenant has its
//! own credential, API clients, pacing and retry budget: what one tenant's failure (a wrong
//! secret, a throttled or hanging endpoint) holds up is its own streams only.

use std::sync::Arc;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::DaemonError;
use super::tasks::{TaskFailure, Tasks};
use crate::auth::TenantAuth;
use crate::config::TenantSettings;
use crate::health::Expected;
use crate::pipeline::{Pipeline, StreamKey};
use crate::sources::audit_query::{self, AuditQueryClient, AuditQueryStream};
use crate::sources::boundary::BodyLimits;
use crate::sources::driver::{self, Pacing};
use crate::sources::graph::config::RECHECK_UNAVAILABLE;
use crate::sources::graph::{GraphClient, GraphStream};
use crate::sources::management::{ManagementClient, ManagementStream};

/// Audit (Standard) keeps the unified audit log 180 days.
const AUDIT_LOG_RETENTION: std::time::Duration = std::time::Duration::from_secs(180 * 86_400);

/// What every tenant's sources share.
pub(super) struct Shared {
    pub pipeline: Arc<Pipeline>,
    pub clients: crate::http::Clients,
    pub limits: BodyLimits,
}

/// A tenant whose streams run (its settings are in the daemon's `Settings`, which a reload
/// compares with the new file).
pub(super) struct Running {
    pub stop: CancellationToken,
    /// Its streams, for readiness.
    pub expected: Vec<Expected>,
}

/// What a tenant's supervisor returns when its streams have ended: its name, and the failure
/// that ended them if they were not asked to end.
pub(super) type Ended = (String, Option<TaskFailure>);

/// Starts every stream of `t` under a child of `parent`, supervised in `supervisors`.
pub(super) async fn start(
    shared: &Shared,
    t: &TenantSettings,
    auth: Arc<TenantAuth>,
    parent: &CancellationToken,
    supervisors: &mut JoinSet<Ended>,
) -> Result<Running, DaemonError> {
    let stop = parent.child_token();
    let (pipeline, http) = (&shared.pipeline, &shared.clients.api);
    let mut tasks = Tasks::default();
    let mut expected = Vec::new();
    if let Some(m) = &t.management {
        let client = Arc::new(ManagementClient::new(
            http.clone(),
            auth.clone(),
            &t.endpoints.management,
            &t.endpoints.management_resource,
            &t.tenant_id,
            &t.publisher_identifier,
            m.requests_per_minute,
            m.fetch_concurrency,
            shared.limits,
        ));
        let pacing = Pacing::new(m.poll_interval, RECHECK_UNAVAILABLE);
        for ct in &m.content_types {
            let key = StreamKey::new(&t.name, "management", ct);
            let handle = pipeline.stream(key, crate::sources::management::protocol::RETENTION).await?;
            expected.push(Expected { stream: handle.key.id.clone(), poll_interval: m.poll_interval });
            let s = ManagementStream::new(client.clone(), handle.clone(), ct.clone(), m.clone());
            spawn(&mut tasks, s, handle, pacing, &stop);
        }
    }
    if let Some(g) = &t.graph {
        let client = Arc::new(GraphClient::new(
            http.clone(),
            auth.clone(),
            &t.endpoints.graph,
            &t.endpoints.arm,
            g.reports_requests_per_10s,
            shared.limits,
        ));
        for (spec, st, subscription) in &g.streams {
            let name = match subscription {
                Some(sub) => format!("{}-{sub}", spec.name),
                None => spec.name.to_string(),
            };
            let handle = pipeline.stream(StreamKey::new(&t.name, "graph", &name), spec.guaranteed_retention()).await?;
            expected.push(Expected { stream: handle.key.id.clone(), poll_interval: st.poll_interval });
            let s = GraphStream {
                client: client.clone(),
                handle: handle.clone(),
                spec,
                settings: st.clone(),
                subscription: subscription.clone(),
                rejected_cycles: 0,
            };
            spawn(&mut tasks, s, handle, Pacing::new(st.poll_interval, st.recheck_unavailable), &stop);
        }
    }
    if let Some(a) = &t.audit_query {
        let client = Arc::new(AuditQueryClient::new(
            http.clone(),
            auth.clone(),
            &t.endpoints.graph,
            a.api_version,
            a.requests_per_second,
            shared.limits,
        ));
        let key = StreamKey::new(&t.name, audit_query::SOURCE, audit_query::NAME);
        let handle = pipeline.stream(key, AUDIT_LOG_RETENTION).await?;
        // Not in `expected`: a backfill waiting hours on Microsoft is no reason to be unready.
        let pacing = Pacing::new(a.poll_interval, RECHECK_UNAVAILABLE);
        let s = AuditQueryStream::new(client, handle.clone(), a.clone());
        spawn(&mut tasks, s, handle, pacing, &stop);
    }
    tracing::info!(tenant = %t.name, streams = tasks.set.len(), credential = %t.sign_in.credential.describe(), "tenant started");
    supervisors.spawn(supervise(t.name.clone(), tasks, stop.clone()));
    Ok(Running { stop, expected })
}

/// Runs `source` under the one stream driver, named after its stream.
fn spawn<S: driver::Source + 'static>(
    tasks: &mut Tasks,
    source: S,
    handle: crate::pipeline::StreamHandle,
    pacing: Pacing,
    stop: &CancellationToken,
) {
    tasks.spawn(format!("stream {}", handle.key.id), driver::run(source, handle, pacing, stop.clone()));
}

/// Runs until the tenant is stopped, or one of its streams ends on its own (a panic), which
/// stops its other streams and is returned as the failure.
async fn supervise(name: String, mut tasks: Tasks, stop: CancellationToken) -> Ended {
    let mut failure = None;
    while !tasks.set.is_empty() {
        tokio::select! {
            _ = stop.cancelled() => break,
            Some(r) = tasks.set.join_next_with_id() => {
                failure = tasks.ended(r, stop.is_cancelled());
                if failure.is_some() {
                    break;
                }
            }
        }
    }
    // A tenant with no stream enabled waits here for its stop like the others.
    if tasks.set.is_empty() && failure.is_none() {
        stop.cancelled().await;
    }
    stop.cancel();
    let rest = tasks.join_all().await;
    tracing::info!(tenant = %name, "tenant stopped");
    (name, failure.or(rest))
}
