//! Tenants are added, changed and removed by a reload while the others keep running; an
//! invalid file is refused; a removed tenant's state is kept until `forget-tenant`.

#![cfg(feature = "simulator")]

mod common;

use std::time::Duration;

use common::assert_exactly_once;
use common::fleet::{Fleet, complete, spawn, status_lines, tenant, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_adds_changes_and_removes_tenants_and_a_removed_tenant_is_kept_until_forgotten() {
    let f = Fleet::start(vec![("alpha".into(), tenant(11)), ("beta".into(), tenant(12))]).await;
    let started = |t: &str| {
        f.log().lines().filter(|l| l.contains("tenant started") && l.contains(&format!("tenant={t}"))).count()
    };
    let reloads = || f.log().matches("configuration reloaded").count();
    f.write_config(&["alpha"], "", |_| String::new());
    let mut d = spawn(&f);
    complete(&f, &["alpha".into()], Duration::from_secs(120)).await;

    // Added: beta starts; alpha is untouched.
    f.write_config(&["alpha", "beta"], "", |_| String::new());
    d.hup();
    complete(&f, &["beta".into()], Duration::from_secs(120)).await;
    wait_for("the reload", Duration::from_secs(30), &f, || reloads() == 1).await;
    assert_eq!((started("alpha"), started("beta")), (1, 1), "alpha was not restarted");

    // An invalid file is refused, and both keep running.
    let good_text = std::fs::read_to_string(&f.config).unwrap();
    std::fs::write(&f.config, good_text.replacen("tenant_id = \"", "tenant_id = \"not-a-guid-", 1)).unwrap();
    d.hup();
    wait_for("the refusal", Duration::from_secs(30), &f, || f.log().contains("configuration NOT reloaded")).await;
    assert!(f.log().contains("tenants[0].tenant_id"), "the refusal names the problem");
    assert!(d.alive());
    assert_eq!(reloads(), 1);

    // alpha removed, beta changed: beta restarts, alpha stops and is kept as removed.
    f.write_config(&["beta"], "", |t| {
        if t == "beta" {
            "publisher_identifier = \"0c9f6a2e-3b1d-4e7a-8f5c-2d4b6e8a0c1f\"".into()
        } else {
            String::new()
        }
    });
    d.hup();
    wait_for("the second reload", Duration::from_secs(30), &f, || reloads() == 2).await;
    wait_for("alpha shown as removed", Duration::from_secs(30), &f, || {
        let s = f.status();
        let a = status_lines(&s, "alpha");
        !a.is_empty() && a.iter().all(|l| l.contains("removed"))
    })
    .await;
    assert_eq!((started("alpha"), started("beta")), (1, 2), "beta restarted with its new settings");
    wait_for("beta running again", Duration::from_secs(60), &f, || {
        status_lines(&f.status(), "beta").iter().all(|l| l.contains("running"))
    })
    .await;

    // forget-tenant: refused for a configured tenant, done for the removed one while the
    // daemon runs (everything of it was delivered).
    let forget = |name: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_auditkeeper"))
            .args(["forget-tenant", "--config"])
            .arg(&f.config)
            .arg(name)
            .output()
            .unwrap()
    };
    let out = forget("beta");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("tenant beta is still in the config"));
    let out = forget("alpha");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("forgot tenant alpha: 2 stream(s)"));
    assert!(status_lines(&f.status(), "alpha").is_empty(), "alpha's state is gone");
    let again = forget("alpha");
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("no state is kept for tenant alpha"),
        "nothing left to forget: {}",
        String::from_utf8_lossy(&again.stderr)
    );

    assert!(d.terminate().success());
    let got = f.delivered();
    for t in ["alpha", "beta"] {
        assert_exactly_once(&f.member(t).sim.tenant.truth().ids, &f.delivered_of(t, &got));
    }
}
