//! Credentials on the wire (a leaf: depends on nothing in the crate): constant-time comparison,
//! `Authorization` header parsing, generated secrets.

use base64::Engine;

/// Compare secrets without an early exit on the first differing byte.
pub fn secret_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The token of an `Authorization: Bearer` header.
pub fn bearer_token(header: Option<&str>) -> Option<&str> {
    header?.strip_prefix("Bearer ").map(str::trim)
}

/// Whether an `Authorization` header carries `Bearer <token>` for one of the `accepted` tokens.
/// The one check behind every token-protected endpoint (admin API, rewind transport, title
/// updates); no accepted token means nothing passes.
pub fn bearer_allowed<'a>(
    header: Option<&str>,
    accepted: impl IntoIterator<Item = &'a str>,
) -> bool {
    bearer_token(header).is_some_and(|t| accepted.into_iter().any(|a| secret_eq(t, a)))
}

/// The password from an `Authorization: Basic` header (the user name is not checked: Icecast
/// encoders send `source`, some send the mount name).
pub fn basic_password(header: Option<&str>) -> Option<String> {
    let value = header?.trim();
    let (scheme, b64) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    text.split_once(':').map(|(_, p)| p.to_string())
}

/// A random 20-character secret from an alphabet without look-alike characters.
pub fn random_password() -> String {
    use rand::RngExt;
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..20)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth() {
        assert_eq!(
            basic_password(Some("Basic c291cmNlOmhhY2ttZQ==")).as_deref(),
            Some("hackme")
        );
        assert_eq!(
            basic_password(Some("basic c291cmNlOmE6Yg==")).as_deref(),
            Some("a:b")
        );
        assert_eq!(basic_password(Some("Bearer xyz")), None);
        assert_eq!(basic_password(Some("Basic !!!")), None);
        assert_eq!(basic_password(None), None);
        assert!(secret_eq("abc", "abc"));
        assert!(!secret_eq("abc", "abd"));
        assert!(!secret_eq("abc", "abcd"));
    }

    #[test]
    fn bearer() {
        assert!(bearer_allowed(Some("Bearer tok"), ["tok"]));
        assert!(bearer_allowed(Some("Bearer  tok "), ["other", "tok"]));
        assert!(!bearer_allowed(Some("Bearer tok2"), ["tok"]));
        assert!(!bearer_allowed(Some("Basic dG9r"), ["tok"]));
        assert!(!bearer_allowed(None, ["tok"]));
        assert!(!bearer_allowed(Some("Bearer tok"), []));
        assert_ne!(random_password(), random_password());
        assert_eq!(random_password().len(), 20);
    }
}
