//! `auditkeeper validate`: every kind of mistake gets an error naming the key path, exit non-zero.
//! Also: a secret never shows up in any output.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::validate::{SECRET, base, expect_error, validate};

#[test]
fn a_good_config_validates_and_each_mistake_names_its_key() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let good = base(dir);
    let (ok, out) = validate(dir, &good);
    assert!(ok, "{out}");
    assert!(out.contains("OK (1 tenants, 14 streams, 1 sinks)"), "{out}");

    let missing = dir.join("nope.toml");
    let out =
        Command::new(env!("CARGO_BIN_EXE_auditkeeper")).args(["validate", "--config"]).arg(&missing).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("file not found"));

    let cases: Vec<(String, &str)> = vec![
        (
            good.replace("7b3f5c1e-9a2d-4e8f-b6c4-2d1e0f9a8b7c", "contoso.onmicrosoft"),
            "tenants[0].tenant_id: \"contoso.onmicrosoft\" is not a GUID",
        ),
        (good.replace("/secret\"", "/absent\""), "tenants[0].client_secret_file: file not found"),
        (
            good.replace("client_secret_file", "client_secret_env = \"SECRET_VAR\"\nclient_secret_file"),
            "tenants[0].client_secret_file: set either client_secret_file or client_secret_env, not both",
        ),
        (
            good.replace(
                &format!("client_secret_file = \"{}\"", dir.join("secret").display()),
                "client_secret_env = \"SECRET_VAR\"",
            ),
            "tenants[0].client_secret_env: environment variable SECRET_VAR is not set",
        ),
        (
            good.replace("client_id = \"5a1c7e3b-2f4d-4b6a-9c8e-1d0f2e3a4b5c\"\n", ""),
            "tenants[0].client_id: is required with credential = \"secret\"",
        ),
        (
            format!("{good}\n[tenants.management_activity]\ncontent_types = [\"Audit.Exchange\", \"Audit.Teams\"]\n")
                .replace("[[sinks]]", "[[sinks_unused]]")
                .replace("[[sinks_unused]]", "[[sinks]]"),
            "tenants[0].management_activity.content_types[1]: \"Audit.Teams\" is not one of",
        ),
        (format!("{good}\n[spool]\nseen_ttl = \"7d\"\n"), "spool.seen_ttl: must be longer than the API's 7-day window"),
        (format!("{good}\n[spool]\nmax_bytes = \"lots\"\n"), "not a size"),
        (good.split("[[sinks]]").next().unwrap().to_string(), "sinks: at least one [[sinks]] entry is required"),
        (
            good.replace("[[sinks]]", "[tenants.endpoints]\nauthority = \"http://login.example\"\n\n[[sinks]]"),
            "tenants[0].endpoints.authority: \"http://login.example\" must be an https:// URL",
        ),
        (
            good.replace("[[sinks]]", "[tenants.management_activity]\nbackfill = \"8d\"\n\n[[sinks]]"),
            "tenants[0].management_activity.backfill: must be at most 7d",
        ),
        (good.replace("name = \"archive\"", "name = \"archive\"\nrotate_byts = 5"), "unknown field `rotate_byts`"),
        (good.replace("type = \"file\"", "type = \"carrier-pigeon\""), "carrier-pigeon"),
        (format!("{good}\n[log]\nformat = \"xml\"\n"), "log.format: must be \"text\" or \"json\""),
        (good.replace("name = \"archive\"\n", ""), "sinks[0].name: is required"),
    ];
    for (text, needle) in cases {
        expect_error(dir, &text, needle);
    }
}

#[test]
fn sink_mistakes_name_their_key() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let good = base(dir);
    let http = |lines: &str| format!("{good}\n[[sinks]]\ntype = \"http\"\nname = \"h\"\n{lines}\n");
    let syslog = |lines: &str| format!("{good}\n[[sinks]]\ntype = \"syslog\"\nname = \"s\"\n{lines}\n");
    let hub = |lines: &str| format!("{good}\n[[sinks]]\ntype = \"eventhubs\"\nname = \"e\"\n{lines}\n");
    std::fs::write(
        dir.join("eh-no-entity"),
        "Endpoint=sb://x.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=c2VjcmV0a2V5",
    )
    .unwrap();
    let cases: Vec<(String, &str)> = vec![
        (http("preset = \"sumologic\""), "sinks[1].url: is required"),
        (http("preset = \"datadog\"\nurl = \"https://x\""), "sinks[1].preset: \"datadog\": use sumologic"),
        (http("preset = \"splunk_hec\"\nurl = \"https://x\""), "sinks[1].token_file: splunk_hec needs the HEC token"),
        (
            http("preset = \"splunk_hec\"\nurl = \"https://x\"\ntoken_file = \"/nonexistent/hec\""),
            "sinks[1].token_file: /nonexistent/hec: No such file",
        ),
        (
            http("preset = \"sumologic\"\nurl = \"https://x\"\ncategory = \"o365/{tenat}\""),
            "sinks[1].category: unknown placeholder {tenat}",
        ),
        (
            http("preset = \"sumologic\"\nurl = \"https://x\"\nmax_body_bytes = \"2MB\""),
            "sinks[1].max_body_bytes: must be between 1 and 1000000",
        ),
        (
            http(
                "preset = \"azure_monitor\"\nurl = \"https://x\"\ntenant = \"fabrikam\"\ndcr_immutable_id = \"dcr-1\"\ndcr_streams = { \"*\" = \"Custom-A_CL\" }",
            ),
            "sinks[1].tenant: unknown tenant \"fabrikam\"",
        ),
        (http("preset = \"generic\"\nurl = \"ftp://x\""), "sinks[1].url: must be an http:// or https:// URL"),
        (
            http("preset = \"generic\"\nurl = \"https://x\"\ntenants = [\"fabrikam\"]"),
            "sinks[1].tenants: unknown tenant \"fabrikam\"",
        ),
        (syslog("address = \"siem:6514\"\nframing = \"lf\""), "sinks[1].framing: lf framing is for plain TCP only"),
        (syslog("address = \"siem\""), "sinks[1].address: use host:port"),
        (
            syslog("address = \"siem:514\"\ntransport = \"udp\"\nmax_message_bytes = \"70000\""),
            "a UDP datagram carries at most 65507 bytes",
        ),
        (syslog("address = \"siem:514\"\nfacility = \"local9\""), "sinks[1].facility: \"local9\""),
        (
            syslog("address = \"siem:6514\"\nca_file = \"/nonexistent/ca.pem\""),
            "sinks[1].ca_file: ca_file /nonexistent/ca.pem",
        ),
        (good.replace("type = \"file\"", "type = \"file\"\nretention_days = 30"), "only an archive sink"),
        (hub(""), "sinks[1].auth: is required: connection_string"),
        (hub("auth = \"managed_identity\""), "sinks[1].namespace: is required"),
        (
            hub("auth = \"managed_identity\"\nnamespace = \"x.servicebus.windows.net\""),
            "sinks[1].event_hub: is required",
        ),
        (
            hub(
                "auth = \"tenant\"\ntenant = \"fabrikam\"\nnamespace = \"x.servicebus.windows.net\"\nevent_hub = \"h\"",
            ),
            "sinks[1].tenant: unknown tenant \"fabrikam\"",
        ),
        (hub("auth = \"sas\""), "sinks[1].auth: \"sas\": use connection_string"),
        (
            hub(
                "auth = \"tenant\"\ntenant = \"contoso\"\nclient_id = \"x\"\nnamespace = \"x.servicebus.windows.net\"\nevent_hub = \"h\"",
            ),
            "sinks[1].client_id: is only used with auth = managed_identity or workload_identity, not \"tenant\"",
        ),
        (
            hub("connection_string_file = \"/nonexistent/eh\""),
            "sinks[1].connection_string_file: connection string: /nonexistent/eh",
        ),
        (
            hub(&format!("connection_string_file = \"{}\"", dir.join("secret").display())),
            "connection string has no Endpoint",
        ),
        (
            hub(&format!("connection_string_file = \"{}\"", dir.join("eh-no-entity").display())),
            "sinks[1].event_hub: is required: the connection string has no EntityPath",
        ),
        (
            hub("connection_string_env = \"X\"\nnamespace = \"https://x.servicebus.windows.net\""),
            "sinks[1].namespace: \"https://x.servicebus.windows.net\": give the fully qualified host name",
        ),
        (
            hub(
                "auth = \"managed_identity\"\nnamespace = \"x.servicebus.windows.net\"\nevent_hub = \"h\"\npartitioning = \"user\"",
            ),
            "sinks[1].partitioning: \"user\": use none, tenant, stream or tenant_stream",
        ),
        (
            hub(
                "auth = \"managed_identity\"\nnamespace = \"x.servicebus.windows.net\"\nevent_hub = \"h\"\nmax_message_bytes = \"2MiB\"",
            ),
            "sinks[1].max_message_bytes: must be between 1KiB and 1MiB",
        ),
        (
            hub(
                "auth = \"managed_identity\"\nnamespace = \"x.servicebus.windows.net\"\nevent_hub = \"h\"\ncustom_endpoint = \"amqp://10.1.2.3:5672\"",
            ),
            "sinks[1].custom_endpoint: plain amqp:// is only allowed to a loopback address",
        ),
        (
            hub(
                "auth = \"managed_identity\"\nnamespace = \"x.servicebus.windows.net\"\nevent_hub = \"h\"\ntransport = \"http\"",
            ),
            "sinks[1].transport: \"http\": use amqp",
        ),
        (
            hub(
                "auth = \"workload_identity\"\nnamespace = \"x.servicebus.windows.net\"\nevent_hub = \"h\"\ntoken_file = \"/nonexistent/token\"",
            ),
            "sinks[1].token_file: cannot read /nonexistent/token",
        ),
        (
            hub(
                "auth = \"workload_identity\"\nnamespace = \"x.servicebus.windows.net\"\nevent_hub = \"h\"\ntoken_file = \"/nonexistent/token\"",
            ),
            "sinks[1].tenant_id: is required when AZURE_TENANT_ID is not set",
        ),
    ];
    for (text, needle) in cases {
        expect_error(dir, &text, needle);
    }
    // Certificates: one credential per tenant, an RSA key next to the certificate.
    let ec = rcgen::generate_simple_self_signed(vec!["app".to_string()]).unwrap();
    let ec_file = dir.join("ec.pem");
    std::fs::write(&ec_file, format!("{}{}", ec.cert.pem(), ec.signing_key.serialize_pem())).unwrap();
    let cert_only = dir.join("cert-only.pem");
    std::fs::write(&cert_only, ec.cert.pem()).unwrap();
    let with_cert =
        |f: &Path| good.replace("client_secret_file", &format!("client_certificate_file = \"{}\"\n#", f.display()));
    expect_error(dir, &with_cert(&ec_file), "tenants[0].client_certificate_file: ");
    expect_error(dir, &with_cert(&ec_file), "the private key is not RSA");
    expect_error(dir, &with_cert(&cert_only), "no PRIVATE KEY block");
    let both = good.replace(
        "client_secret_file",
        &format!("client_certificate_file = \"{}\"\nclient_secret_file", ec_file.display()),
    );
    expect_error(
        dir,
        &both,
        "tenants[0].client_secret_file: is only used with credential = \"secret\", not \"certificate\"",
    );
    let (_, out) = validate(dir, &with_cert(&ec_file));
    assert!(!out.contains("PRIVATE KEY-----"), "the key is never echoed: {out}");
    // A malformed connection string is described, never echoed.
    let (_, out) = validate(dir, &hub(&format!("connection_string_file = \"{}\"", dir.join("secret").display())));
    assert!(!out.contains(SECRET), "{out}");
}

#[test]
fn a_world_readable_secret_file_is_a_warning() {
    let d = tempfile::tempdir().unwrap();
    let good = base(d.path());
    std::fs::set_permissions(d.path().join("secret"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let (ok, out) = validate(d.path(), &good);
    assert!(ok, "{out}");
    assert!(out.contains("warning: tenants[0].client_secret_file:") && out.contains("world-readable"), "{out}");
}

#[test]
fn world_readable_sink_secrets_and_mtls_keys_are_warnings_too() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let good = base(dir);
    let token = dir.join("hec-token");
    std::fs::write(&token, "0f1e2d3c-aaaa-bbbb-cccc-123456789abc").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    // A self-signed client certificate and its key, the key readable by everyone.
    let cert = rcgen::generate_simple_self_signed(vec!["collector".to_string()]).unwrap();
    let (crt, key) = (dir.join("client.crt"), dir.join("client.key"));
    std::fs::write(&crt, cert.cert.pem()).unwrap();
    std::fs::write(&key, cert.signing_key.serialize_pem()).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let text = format!(
        "{good}\n[[sinks]]\ntype = \"http\"\npreset = \"splunk_hec\"\nname = \"hec\"\nurl = \"https://127.0.0.1:8088\"\ntoken_file = \"{}\"\nclient_cert_file = \"{}\"\nclient_key_file = \"{}\"\n",
        token.display(),
        crt.display(),
        key.display()
    );
    let (ok, out) = validate(dir, &text);
    assert!(ok, "{out}");
    assert!(out.contains("warning: sinks[1].token_file:") && out.contains("hec-token is world-readable"), "{out}");
    assert!(
        out.contains("warning: sinks[1].client_key_file:") && out.contains("client.key is world-readable"),
        "{out}"
    );
}

#[test]
fn a_database_from_a_newer_version_is_refused_untouched() {
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("state");
    drop(auditkeeper::store::Store::open(&state).unwrap());
    let db = state.join(auditkeeper::store::DB_FILE);
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let before = std::fs::read(&db).unwrap();
    let err = auditkeeper::store::Store::open(&state).err().expect("must refuse");
    let msg = err.to_string();
    assert!(msg.contains("newer auditkeeper") && msg.contains("schema version 99"), "{msg}");
    assert_eq!(std::fs::read(&db).unwrap(), before, "the database must not be altered");
    // `status` refuses too, with the same clear message.
    let cfg = d.path().join("c.toml");
    std::fs::write(&cfg, base(d.path())).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_auditkeeper")).args(["status", "--config"]).arg(&cfg).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("newer auditkeeper"));
}

#[test]
fn environment_variables_override_the_file() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("c.toml");
    std::fs::write(&cfg, base(d.path())).unwrap();
    let run = |k: &str, v: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_auditkeeper"))
            .args(["validate", "--config"])
            .arg(&cfg)
            .env(k, v)
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    let (ok, err) = run("AUDITKEEPER__LOG__FORMAT", "xml");
    assert!(!ok && err.contains("log.format"), "{err}");
    let (ok, err) = run("AUDITKEEPER__LOG__FORMAT", "json");
    assert!(ok, "{err}");
}

#[test]
fn the_example_config_is_valid_and_has_every_sink_kind() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/auditkeeper.example.toml")).unwrap();
    let raw: auditkeeper::config::RawConfig = auditkeeper::config::from_toml_str(&text).unwrap();
    let (s, _) = auditkeeper::config::validate(&raw).unwrap_or_else(|e| panic!("{e:?}"));
    let names: Vec<&str> = s.sinks.iter().map(|x| x.name()).collect();
    assert_eq!(names, ["archive", "evidence", "sumo", "splunk", "sentinel", "lake", "qradar", "hub"]);
}
