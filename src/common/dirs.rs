//! Directories the daemon writes into: checked before start, created private.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

/// Writable, or creatable below its first existing ancestor (the daemon creates the rest).
pub fn check_writable(p: &Path) -> std::io::Result<()> {
    let mut cur = Some(p);
    while let Some(c) = cur {
        if c.exists() {
            if !c.is_dir() {
                return Err(std::io::Error::other(format!("{} exists and is not a directory", c.display())));
            }
            let probe = c.join(format!(".auditkeeper-probe-{}", std::process::id()));
            return match std::fs::write(&probe, b"") {
                Ok(()) => {
                    let _ = std::fs::remove_file(&probe);
                    Ok(())
                }
                Err(e) => Err(std::io::Error::new(e.kind(), format!("{} is not writable: {e}", c.display()))),
            };
        }
        cur = c.parent();
    }
    Err(std::io::Error::other(format!("{} has no existing parent directory", p.display())))
}

/// Creates `p` and its missing parents as `0700`, whatever the umask: audit records and the
/// state database are for the daemon's user only. An existing directory is left as it is.
pub fn create_private(p: &Path) -> std::io::Result<()> {
    if p.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(p)?;
    // `mode` is filtered by the umask; set it exactly.
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700))
}
