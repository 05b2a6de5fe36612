//! The deployment files hold up: the systemd unit's hardening score and syntax, dashboards and
//! alerts that name only metrics the collector exports, a Dockerfile built as documented, a
//! compose file and a Kubernetes manifest whose configs the collector accepts, and the binary
//! running as an unprivileged user with only its state directory writable.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A tool the test needs. Under `CI=true` or `AUDITKEEPER_REQUIRE_PEERS=1` (set by `.ci/run`)
/// its absence fails the test, promtool aside: no Debian package carries it. Elsewhere the skip
/// is written past libtest's capture, so that it is seen.
fn tool(name: &str) -> Option<PathBuf> {
    let found =
        std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|f| f.is_file()));
    if found.is_none() {
        let required = std::env::var("CI").as_deref() == Ok("true")
            || std::env::var("AUDITKEEPER_REQUIRE_PEERS").as_deref() == Ok("1");
        assert!(!required || name == "promtool", "{name} is required under CI=true");
        skipped(&format!("{name} is not installed"));
    }
    found
}

fn skipped(why: &str) {
    use std::io::Write;
    let _ = std::io::stderr().write_all(format!("\nSKIPPED: {why}\n").as_bytes());
}

/// Every `auditkeeper_*` name in `text`.
fn metric_names(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("auditkeeper_") {
        let tail = &rest[i..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        out.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

#[test]
fn dashboards_and_alerts_name_only_metrics_that_exist() {
    let known: Vec<&str> = auditkeeper::telemetry::metrics::ALL.iter().map(|(n, _, _)| *n).collect();
    let dash = std::fs::read_to_string(root().join("deploy/grafana/auditkeeper.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&dash).expect("the dashboard is JSON");
    let exprs: Vec<String> = v["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter().map(|t| t["expr"].as_str().unwrap().to_string()))
        .collect();
    assert!(exprs.len() >= 10, "{exprs:?}");
    let alerts = std::fs::read_to_string(root().join("deploy/prometheus/alerts.yml")).unwrap();
    let alert_exprs: Vec<&str> = alerts.lines().filter_map(|l| l.trim().strip_prefix("expr:")).collect();
    assert!(alert_exprs.len() >= 6);
    let mut used = Vec::new();
    for e in exprs.iter().map(String::as_str).chain(alert_exprs.iter().copied()) {
        let names = metric_names(e);
        assert!(!names.is_empty() || e.contains("up{"), "an expression names no metric: {e}");
        for n in names {
            assert!(known.contains(&n.as_str()), "{n} (in `{e}`) is not a metric the collector exports");
            used.push(n);
        }
    }
    // What the issue asks the dashboard and the alerts to show.
    for must in [
        "auditkeeper_stream_lag_seconds",
        "auditkeeper_stream_retention_headroom_seconds",
        "auditkeeper_sink_backlog_records",
        "auditkeeper_sink_dead_lettered_total",
        "auditkeeper_mail_items_accessed_throttled_total",
        "auditkeeper_polling_paused",
    ] {
        assert!(used.iter().any(|u| u == must), "nothing shows {must}");
    }
    if let Some(promtool) = tool("promtool") {
        let out = Command::new(promtool)
            .args(["check", "rules"])
            .arg(root().join("deploy/prometheus/alerts.yml"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    }
}

#[test]
fn the_systemd_unit_is_hardened_and_verifies() {
    let Some(sa) = tool("systemd-analyze") else { return };
    let unit = root().join("systemd/auditkeeper.service");
    let out = Command::new(&sa).args(["security", "--offline=yes"]).arg(&unit).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let score: f64 = text
        .lines()
        .find_map(|l| l.split("exposure level for auditkeeper.service: ").nth(1))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no score in:\n{text}"));
    assert!(score <= 1.5, "exposure {score} (at most 1.5):\n{text}");
    // verify resolves the binary: point the unit at the one cargo built.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("auditkeeper.service");
    let text =
        std::fs::read_to_string(&unit).unwrap().replace("/usr/bin/auditkeeper", env!("CARGO_BIN_EXE_auditkeeper"));
    for must in [
        "Type=notify",
        "WatchdogSec=",
        "StateDirectory=auditkeeper",
        "ConfigurationDirectory=auditkeeper",
        "LoadCredential=",
        "ExecStartPre=",
        "Restart=on-failure",
        "StartLimitBurst=",
    ] {
        assert!(text.contains(must), "the unit lacks {must}");
    }
    std::fs::write(&copy, text).unwrap();
    let out = Command::new(&sa).arg("verify").arg(&copy).output().unwrap();
    let msg = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && msg.trim().is_empty(), "systemd-analyze verify: {msg}");
}

/// The config is one the collector accepts, but for the secret, which exists only where the
/// container runs.
fn wants_only_its_secret(config: &Path, secret: &str) {
    match auditkeeper::config::load_settings(config) {
        Err(auditkeeper::config::ConfigError::Invalid(issues)) => {
            let found: Vec<String> = issues.iter().map(|i| format!("{}: {}", i.path, i.message)).collect();
            assert_eq!(
                found,
                [format!("tenants[0].client_secret_file: file not found: {secret}")],
                "{}",
                config.display()
            );
        }
        other => panic!("{} should want only its secret: {:?}", config.display(), other.map(|_| ())),
    }
}

#[test]
fn the_dockerfile_compose_file_and_kubernetes_manifest_run_non_root_with_valid_configs() {
    let d = std::fs::read_to_string(root().join("deploy/Dockerfile")).unwrap();
    for must in [
        "--locked",
        "--no-default-features",
        "CARGO_PROFILE_RELEASE_DEBUG=0",
        "STRIP=true",
        "USER 65532:65532",
        "VOLUME [\"/var/lib/auditkeeper\"]",
        "HEALTHCHECK",
        "healthcheck",
    ] {
        assert!(d.contains(must), "the Dockerfile lacks {must}");
    }
    let c = std::fs::read_to_string(root().join("deploy/docker-compose.yml")).unwrap();
    for must in [
        "dockerfile: deploy/Dockerfile",
        "read_only: true",
        "cap_drop: [ALL]",
        "/var/lib/auditkeeper",
        "rsyslog:",
        "secrets:",
        "./compose/auditkeeper.toml:/etc/auditkeeper/auditkeeper.toml:ro",
    ] {
        assert!(c.contains(must), "the compose file lacks {must}");
    }
    wants_only_its_secret(&root().join("deploy/compose/auditkeeper.toml"), "/run/secrets/contoso-secret");
    let k = std::fs::read_to_string(root().join("deploy/kubernetes/auditkeeper.yaml")).unwrap();
    // The ConfigMap's config, unindented.
    let embedded: String = k
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("auditkeeper.toml: |"))
        .skip(1)
        .take_while(|l| l.starts_with("    "))
        .map(|l| format!("{}\n", &l[4..]))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("k8s.toml"), embedded).unwrap();
    wants_only_its_secret(&dir.path().join("k8s.toml"), "/run/secrets/auditkeeper/contoso-secret");
    for must in [
        "kind: StatefulSet",
        "replicas: 1",
        "volumeClaimTemplates",
        "readOnlyRootFilesystem: true",
        "runAsNonRoot: true",
        "drop: [\"ALL\"]",
        "path: /healthz",
        "path: /readyz",
        "azure.workload.identity/use",
        "secretName:",
    ] {
        assert!(k.contains(must), "the Kubernetes manifest lacks {must}");
    }
}

/// `demo` as an unprivileged user (uid 65534), in a directory only it may write: the collector
/// needs no privilege and writes nowhere else. Needs root to drop to that user.
#[test]
fn the_binary_runs_unprivileged_writing_only_its_state_directory() {
    if unsafe { libc::geteuid() } != 0 {
        // Not a missing peer but a missing privilege: CI may run unprivileged.
        skipped("not root, cannot drop to an unprivileged user");
        return;
    }
    let Some(setpriv) = tool("setpriv") else { return };
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("run");
    std::fs::create_dir(&out_dir).unwrap();
    let chown = |p: &Path| unsafe {
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        libc::chown(c.as_ptr(), 65534, 65534)
    };
    assert_eq!(chown(&out_dir), 0);
    // The binary must be reachable by that user: copy it beside, world-readable.
    let bin = dir.path().join("auditkeeper");
    std::fs::copy(env!("CARGO_BIN_EXE_auditkeeper"), &bin).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new(setpriv)
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--no-new-privs"])
        .arg(&bin)
        .args(["demo", "--records", "2000", "--output"])
        .arg(&out_dir)
        .env("HOME", &out_dir)
        .current_dir(&out_dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("missing 0"), "{text}");
    // Everything it wrote is below its directory, and private.
    let db = out_dir.join("state").join(auditkeeper::store::DB_FILE);
    assert_eq!(std::fs::metadata(&db).unwrap().permissions().mode() & 0o777, 0o600);
}
