//! `validate` on tenant tables: each credential kind's keys and strays, `[tenant_defaults]` and
//! `tenants_dir`.

mod common;

use common::validate::{base, expect_error, validate};

#[test]
fn each_credential_kind_takes_its_own_keys_and_names_a_stray_one() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let good = base(dir);
    let secret_line = format!("client_secret_file = \"{}\"", dir.join("secret").display());
    let app = "client_id = \"5a1c7e3b-2f4d-4b6a-9c8e-1d0f2e3a4b5c\"\n";
    let kind = |lines: &str| good.replace(app, "").replace(&secret_line, lines);
    let token = dir.join("federated-token");
    std::fs::write(&token, "eyJ.sa-token").unwrap();
    let rid =
        "/subscriptions/0000/resourceGroups/soc/providers/Microsoft.ManagedIdentity/userAssignedIdentities/collector";
    for ok in [
        "credential = \"managed_identity\"".to_string(),
        "credential = \"managed_identity\"\nclient_id = \"3f0c2d9e-1b7a-4c55-9e2f-6a1d8b4c7e90\"".to_string(),
        format!("credential = \"managed_identity\"\nresource_id = \"{rid}\""),
        format!("credential = \"workload_identity\"\nclient_id = \"app\"\ntoken_file = \"{}\"", token.display()),
        format!("credential = \"secret\"\n{app}{secret_line}"),
    ] {
        let (passed, out) = validate(dir, &kind(&ok));
        assert!(passed, "{ok}\n{out}");
    }
    let cases: Vec<(String, &str)> = vec![
        (kind("credential = \"password\""), "tenants[0].credential: \"password\": use one of secret, certificate"),
        (
            kind(""),
            "tenants[0].credential: is required: one of secret, certificate, managed_identity, workload_identity",
        ),
        (
            kind(&format!("credential = \"managed_identity\"\n{secret_line}")),
            "tenants[0].client_secret_file: is only used with credential = \"secret\", not \"managed_identity\"",
        ),
        (
            kind(&format!("credential = \"managed_identity\"\n{app}resource_id = \"{rid}\"")),
            "tenants[0].resource_id: set client_id or resource_id of the user-assigned identity, not both",
        ),
        (
            kind("credential = \"managed_identity\"\nresource_id = \"collector\""),
            "tenants[0].resource_id: \"collector\" is not a user-assigned identity's resource id",
        ),
        (
            kind(&format!("credential = \"secret\"\n{app}token_file = \"{}\"", token.display())),
            "tenants[0].token_file: is only used with credential = \"workload_identity\", not \"secret\"",
        ),
        (
            kind("credential = \"workload_identity\""),
            "tenants[0].client_id: is required: set it, or AZURE_CLIENT_ID in the environment",
        ),
        (
            kind("credential = \"workload_identity\"\nclient_id = \"app\""),
            "tenants[0].token_file: is required: set it, or AZURE_FEDERATED_TOKEN_FILE in the environment",
        ),
        (
            kind("credential = \"workload_identity\"\nclient_id = \"app\"\ntoken_file = \"/nonexistent/token\""),
            "tenants[0].token_file: /nonexistent/token: No such file",
        ),
        (kind(&format!("credential = \"certificate\"\n{app}")), "tenants[0].client_certificate_file: is required"),
    ];
    for (text, needle) in cases {
        expect_error(dir, &text, needle);
    }
}

#[test]
fn tenants_take_the_defaults_they_do_not_set_and_come_from_a_folder_too() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let good = base(dir);
    let secret = dir.join("secret");
    // The shared app (a multi-tenant registration) and streams live once, in the defaults.
    let defaults = format!(
        "\n[tenant_defaults]\nclient_id = \"5a1c7e3b-2f4d-4b6a-9c8e-1d0f2e3a4b5c\"\nclient_secret_file = \"{}\"\n[tenant_defaults.management_activity]\ncontent_types = [\"Audit.Exchange\"]\n[tenant_defaults.graph]\nenabled = false\n[tenant_defaults.audit_query]\nenabled = false\n\n",
        secret.display()
    );
    let customers = dir.join("customers");
    std::fs::create_dir_all(&customers).unwrap();
    std::fs::write(customers.join("fabrikam.toml"), "tenant_id = \"0c9f6a2e-3b1d-4e7a-8f5c-2d4b6e8a0c1f\"\n").unwrap();
    std::fs::write(
        customers.join("northwind.toml"),
        "tenant_id = \"1d0a7b3f-4c2e-4f8b-9a6d-3e5c7f9b1d20\"\n[management_activity]\ncontent_types = [\"Audit.General\", \"DLP.All\"]\n",
    )
    .unwrap();
    std::fs::write(customers.join("README.md"), "not a tenant").unwrap();
    let tenant = good
        .replace(&format!("client_secret_file = \"{}\"\n", secret.display()), "")
        .replace("client_id = \"5a1c7e3b-2f4d-4b6a-9c8e-1d0f2e3a4b5c\"\n", "");
    let text = format!("tenants_dir = \"customers\"\n{tenant}{defaults}");
    let (ok, out) = validate(dir, &text);
    assert!(ok, "{out}");
    // contoso and fabrikam: Audit.Exchange; northwind its own two.
    assert!(out.contains("OK (3 tenants, 4 streams, 1 sinks)"), "{out}");

    std::fs::write(customers.join("contoso.toml"), "tenant_id = \"0c9f6a2e-3b1d-4e7a-8f5c-2d4b6e8a0c1f\"\n").unwrap();
    expect_error(dir, &text, "tenants_dir[contoso.toml].name: duplicate tenant name \"contoso\"");
    std::fs::remove_file(customers.join("contoso.toml")).unwrap();
    std::fs::write(customers.join("typo.toml"), "tenant_idd = \"x\"\n").unwrap();
    expect_error(dir, &text, "tenants_dir[typo.toml]: unknown field `tenant_idd`");
    std::fs::remove_file(customers.join("typo.toml")).unwrap();
    expect_error(
        dir,
        &text.replace(
            "[tenant_defaults]\n",
            "[tenant_defaults]\ntenant_id = \"0c9f6a2e-3b1d-4e7a-8f5c-2d4b6e8a0c1f\"\n",
        ),
        "tenant_defaults.tenant_id: is each tenant's own",
    );
    expect_error(
        dir,
        &text.replace("[tenant_defaults]\n", "[tenant_defaults]\nclient_idd = \"x\"\n"),
        "tenant_defaults: unknown field `client_idd`",
    );
    expect_error(dir, &text.replace("\"customers\"", "\"absent\""), "tenants_dir");
}
