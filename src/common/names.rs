//! Names of tenants and sinks. They become directory names and stream ids, so they must never
//! be able to climb out of a directory (`..`) or make one (`/`).

/// 1-64 characters from `A-Z a-z 0-9 - _ .`, and not made of dots alone.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && !s.chars().all(|c| c == '.')
}

pub const NAME_RULE: &str = "use 1-64 characters from A-Z a-z 0-9 - _ . (not only dots)";

#[cfg(test)]
mod tests {
    #[test]
    fn names_cannot_climb_or_nest() {
        for bad in ["", "..", ".", "a/b", "../x", "a b", "é", &"x".repeat(65)] {
            assert!(!super::valid_name(bad), "{bad:?}");
        }
        for good in ["contoso", "a.b", "sink-1_x", ".hidden"] {
            assert!(super::valid_name(good), "{good:?}");
        }
    }
}
