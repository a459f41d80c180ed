//! Names of lists and campaigns (spec section 5.5): 1–64 characters, no
//! control characters.

/// The name, trimmed, when it is acceptable.
pub fn parse_name(input: &str) -> Option<&str> {
    let name = input.trim();
    let chars = name.chars().count();
    if chars == 0 || chars > 64 || name.chars().any(char::is_control) {
        return None;
    }
    Some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_1_to_64_printable_characters() {
        assert_eq!(parse_name(" spring sale "), Some("spring sale"));
        assert_eq!(parse_name(""), None);
        assert_eq!(parse_name("   "), None);
        assert_eq!(parse_name(&"é".repeat(64)), Some("é".repeat(64).as_str()));
        assert_eq!(parse_name(&"a".repeat(65)), None);
        assert_eq!(parse_name("tab\there"), None);
    }
}
