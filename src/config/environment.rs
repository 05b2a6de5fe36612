//! Checks that look at the machine: secret files and variables, CA and certificate files,
//! writable directories. Each component checks its own; none prints a secret's value.

use super::validate::Settings;
use crate::common::Issues;

pub fn check(s: &Settings, is: &mut Issues) {
    for t in &s.tenants {
        t.sign_in.check(is, &t.origin);
    }
    s.http.check(is);
    if let Err(e) = crate::common::dirs::check_writable(&s.state_dir) {
        is.add("state_dir", e.to_string());
    }
    crate::sinks::config::check_environment(is, &s.sinks);
}
