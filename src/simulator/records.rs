//! Deterministic, realistic audit records. A record's identity `(content type, blob, index)`
//! and the seed fully determine its `Id` and its content, so ground truth needs no storage.

use chrono::{DateTime, Utc};

/// splitmix64: a tiny, stable mixing function (the sequence must never change between builds).
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

pub fn h(parts: &[u64]) -> u64 {
    parts.iter().fold(0x5157_u64, |acc, p| mix(acc ^ mix(*p)))
}

/// A fraction in [0, 1) from a hash.
pub fn unit(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

pub fn guid(x: u64, y: u64) -> String {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&x.to_le_bytes());
    b[8..].copy_from_slice(&y.to_le_bytes());
    uuid::Builder::from_random_bytes(b).into_uuid().to_string()
}

pub fn record_id(seed: u64, ct: usize, blob: u64, idx: u32) -> String {
    guid(h(&[seed, 1, ct as u64, blob, idx as u64]), h(&[seed, 2, ct as u64, blob, idx as u64]))
}

const USERS: [&str; 8] = [
    "adele.vance",
    "alex.wilber",
    "megan.bowen",
    "lynne.robbins",
    "diego.siciliani",
    "isaiah.langer",
    "johanna.lorenz",
    "svc-backup",
];
const IPS: [&str; 6] =
    ["203.0.113.77", "198.51.100.23", "192.0.2.145", "2001:db8::4f1", "185.220.101.9", "40.97.120.5"];
const CLIENTS: [&str; 4] = [
    "Client=OutlookService;Outlook-iOS/2.0",
    "Client=MSExchangeRPC",
    "Client=OWA;Action=ViaProxy",
    "Client=REST;Client=RESTSystem;;",
];

/// One record's JSON, top-level keys in Microsoft's usual order, or reversed for `reorder`.
// Each argument is one coordinate of the deterministic record; a struct would only rename them.
#[allow(clippy::too_many_arguments)]
pub fn render(
    seed: u64,
    tenant_id: &str,
    ct_name: &str,
    ct: usize,
    blob: u64,
    idx: u32,
    event_time: DateTime<Utc>,
    reorder: bool,
    pad: bool,
) -> String {
    let r = h(&[seed, 3, ct as u64, blob, idx as u64]);
    let user = USERS[(r % USERS.len() as u64) as usize];
    let upn = format!("{user}@contoso.onmicrosoft.com");
    let ip = IPS[((r >> 8) % IPS.len() as u64) as usize];
    let q = |s: &str| serde_json::to_string(s).expect("string");
    let mut f: Vec<(&str, String)> = vec![
        ("CreationTime", q(&event_time.format("%Y-%m-%dT%H:%M:%S").to_string())),
        ("Id", q(&record_id(seed, ct, blob, idx))),
    ];
    match ct_name {
        "Audit.Exchange" => exchange(&mut f, r, &upn, ip, tenant_id, pad),
        "Audit.AzureActiveDirectory" => {
            f.push(("Operation", q(if r.is_multiple_of(5) { "UserLoginFailed" } else { "UserLoggedIn" })));
            f.push(("OrganizationId", q(tenant_id)));
            f.push(("RecordType", "15".into()));
            f.push(("ResultStatus", q(if r.is_multiple_of(5) { "Failed" } else { "Success" })));
            f.push(("UserKey", q(&guid(r, 7))));
            f.push(("UserType", "0".into()));
            f.push(("Version", "1".into()));
            f.push(("Workload", q("AzureActiveDirectory")));
            f.push(("ClientIP", q(ip)));
            f.push(("ObjectId", q("00000003-0000-0000-c000-000000000000")));
            f.push(("UserId", q(&upn)));
            f.push(("AzureActiveDirectoryEventType", "1".into()));
            f.push((
                "ExtendedProperties",
                r#"[{"Name":"ResultStatusDetail","Value":"Redirect"},{"Name":"UserAgent","Value":"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0"},{"Name":"RequestType","Value":"OAuth2:Authorize"}]"#.to_string(),
            ));
            f.push(("ModifiedProperties", "[]".into()));
            f.push(("Actor", format!(r#"[{{"ID":"{}","Type":0}},{{"ID":{},"Type":5}}]"#, guid(r, 8), q(&upn))));
            f.push(("ActorContextId", q(tenant_id)));
            f.push(("ActorIpAddress", q(ip)));
            f.push(("InterSystemsId", q(&guid(r, 9))));
            f.push(("IntraSystemId", q(&guid(r, 10))));
            f.push(("ErrorNumber", q(if r.is_multiple_of(5) { "50126" } else { "0" })));
        }
        "Audit.SharePoint" => {
            let op = ["FileAccessed", "FileDownloaded", "FileModified", "SharingSet", "AnonymousLinkCreated"]
                [(r % 5) as usize];
            f.push(("Operation", q(op)));
            f.push(("OrganizationId", q(tenant_id)));
            f.push(("RecordType", "6".into()));
            f.push(("UserKey", q(&format!("i:0h.f|membership|{}@live.com", &guid(r, 3)[..16]))));
            f.push(("UserType", "0".into()));
            f.push(("Version", "1".into()));
            f.push(("Workload", q("SharePoint")));
            f.push(("ClientIP", q(ip)));
            f.push((
                "ObjectId",
                q(&format!(
                    "https://contoso.sharepoint.com/sites/Finance/Shared Documents/Q{}-forecast-{}.xlsx",
                    r % 4 + 1,
                    r % 997
                )),
            ));
            f.push(("UserId", q(&upn)));
            f.push(("CorrelationId", q(&guid(r, 4))));
            f.push(("EventSource", q("SharePoint")));
            f.push(("ItemType", q("File")));
            f.push(("ListId", q(&guid(r, 5))));
            f.push(("Site", q(&guid(r, 6))));
            f.push(("UserAgent", q("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36")));
            f.push(("SourceFileExtension", q("xlsx")));
            f.push(("SiteUrl", q("https://contoso.sharepoint.com/sites/Finance/")));
            f.push(("SourceRelativeUrl", q("Shared Documents")));
        }
        "DLP.All" => {
            f.push(("Operation", q("DlpRuleMatch")));
            f.push(("OrganizationId", q(tenant_id)));
            f.push(("RecordType", "13".into()));
            f.push(("UserKey", q("DlpAgent")));
            f.push(("UserType", "4".into()));
            f.push(("Version", "1".into()));
            f.push(("Workload", q("Exchange")));
            f.push(("ObjectId", q(&format!("<{}@contoso.onmicrosoft.com>", &guid(r, 11)[..18]))));
            f.push(("UserId", q(&upn)));
            f.push(("IncidentId", q(&guid(r, 12))));
            f.push((
                "PolicyDetails",
                format!(
                    r#"[{{"PolicyId":"{}","PolicyName":"U.S. Financial Data","Rules":[{{"RuleId":"{}","RuleName":"Low volume of content detected U.S. Financial","Severity":"Low","Actions":["NotifyUser"],"ConditionsMatched":{{"SensitiveInformation":[{{"SensitiveType":"cb353f78-2b72-4c3c-8827-92ebe4f69fdf","Count":{},"Confidence":85}}]}}}}]}}]"#,
                    guid(r, 13),
                    guid(r, 14),
                    r % 9 + 1
                ),
            ));
            f.push(("SensitiveInfoDetectionIsIncluded", "false".into()));
        }
        _ => {
            let op = ["MemberAdded", "TeamCreated", "MessageSent", "AppInstalled"][(r % 4) as usize];
            f.push(("Operation", q(op)));
            f.push(("OrganizationId", q(tenant_id)));
            f.push(("RecordType", "25".into()));
            f.push(("UserKey", q(&guid(r, 15))));
            f.push(("UserType", "0".into()));
            f.push(("Version", "1".into()));
            f.push(("Workload", q("MicrosoftTeams")));
            f.push(("UserId", q(&upn)));
            f.push(("ClientIP", q(ip)));
            f.push(("TeamName", q("Project Falcon")));
            f.push(("TeamGuid", q(&format!("19:{}@thread.tacv2", &guid(r, 16)[..24]))));
            f.push(("Members", format!(r#"[{{"DisplayName":"Guest {}","Role":1,"UPN":"guest{}_fabrikam.com#EXT#@contoso.onmicrosoft.com"}}]"#, r % 50, r % 50)));
        }
    }
    if pad {
        f.push((
            "AppAccessContext",
            format!(
                r#"{{"AADSessionId":"{}","ClientAppId":"{}","CorrelationId":"{}","IssuedAtTime":{},"UniqueTokenId":"{}"}}"#,
                guid(r, 20),
                guid(r, 21),
                guid(r, 22),
                q(&event_time.format("%Y-%m-%dT%H:%M:%S").to_string()),
                &guid(r, 23)[..22]
            ),
        ));
    }
    if reorder {
        f.reverse();
    }
    let mut s = String::with_capacity(1600);
    s.push('{');
    for (i, (k, v)) in f.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push('"');
        s.push_str(k);
        s.push_str("\":");
        s.push_str(v);
    }
    s.push('}');
    s
}

fn exchange(f: &mut Vec<(&str, String)>, r: u64, upn: &str, ip: &str, tenant_id: &str, pad: bool) {
    let q = |s: &str| serde_json::to_string(s).expect("string");
    let kind = r % 10;
    let op = match kind {
        0 => "New-InboxRule",
        1 => "Set-Mailbox",
        2 => "Send",
        3 => "UpdateInboxRules",
        _ => "MailItemsAccessed",
    };
    f.push(("Operation", q(op)));
    f.push(("OrganizationId", q(tenant_id)));
    f.push((
        "RecordType",
        if op == "MailItemsAccessed" {
            "50".into()
        } else if kind <= 1 {
            "1".into()
        } else {
            "2".into()
        },
    ));
    f.push(("ResultStatus", q(if kind <= 1 { "True" } else { "Succeeded" })));
    f.push(("UserKey", q(&format!("1003BFFD{:08X}", r & 0xFFFF_FFFF))));
    f.push(("UserType", "0".into()));
    f.push(("Version", "1".into()));
    f.push(("Workload", q("Exchange")));
    f.push(("ClientIP", q(ip)));
    f.push(("UserId", q(upn)));
    match op {
        "New-InboxRule" => {
            f.push(("ObjectId", q(&format!("contoso.onmicrosoft.com/Users/{upn}\\."))));
            f.push((
                "Parameters",
                format!(
                    r#"[{{"Name":"Name","Value":"."}},{{"Name":"From","Value":"payroll@contoso.com"}},{{"Name":"MoveToFolder","Value":"RSS Subscriptions"}},{{"Name":"MarkAsRead","Value":"True"}},{{"Name":"StopProcessingRules","Value":"True"}},{{"Name":"ForwardTo","Value":"exfil{}@proton.me"}}]"#,
                    r % 100
                ),
            ));
            f.push(("OriginatingServer", q("DB9PR04MB8462 (15.20.8005.017)")));
        }
        "Set-Mailbox" => {
            f.push(("ObjectId", q(upn)));
            f.push((
                "Parameters",
                format!(r#"[{{"Name":"Identity","Value":"{upn}"}},{{"Name":"ForwardingSmtpAddress","Value":"smtp:archive{}@gmail.com"}},{{"Name":"DeliverToMailboxAndForward","Value":"True"}}]"#, r % 100),
            ));
            f.push(("OriginatingServer", q("AM0PR04MB6163 (15.20.8005.017)")));
        }
        _ => {
            let access = if r.is_multiple_of(3) { "Sync" } else { "Bind" };
            let throttled = if r.is_multiple_of(97) { "True" } else { "False" };
            f.push(("AppId", q("00000002-0000-0ff1-ce00-000000000000")));
            f.push(("ClientAppId", q("")));
            f.push(("ClientIPAddress", q(ip)));
            f.push(("ClientInfoString", q(CLIENTS[((r >> 16) % CLIENTS.len() as u64) as usize])));
            f.push(("ExternalAccess", "false".into()));
            f.push(("InternalLogonType", "0".into()));
            f.push(("LogonType", "0".into()));
            f.push(("LogonUserSid", q(&format!("S-1-5-21-1234567890-{}-{}-{}", r % 99999, r % 7777, 1000 + r % 500))));
            f.push(("MailboxGuid", q(&guid(r, 30))));
            f.push((
                "MailboxOwnerSid",
                q(&format!("S-1-5-21-1234567890-{}-{}-{}", r % 99999, r % 7777, 1000 + r % 500)),
            ));
            f.push(("MailboxOwnerUPN", q(upn)));
            f.push((
                "OperationProperties",
                format!(
                    r#"[{{"Name":"MailAccessType","Value":"{access}"}},{{"Name":"IsThrottled","Value":"{throttled}"}}]"#
                ),
            ));
            f.push(("OrganizationName", q("contoso.onmicrosoft.com")));
            f.push(("OriginatingServer", q("DB9PR04MB8462 (15.20.8005.017)")));
            f.push(("SessionId", q(&guid(r, 31))));
            f.push(("TokenObjectId", q(&guid(r, 32))));
            f.push(("TokenTenantId", q(tenant_id)));
            f.push(("OperationCount", format!("{}", r % 5 + 1)));
            let items: Vec<String> = (0..if pad { 2 } else { 1 })
                .map(|k| {
                    format!(
                        r#"{{"Id":"LgAAAAAdhAMRqmYRzZvIAKoAL8RaDQBIb{}AAAJ","InternetMessageId":"<{}@DB9PR04MB8462.eurprd04.prod.outlook.com>","SizeInBytes":{}}}"#,
                        k,
                        &guid(r, 40 + k)[..20],
                        4000 + (r >> (k * 4)) % 90_000
                    )
                })
                .collect();
            f.push((
                "Folders",
                format!(
                    r#"[{{"FolderItems":[{}],"Id":"LgAAAAAdhAMRqmYRzZvIAKoAL8RaAQBIbY","Path":"\\Inbox"}}]"#,
                    items.join(",")
                ),
            ));
        }
    }
}
