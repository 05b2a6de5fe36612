//! `auditkeeper validate` run on a config written for the test: a good base config with a
//! secret file, and helpers that expect success or an error naming a key. No secret may show
//! in any output.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

pub const SECRET: &str = "s3cr3t-Value-That-Must-Never-Leak";

pub fn base(dir: &Path) -> String {
    let secret = dir.join("secret");
    std::fs::write(&secret, SECRET).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    format!(
        r#"state_dir = "{state}"

[[tenants]]
name = "contoso"
tenant_id = "7b3f5c1e-9a2d-4e8f-b6c4-2d1e0f9a8b7c"
client_id = "5a1c7e3b-2f4d-4b6a-9c8e-1d0f2e3a4b5c"
client_secret_file = "{secret}"

[[sinks]]
type = "file"
name = "archive"
path = "{out}"
"#,
        state = dir.join("state").display(),
        secret = secret.display(),
        out = dir.join("out").display()
    )
}

pub fn validate(dir: &Path, text: &str) -> (bool, String) {
    let cfg = dir.join("c.toml");
    std::fs::write(&cfg, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_auditkeeper"))
        .args(["validate", "--config"])
        .arg(&cfg)
        .env_remove("SECRET_VAR")
        .env_remove("AZURE_TENANT_ID")
        .env_remove("AZURE_CLIENT_ID")
        .env_remove("AZURE_FEDERATED_TOKEN_FILE")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!text.contains(SECRET), "secret leaked: {text}");
    (out.status.success(), text)
}

pub fn expect_error(dir: &Path, text: &str, needle: &str) {
    let (ok, out) = validate(dir, text);
    assert!(!ok, "expected failure containing {needle:?}, got success: {out}");
    assert!(out.contains(needle), "expected {needle:?} in:\n{out}");
}
