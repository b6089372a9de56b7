//! Authenticating an incoming request with the hook's token.
//!
//! Accepted credentials (any one that verifies is enough):
//!
//! | header | sender | check |
//! | --- | --- | --- |
//! | `Authorization: Bearer <token>` | anything (curl, scripts) | token equality |
//! | `X-Hub-Signature-256: sha256=<hex>` | GitHub (and Gitea/Forgejo) | HMAC-SHA256 of the raw body |
//! | `X-Gitea-Signature: <hex>`, `X-Forgejo-Signature: <hex>` | Gitea, Forgejo | HMAC-SHA256 of the raw body |
//! | `X-Gitlab-Token: <token>` | GitLab | token equality |
//!
//! Every comparison is constant-time: tokens are compared through their SHA-256 digests
//! (which also hides their length) and signatures through [`Mac::verify_slice`].
//!
//! The tokens sent in headers are checked before the body is read
//! ([`authenticate_headers`]): a request whose only credentials are a wrong token is refused
//! without reading its body. Only a request carrying a signature header needs its body
//! (read up to `max_body_bytes`, within `body_timeout_secs`) before [`authenticate`] decides.

use crate::config::Token;
use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// How a request proved it knows the token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    /// `Authorization: Bearer`.
    Bearer,
    /// `X-Hub-Signature-256`.
    HubSignature,
    /// `X-Gitea-Signature` or `X-Forgejo-Signature`.
    GiteaSignature,
    /// `X-Gitlab-Token`.
    GitlabToken,
}

/// Why a request was not authenticated. The text never holds the credential.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credential header at all.
    #[error("no credentials: send Authorization: Bearer <token> or a signature header")]
    Missing,
    /// A credential was given and none verified; names the first header tried.
    #[error("the credentials in {0} do not match this hook's token")]
    Mismatch(&'static str),
}

/// What the headers alone say about a request's credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderCheck {
    /// A token header verified: the body need not be looked at for authentication.
    Authenticated(AuthMethod),
    /// A signature header is present: the body decides, through [`authenticate`].
    NeedsBody,
    /// No credential verified and none depends on the body: refuse before reading it.
    Refused(AuthError),
}

/// Checks the credentials that do not depend on the body (`Authorization: Bearer`,
/// `X-Gitlab-Token`) against `token`.
pub fn authenticate_headers(headers: &HeaderMap, token: &Token) -> HeaderCheck {
    let mut first_failed: Option<&'static str> = None;
    if let Some(v) = header(headers, "authorization") {
        match bearer(v) {
            Some(given) if tokens_equal(given.as_bytes(), token.expose()) => {
                return HeaderCheck::Authenticated(AuthMethod::Bearer);
            }
            _ => {
                first_failed.get_or_insert("Authorization");
            }
        }
    }
    let signed = SIGNATURE_HEADERS
        .iter()
        .any(|name| headers.contains_key(*name));
    if let Some(v) = header(headers, "x-gitlab-token") {
        if tokens_equal(v.as_bytes(), token.expose()) {
            return HeaderCheck::Authenticated(AuthMethod::GitlabToken);
        }
        first_failed.get_or_insert("X-Gitlab-Token");
    }
    if signed {
        return HeaderCheck::NeedsBody;
    }
    HeaderCheck::Refused(first_failed.map_or(AuthError::Missing, AuthError::Mismatch))
}

/// The headers that carry an HMAC signature of the body.
const SIGNATURE_HEADERS: [&str; 3] = [
    "x-hub-signature-256",
    "x-forgejo-signature",
    "x-gitea-signature",
];

fn bearer(v: &str) -> Option<&str> {
    v.strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
        .map(str::trim)
}

/// Checks the request's credentials against `token`.
pub fn authenticate(
    headers: &HeaderMap,
    body: &[u8],
    token: &Token,
) -> Result<AuthMethod, AuthError> {
    let mut first_failed: Option<&'static str> = None;
    let mut fail = |h: &'static str| {
        first_failed.get_or_insert(h);
    };

    if let Some(v) = header(headers, "authorization") {
        match bearer(v) {
            Some(given) if tokens_equal(given.as_bytes(), token.expose()) => {
                return Ok(AuthMethod::Bearer);
            }
            _ => fail("Authorization"),
        }
    }
    if let Some(v) = header(headers, "x-hub-signature-256") {
        match v.strip_prefix("sha256=") {
            Some(hex_sig) if signature_valid(hex_sig, body, token) => {
                return Ok(AuthMethod::HubSignature);
            }
            _ => fail("X-Hub-Signature-256"),
        }
    }
    for name in ["x-forgejo-signature", "x-gitea-signature"] {
        if let Some(v) = header(headers, name) {
            if signature_valid(v, body, token) {
                return Ok(AuthMethod::GiteaSignature);
            }
            fail(if name == "x-forgejo-signature" {
                "X-Forgejo-Signature"
            } else {
                "X-Gitea-Signature"
            });
        }
    }
    if let Some(v) = header(headers, "x-gitlab-token") {
        if tokens_equal(v.as_bytes(), token.expose()) {
            return Ok(AuthMethod::GitlabToken);
        }
        fail("X-Gitlab-Token");
    }
    Err(first_failed.map_or(AuthError::Missing, AuthError::Mismatch))
}

/// The lower-case hex HMAC-SHA256 of `body` keyed by `key`.
pub fn sign(key: &[u8], body: &[u8]) -> String {
    hex::encode(mac(key, body).finalize().into_bytes())
}

fn mac(key: &[u8], body: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length (longer ones are hashed): this cannot fail.
    let mut m = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
    m.update(body);
    m
}

fn signature_valid(hex_sig: &str, body: &[u8], token: &Token) -> bool {
    match hex::decode(hex_sig.trim()) {
        Ok(sig) => mac(token.expose(), body).verify_slice(&sig).is_ok(),
        Err(_) => false,
    }
}

fn tokens_equal(given: &[u8], expected: &[u8]) -> bool {
    let a = Sha256::digest(given);
    let b = Sha256::digest(expected);
    a.ct_eq(&b).into()
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const BODY: &[u8] = br#"{"text":"hi"}"#;

    fn with(name: &'static str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).unwrap());
        h
    }

    fn token() -> Token {
        Token::new("s3cret")
    }

    #[test]
    fn known_hmac_vector() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn bearer() {
        let ok = with("authorization", "Bearer s3cret");
        assert_eq!(authenticate(&ok, BODY, &token()), Ok(AuthMethod::Bearer));
        let bad = with("authorization", "Bearer s3cre");
        assert_eq!(
            authenticate(&bad, BODY, &token()),
            Err(AuthError::Mismatch("Authorization"))
        );
        let basic = with("authorization", "Basic czNjcmV0");
        assert!(authenticate(&basic, BODY, &token()).is_err());
    }

    #[test]
    fn signatures() {
        let sig = sign(b"s3cret", BODY);
        let gh = with("x-hub-signature-256", &format!("sha256={sig}"));
        assert_eq!(
            authenticate(&gh, BODY, &token()),
            Ok(AuthMethod::HubSignature)
        );
        let fj = with("x-forgejo-signature", &sig);
        assert_eq!(
            authenticate(&fj, BODY, &token()),
            Ok(AuthMethod::GiteaSignature)
        );
        let gt = with("x-gitea-signature", &sig);
        assert_eq!(
            authenticate(&gt, BODY, &token()),
            Ok(AuthMethod::GiteaSignature)
        );
        // The signature covers the exact body.
        assert_eq!(
            authenticate(&gt, b"{\"text\":\"hi\"} ", &token()),
            Err(AuthError::Mismatch("X-Gitea-Signature"))
        );
        let not_hex = with("x-hub-signature-256", "sha256=zz");
        assert!(authenticate(&not_hex, BODY, &token()).is_err());
        let no_prefix = with("x-hub-signature-256", &sig);
        assert!(authenticate(&no_prefix, BODY, &token()).is_err());
    }

    #[test]
    fn gitlab_token_and_missing() {
        let gl = with("x-gitlab-token", "s3cret");
        assert_eq!(
            authenticate(&gl, BODY, &token()),
            Ok(AuthMethod::GitlabToken)
        );
        assert_eq!(
            authenticate(&HeaderMap::new(), BODY, &token()),
            Err(AuthError::Missing)
        );
    }

    #[test]
    fn headers_alone_decide_unless_a_signature_is_sent() {
        let check = |h: &HeaderMap| authenticate_headers(h, &token());
        assert_eq!(
            check(&with("authorization", "Bearer s3cret")),
            HeaderCheck::Authenticated(AuthMethod::Bearer)
        );
        assert_eq!(
            check(&with("x-gitlab-token", "s3cret")),
            HeaderCheck::Authenticated(AuthMethod::GitlabToken)
        );
        assert_eq!(
            check(&with("authorization", "Bearer wrong")),
            HeaderCheck::Refused(AuthError::Mismatch("Authorization"))
        );
        assert_eq!(
            check(&with("x-gitlab-token", "wrong")),
            HeaderCheck::Refused(AuthError::Mismatch("X-Gitlab-Token"))
        );
        assert_eq!(
            check(&HeaderMap::new()),
            HeaderCheck::Refused(AuthError::Missing)
        );
        for name in SIGNATURE_HEADERS {
            assert_eq!(check(&with(name, "00")), HeaderCheck::NeedsBody, "{name}");
        }
        // A wrong token beside a signature: the signature may still verify.
        let mut h = with("x-hub-signature-256", "sha256=00");
        h.insert("authorization", HeaderValue::from_static("Bearer wrong"));
        assert_eq!(check(&h), HeaderCheck::NeedsBody);
        // A right token beside a wrong signature is enough, as in `authenticate`.
        let mut h = with("x-gitea-signature", "00");
        h.insert("authorization", HeaderValue::from_static("Bearer s3cret"));
        assert_eq!(check(&h), HeaderCheck::Authenticated(AuthMethod::Bearer));
    }

    #[test]
    fn one_valid_credential_is_enough() {
        let mut h = with("x-gitea-signature", "00");
        h.insert("authorization", HeaderValue::from_static("Bearer s3cret"));
        assert_eq!(authenticate(&h, BODY, &token()), Ok(AuthMethod::Bearer));
    }
}
