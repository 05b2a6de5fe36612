//! Leaf types that every component may use: validation issues, secret sources, byte sizes,
//! names, the retry policy, TLS client and forward proxy settings.
//!
//! INVARIANT: nothing here imports another module of this crate. Config, sources and sinks all
//! depend on these types, never on each other through them, so the module arrows run one way.

pub mod clock;
pub mod dirs;
pub mod issues;
pub mod names;
pub mod proxy;
pub mod retry;
pub mod secret;
pub mod size;
pub mod tls;

pub use issues::{ConfigIssue, Issues};
pub use retry::RetryPolicy;
pub use secret::{SecretError, SecretSource};
