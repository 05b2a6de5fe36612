//! Every way a tenant's sources sign in, end to end against the simulator: a managed identity
//! (the real `ManagedIdentityCredential` against the simulator's App Service identity
//! endpoint) and a workload identity (federated token file), each collecting the whole tenant
//! with one token request per audience, and each refusal shown in `status` for that tenant.
//! Secrets and certificates are covered by the other suites.

#![cfg(feature = "simulator")]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use auditkeeper::demo::ConfigExtras;
use auditkeeper::simulator::Scenario;
use common::{BinaryDaemon, Harness, assert_exactly_once};

const USER_ASSIGNED: &str = "3f0c2d9e-1b7a-4c55-9e2f-6a1d8b4c7e90";

fn scenario() -> Scenario {
    Scenario { history_records: 600, content_types: vec!["Audit.Exchange".into()], ..Scenario::default() }
}

async fn harness(credential: String) -> Harness {
    Harness::new(scenario(), ConfigExtras { credential, ..ConfigExtras::default() }).await
}

/// What an App Service or Arc host puts in the environment.
fn identity_env(h: &Harness, header: &str) -> Vec<(&'static str, std::ffi::OsString)> {
    let endpoint = format!("https://localhost:{}/msi/token", h.sim.addr.port());
    vec![("IDENTITY_ENDPOINT", endpoint.into()), ("IDENTITY_HEADER", header.into())]
}

fn spawn(h: &Harness, env: &[(&'static str, std::ffi::OsString)]) -> BinaryDaemon {
    let env: Vec<(&str, &std::ffi::OsStr)> = env.iter().map(|(k, v)| (*k, v.as_os_str())).collect();
    BinaryDaemon::spawn_logging(&h.config, &env, &h.dir.path().join("daemon.log"))
}

async fn wait_status(h: &Harness, needle: &str) {
    let start = std::time::Instant::now();
    while !h.status().contains(needle) {
        let log = std::fs::read_to_string(h.dir.path().join("daemon.log")).unwrap_or_default();
        assert!(start.elapsed() < Duration::from_secs(60), "status never showed {needle:?}:\n{}\n{log}", h.status());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_assigned_managed_identity_collects_the_whole_tenant() {
    let h = harness(format!("credential = \"managed_identity\"\nclient_id = \"{USER_ASSIGNED}\"")).await;
    let daemon = spawn(&h, &identity_env(&h, auditkeeper::simulator::routes::IDENTITY_HEADER_VALUE));
    let got = h.wait_complete(Duration::from_secs(90)).await;
    assert!(daemon.terminate().success());
    assert_exactly_once(&h.sim.tenant.truth().ids, &got);
    let asked = h.sim.tenant.stats().managed_identity_requests;
    assert!(!asked.is_empty());
    assert!(asked.iter().all(|a| a.ends_with(&format!(" as {USER_ASSIGNED}"))), "{asked:?}");
    // Held and reused: one request per audience for the whole run.
    let audiences: HashSet<&String> = asked.iter().collect();
    assert_eq!(audiences.len(), asked.len(), "one token per audience: {asked:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_managed_identity_the_host_refuses_fails_visibly_and_collects_nothing() {
    let h = harness("credential = \"managed_identity\"".into()).await;
    let daemon = spawn(&h, &identity_env(&h, "not-the-host-secret"));
    wait_status(&h, "system-assigned managed identity").await;
    assert!(daemon.terminate().success());
    assert!(h.delivered().is_empty());
    assert!(h.sim.tenant.stats().managed_identity_requests.is_empty(), "the endpoint refused before issuing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resource_id_the_identity_endpoint_cannot_take_is_named_in_status() {
    let rid = "/subscriptions/0000/resourceGroups/soc/providers/Microsoft.ManagedIdentity/userAssignedIdentities/c";
    let h = harness(format!("credential = \"managed_identity\"\nresource_id = \"{rid}\"")).await;
    let daemon = spawn(&h, &identity_env(&h, auditkeeper::simulator::routes::IDENTITY_HEADER_VALUE));
    // App Service takes client or object ids only; the daemon stays up and says why.
    wait_status(&h, "resource IDs aren't supported for App Service").await;
    assert!(daemon.terminate().success());
    assert!(h.delivered().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workload_identity_collects_with_its_federated_token_and_a_wrong_one_is_refused() {
    let token_file = tempfile::NamedTempFile::new().unwrap();
    let h = harness(format!(
        "credential = \"workload_identity\"\nclient_id = \"{}\"\ntoken_file = \"{}\"",
        Scenario::default().client_id,
        token_file.path().display()
    ))
    .await;
    // What the AKS webhook mounts: a service account token the app's federation trusts.
    std::fs::write(token_file.path(), "a-token-no-federation-trusts").unwrap();
    let daemon = spawn(&h, &[]);
    wait_status(&h, "AADSTS700213").await;
    assert!(h.delivered().is_empty());
    assert!(daemon.terminate().success());

    std::fs::write(token_file.path(), &h.sim.tenant.scenario.federated_token).unwrap();
    let daemon = spawn(&h, &[]);
    let got = h.wait_complete(Duration::from_secs(90)).await;
    assert!(daemon.terminate().success());
    assert_exactly_once(&h.sim.tenant.truth().ids, &got);
}
