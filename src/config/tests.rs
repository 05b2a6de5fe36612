//! Pure validation against hostile or careless configs: errors, never panics or overflows.

use proptest::prelude::*;

use super::*;

const BASE: &str = r#"
state_dir = "/tmp/ak-test-state"

[[tenants]]
name = "contoso"
tenant_id = "7b3f5c1e-9a2d-4e8f-b6c4-2d1e0f9a8b7c"
client_id = "5a1c7e3b-2f4d-4b6a-9c8e-1d0f2e3a4b5c"
client_secret_file = "/run/credentials/auditkeeper/contoso"

[[sinks]]
type = "file"
name = "archive"
path = "/tmp/ak-test-out"
"#;

/// Validates `text`; `Ok(warnings)` or `Err(every error as text)`.
fn check(text: &str) -> Result<Vec<String>, String> {
    let raw: RawConfig = from_toml_str(text).map_err(|e| e.to_string())?;
    validate(&raw).map(|(_, w)| w).map_err(|e| e.iter().map(|i| i.to_string()).collect::<Vec<_>>().join("\n"))
}

fn with_sink(sink: &str) -> String {
    format!("{BASE}\n[[sinks]]\n{sink}\n")
}

#[test]
fn a_credential_never_goes_over_plain_http_except_to_loopback() {
    let hec = |url: &str| {
        with_sink(&format!(
            "type = \"http\"\npreset = \"splunk_hec\"\nname = \"hec\"\nurl = \"{url}\"\ntoken_env = \"HEC\""
        ))
    };
    let e = check(&hec("http://splunk.example.com:8088")).unwrap_err();
    assert!(e.contains("sinks[1].url: plain http:// would send this sink's credential in clear text"), "{e}");
    assert!(check(&hec("http://127.0.0.1:8088")).is_ok());
    assert!(check(&hec("http://localhost:8088")).is_ok());
    assert!(check(&hec("https://splunk.example.com:8088")).is_ok());
    // No credential, no objection.
    let open =
        with_sink("type = \"http\"\npreset = \"generic\"\nname = \"g\"\nurl = \"http://collector.example.com/in\"");
    assert!(check(&open).is_ok());
    let basic = with_sink(
        "type = \"http\"\npreset = \"generic\"\nname = \"g\"\nurl = \"http://collector.example.com/in\"\nauth = \"basic\"\nusername = \"u\"\npassword_env = \"P\"",
    );
    assert!(check(&basic).unwrap_err().contains("plain http://"));
}

#[test]
fn skipping_tls_verification_draws_a_loud_warning() {
    let w = check(&with_sink("type = \"http\"\npreset = \"generic\"\nname = \"g\"\nurl = \"https://c.example.com/\"\ntls_insecure_skip_verify = true")).unwrap();
    assert!(
        w.iter().any(|w| w.starts_with("sinks[1].tls_insecure_skip_verify: TLS CERTIFICATE CHECKS ARE OFF")),
        "{w:?}"
    );
}

#[test]
fn absurd_durations_and_sizes_are_errors_not_overflows() {
    for (table, key, value, needle) in [
        ("tenants.graph", "lag", "\"10000years\"", "tenants[0].graph.lag: must be at most 7d"),
        ("tenants.graph", "poll_interval", "\"10000years\"", "tenants[0].graph.poll_interval"),
        ("tenants.management_activity", "poll_interval", "\"10000years\"", "management_activity.poll_interval"),
        ("spool", "max_age", "\"10000years\"", "spool.max_age"),
        ("spool", "seen_ttl", "\"10000years\"", "spool.seen_ttl"),
        ("http", "timeout", "\"10000years\"", "http.timeout"),
        ("http", "max_blob_bytes", "\"99999999TiB\"", "larger than 16 EiB"),
    ] {
        let text = BASE.replace("[[sinks]]", &format!("[{table}]\n{key} = {value}\n\n[[sinks]]"));
        let e = check(&text).unwrap_err();
        assert!(e.contains(needle), "{table}.{key}: {e}");
    }
    let e = check(&format!("shutdown_timeout = \"10000years\"\n{BASE}")).unwrap_err();
    assert!(e.contains("shutdown_timeout: must be at most 1h"), "{e}");
    let e = check(&with_sink("type = \"syslog\"\nname = \"s\"\naddress = \"h:514\"\ntimeout = \"10000years\""))
        .unwrap_err();
    assert!(e.contains("sinks[1].timeout: must be between 1s and 1h"), "{e}");
}

#[test]
fn names_that_could_climb_out_of_a_directory_are_refused() {
    for bad in ["..", ".", "a/b", "../etc"] {
        let e = check(&BASE.replace("name = \"contoso\"", &format!("name = {bad:?}"))).unwrap_err();
        assert!(e.contains("tenants[0].name"), "{bad}: {e}");
        let e = check(&BASE.replace("name = \"archive\"", &format!("name = {bad:?}"))).unwrap_err();
        assert!(e.contains("sinks[0].name"), "{bad}: {e}");
    }
}

/// Values a careless or hostile operator might put anywhere.
fn weird_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("\"10000years\"".to_string()),
        Just("\"0s\"".to_string()),
        Just("-1".to_string()),
        Just("18446744073709551615".to_string()),
        Just("\"99999999999TiB\"".to_string()),
        Just("\"é*\"".to_string()),
        Just("[\"\", \"*\", \"é*\"]".to_string()),
        Just("true".to_string()),
        Just("{}".to_string()),
        "\"[^\"\\\\]{0,20}\"".prop_map(|s| s),
        any::<i64>().prop_map(|n| n.to_string()),
    ]
}

const KEYS: &[(&str, &str)] = &[
    ("tenants.graph", "lag"),
    ("tenants.graph", "overlap"),
    ("tenants.graph", "backfill"),
    ("tenants.graph", "streams"),
    ("tenants.graph", "reports_requests_per_10s"),
    ("tenants.management_activity", "fetch_concurrency"),
    ("tenants.management_activity", "retention_margin"),
    ("tenants.management_activity", "content_types"),
    ("spool", "max_bytes"),
    ("spool", "prune_interval"),
    ("http", "max_gzip_ratio"),
    ("telemetry", "listen"),
    ("telemetry", "stale_after_polls"),
];

proptest! {
    /// Any value under any key gives settings or errors, never a panic.
    #[test]
    fn any_value_under_any_key_never_panics(picks in proptest::collection::vec((0..KEYS.len(), weird_value()), 1..5)) {
        let mut text = BASE.to_string();
        for (k, v) in picks {
            let (table, key) = KEYS[k];
            text = text.replace("[[sinks]]", &format!("[{table}]\n{key} = {v}\n\n[[sinks]]"));
        }
        let _ = check(&text);
    }

    /// Any text at all: an error or settings, never a panic.
    #[test]
    fn any_text_never_panics(text in "\\PC{0,400}") {
        let _ = check(&text);
        let _ = check(&format!("{BASE}\n{text}"));
    }

    /// Sink tables with stray keys, wrong types and every kind.
    #[test]
    fn any_sink_table_never_panics(kind in prop_oneof![Just("file"), Just("archive"), Just("http"), Just("syslog"), Just("eventhubs"), Just("pigeon")], key in "[a-z_]{1,20}", value in weird_value()) {
        let _ = check(&with_sink(&format!("type = \"{kind}\"\nname = \"x\"\n{key} = {value}")));
    }
}

/// BASE with lines added to its tenant (before the sink).
fn with_tenant(lines: &str) -> String {
    BASE.replace("\n[[sinks]]", &format!("{lines}\n\n[[sinks]]"))
}

#[test]
fn backfill_is_on_in_the_global_service_and_refused_where_the_api_does_not_exist() {
    let settings = |text: &str| {
        let raw: RawConfig = from_toml_str(text).unwrap();
        validate(&raw).map(|(s, _)| s).unwrap()
    };
    let s = settings(BASE);
    let a = s.tenants[0].audit_query.as_ref().expect("on by default in the commercial cloud");
    assert_eq!((a.api_version.path(), a.backfill_days, a.max_submissions_per_day), ("beta", 0, 150));
    assert!(
        settings(&with_tenant("cloud = \"gcc\"")).tenants[0].audit_query.is_some(),
        "GCC runs on the global service"
    );
    // In a sovereign cloud it is simply absent, unless asked for.
    assert!(settings(&with_tenant("cloud = \"gcc_high\"")).tenants[0].audit_query.is_none());
    let e = check(&with_tenant("cloud = \"china\"\n[tenants.audit_query]\nbackfill_days = 30")).unwrap_err();
    assert!(e.contains("tenants[0].audit_query.enabled") && e.contains("global service only, not in china"), "{e}");
    assert!(check(&with_tenant("cloud = \"dod\"\n[tenants.audit_query]\nenabled = false")).is_ok());
}

#[test]
fn backfill_settings_are_checked_key_by_key() {
    let e = check(&with_tenant(
        "[tenants.audit_query]\napi_version = \"v2\"\nbackfill_days = 400\nmax_active_queries = 51\nwindow = \"10s\"\nmin_window = \"2d\"\noperations = [\"\"]",
    ))
    .unwrap_err();
    for key in ["api_version", "backfill_days", "max_active_queries", "window", "min_window", "operations"] {
        assert!(e.contains(&format!("tenants[0].audit_query.{key}")), "{key} not named in:\n{e}");
    }
    let w =
        check(&with_tenant("[tenants.audit_query]\nmax_submissions_per_day = 500\napi_version = \"v1.0\"")).unwrap();
    assert!(w.iter().any(|w| w.contains("max_submissions_per_day")), "{w:?}");
}

#[test]
fn message_trace_is_left_out_of_sovereign_clouds_and_refused_when_listed_there() {
    let streams = |text: &str| {
        let raw: RawConfig = from_toml_str(text).unwrap();
        let s = validate(&raw).map(|(s, _)| s).unwrap();
        s.tenants[0].graph.as_ref().unwrap().streams.iter().map(|(sp, _, _)| sp.name).collect::<Vec<_>>()
    };
    assert!(streams(BASE).contains(&"message_trace"));
    assert!(streams(&with_tenant("cloud = \"gcc\"")).contains(&"message_trace"), "GCC runs on the global service");
    let gov = streams(&with_tenant("cloud = \"gcc_high\""));
    assert!(!gov.contains(&"message_trace") && gov.contains(&"directory_audits"), "{gov:?}");
    let e =
        check(&with_tenant("cloud = \"china\"\n[tenants.graph]\nstreams = [\"directory_audits\", \"message_trace\"]"))
            .unwrap_err();
    assert!(e.contains("tenants[0].graph.streams[1]: \"message_trace\" is not offered in this cloud"), "{e}");
}

#[test]
fn a_proxy_is_a_plain_url_and_its_password_lives_in_a_file() {
    let cfg = |lines: &str| format!("{BASE}\n[http]\n{lines}\n");
    assert!(check(&cfg("proxy = \"http://proxy.contoso.com:3128\"\nno_proxy = \".contoso.com\"")).is_ok());
    let e = check(&cfg("proxy = \"http://user:pass@proxy:3128\"")).unwrap_err();
    assert!(e.contains("http.proxy: must not carry credentials") && !e.contains("pass@"), "{e}");
    let e = check(&cfg("proxy = \"socks9://proxy:1080\"")).unwrap_err();
    assert!(e.contains("http.proxy: \"socks9://proxy:1080\" must be an http:// or https:// URL"), "{e}");
    let e = check(&cfg("proxy_credentials_file = \"/run/credentials/proxy\"")).unwrap_err();
    assert!(e.contains("http.proxy_credentials_file: only applies with http.proxy"), "{e}");
}
