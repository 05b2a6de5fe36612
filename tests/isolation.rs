//! Tenant isolation, the promise to a provider: of 20 tenants in one daemon, three are broken
//! (a wrong secret, throttled on every call, an endpoint that never answers); the other 17 are
//! complete, once each, within the time one tenant needs alone plus 20%, and each broken one
//! shows its state and reason in `status` and `/metrics`. Its own test binary, so nothing else
//! runs beside the timing.

#![cfg(feature = "simulator")]

mod common;

use std::time::Duration;

use auditkeeper::simulator::Scenario;
use auditkeeper::simulator::hostile::Attacks;
use common::assert_exactly_once;
use common::fleet::{Fleet, complete, spawn, status_detail, status_lines, tenant, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_broken_tenants_of_twenty_leave_the_other_seventeen_complete_in_a_single_tenants_time() {
    // What one tenant needs on its own.
    let solo = Fleet::start(vec![("solo".into(), tenant(1))]).await;
    solo.write_config(&["solo"], "", |_| String::new());
    let d = spawn(&solo);
    let alone = complete(&solo, &["solo".into()], Duration::from_secs(120)).await;
    assert!(d.terminate().success());

    let good: Vec<String> = (0..17).map(|i| format!("t{i:02}")).collect();
    let mut specs: Vec<(String, Scenario)> =
        good.iter().zip(100..).map(|(n, seed)| (n.clone(), tenant(seed))).collect();
    specs.push(("wrongsecret".into(), tenant(200)));
    specs.push(("throttled".into(), Scenario { throttle_every: 1, throttle_burst: 1, ..tenant(201) }));
    specs.push(("hanging".into(), Scenario { attacks: Attacks { hang: true, ..Attacks::default() }, ..tenant(202) }));
    let f = Fleet::start(specs).await;
    std::fs::write(&f.member("wrongsecret").secret, "not-the-secret").unwrap();
    let names: Vec<&str> = f.members.iter().map(|m| m.name.as_str()).collect();
    f.write_config(&names, "", |_| String::new());
    let d = spawn(&f);
    let together = complete(&f, &good, Duration::from_secs(180)).await;
    eprintln!("one tenant alone: {alone:?}; 17 good of 20 together: {together:?}");
    assert!(
        together.as_secs_f64() <= alone.as_secs_f64() * 1.2,
        "17 tenants beside 3 broken ones took {together:?}, one alone {alone:?}"
    );
    let got = f.delivered();
    for n in &good {
        assert_exactly_once(&f.member(n).sim.tenant.truth().ids, &f.delivered_of(n, &got));
    }
    for broken in ["wrongsecret", "throttled", "hanging"] {
        assert_eq!(f.delivered_of(broken, &got).len(), 0, "{broken} delivered nothing");
    }

    // Each broken tenant shows its state and reason. The hanging one, once a call has waited
    // past 30 s.
    wait_for("every broken tenant's reason in status", Duration::from_secs(90), &f, || {
        let s = f.status();
        let shows = |t: &str, what: &str| {
            status_lines(&s, t).iter().all(|l| l.contains("retrying")) && status_detail(&s, t).contains(what)
        };
        shows("wrongsecret", "AADSTS7000215")
            && shows("throttled", "AF429")
            && shows("hanging", "no answer from the management API")
    })
    .await;
    let s = f.status();
    for n in &good {
        assert!(status_lines(&s, n).iter().all(|l| l.contains("running")), "{n} runs:\n{s}");
    }
    let m = f.scrape().await;
    let problem = |t: &str, kind: &str| {
        m.lines().any(|l| {
            l.starts_with("auditkeeper_stream_problem{")
                && l.contains(&format!("tenant=\"{t}\""))
                && l.contains(&format!("problem=\"{kind}\""))
                && l.ends_with(" 1")
        })
    };
    assert!(problem("wrongsecret", "credential"), "{m}");
    assert!(problem("throttled", "throttled"), "{m}");
    assert!(problem("hanging", "no_answer"), "{m}");
    for n in &good {
        assert!(!m.lines().any(|l| l.starts_with("auditkeeper_stream_problem{")
            && l.contains(&format!("tenant=\"{n}\""))
            && l.ends_with(" 1")));
    }
    assert!(f.member("hanging").sim.tenant.stats().hung > 0, "the hanging tenant was asked and never answered");
    assert!(d.terminate().success());
}
