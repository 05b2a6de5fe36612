//! Endpoint presets per national cloud. Every value can be overridden per tenant.

use serde::Deserialize;

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Cloud {
    #[default]
    Public,
    Gcc,
    GccHigh,
    Dod,
    China,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// OAuth authority host, e.g. `https://login.microsoftonline.com`.
    pub authority: String,
    /// Management Activity API base URL, e.g. `https://manage.office.com`.
    pub management: String,
    /// Token resource (audience) of the Management Activity API.
    pub management_resource: String,
    pub graph: String,
    pub arm: String,
}

impl Cloud {
    /// As written in the config.
    pub fn name(self) -> &'static str {
        match self {
            Cloud::Public => "public",
            Cloud::Gcc => "gcc",
            Cloud::GccHigh => "gcc_high",
            Cloud::Dod => "dod",
            Cloud::China => "china",
        }
    }

    /// The Microsoft 365 global service: the commercial cloud, and GCC, which runs on it. The
    /// audit log query API is offered there only (reference §5).
    pub fn is_global_service(self) -> bool {
        matches!(self, Cloud::Public | Cloud::Gcc)
    }

    pub fn endpoints(self) -> Endpoints {
        let (authority, management, graph, arm) = match self {
            Cloud::Public => (
                "https://login.microsoftonline.com",
                "https://manage.office.com",
                "https://graph.microsoft.com",
                "https://management.azure.com",
            ),
            Cloud::Gcc => (
                "https://login.microsoftonline.com",
                "https://manage-gcc.office.com",
                "https://graph.microsoft.com",
                "https://management.azure.com",
            ),
            Cloud::GccHigh => (
                "https://login.microsoftonline.us",
                "https://manage.office365.us",
                "https://graph.microsoft.us",
                "https://management.usgovcloudapi.net",
            ),
            Cloud::Dod => (
                "https://login.microsoftonline.us",
                "https://manage.protection.apps.mil",
                "https://dod-graph.microsoft.us",
                "https://management.usgovcloudapi.net",
            ),
            Cloud::China => (
                "https://login.chinacloudapi.cn",
                "https://manage.office.cn",
                "https://microsoftgraph.chinacloudapi.cn",
                "https://management.chinacloudapi.cn",
            ),
        };
        Endpoints {
            authority: authority.into(),
            management: management.into(),
            management_resource: management.into(),
            graph: graph.into(),
            arm: arm.into(),
        }
    }
}
